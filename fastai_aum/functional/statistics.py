"""DeLong's confidence interval of an AUROC and DeLong's test of two correlated AUROCs (pure torch).

Both use the fast midrank algorithm of Sun and Xu (2014, "Fast implementation of DeLong's algorithm
for comparing the areas under correlated receiver operating characteristic curves"): one sort per
model gives every example's placement value, so the cost is O(N log N) instead of O(m * n).
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import prepare, warn_undefined
from ._scores import positive_mask, ranking_scores
from ._counts import Counts

__all__ = ["AUROCInterval", "AUROCTest", "auroc_ci", "auroc_test", "placement_counts"]


class AUROCInterval(NamedTuple):
    """An AUROC with its DeLong standard error and confidence interval (0-d float64 tensors).

    Args:
        auroc: the AUROC.
        low: `auroc - z * std_err`, clipped to [0, 1].
        high: `auroc + z * std_err`, clipped to [0, 1].
        std_err: DeLong's standard error.
    """
    auroc: Tensor
    low: Tensor
    high: Tensor
    std_err: Tensor


class AUROCTest(NamedTuple):
    """DeLong's paired test of two AUROCs on the same examples (0-d float64 tensors).

    Args:
        auroc_a: the AUROC of `preds_a`.
        auroc_b: the AUROC of `preds_b`.
        z: the z statistic of the difference `auroc_a - auroc_b`.
        p_value: its two-sided p-value.
        diff: the difference `auroc_a - auroc_b`.
        std_err: DeLong's standard error of the difference, `sqrt(var(A) + var(B) - 2 cov(A, B))`.
    """
    auroc_a: Tensor
    auroc_b: Tensor
    z: Tensor
    p_value: Tensor
    diff: Tensor
    std_err: Tensor


def _binary_scores(preds, target, name: str, pos_label=None) -> tuple[Tensor, Tensor]:
    """The binary score `auroc` ranks (never squashed) and the positive mask, labels read as `auroc` reads
    them (two string labels: the greater is positive, unless `pos_label`); one class and empty allowed."""
    if isinstance(preds, Tensor):
        preds = preds.detach()
    try:
        inp = prepare(preds, target, allow_empty=True, pos_label=pos_label, implicit_positive=True,
                      one_class_any_column=True)
    except (ValueError, TypeError) as e:
        if name == "preds":
            raise
        raise type(e)(str(e).replace("`preds`", f"`{name}`")) from None
    if not inp.binary:
        raise ValueError(f"`{name}` must have shape (N,), (N, 1) or (N, 2) (DeLong's method is binary only), "
                         f"got shape {tuple(inp.scores.shape)}")
    return ranking_scores(inp), positive_mask(inp.labels)


def placement_counts(score: Tensor, positive: Tensor) -> Tensor:
    """DeLong's placement counts of (N,) scores against an (N,) positive mask, by midranks (one sort).

    Returns (N,) float64 in the examples' order: for a positive, the negatives scored below it; for a
    negative, the positives scored above it; ties count half. DeLong's V10 is the positives' count / n,
    V01 the negatives' count / m, and the AUROC is the positives' total / (m * n). Every count is a
    half-integer, exact in float64.
    """
    c = Counts(score, positive)  # in the score's own dtype: 32-bit keys sort fastest
    tp_above, fp_above = c.above(c.tp, c.pos), c.above(c.fp, c.neg)  # strictly above each one's group of ties
    tp_through, fp_through = c.through(c.tp), c.through(c.fp)  # above or tied
    # positive: negatives below = n - fp_through, tied = fp_through - fp_above; negative: symmetric.
    count = torch.where(c.pos.bool(), c.fp[-1] - (fp_through + fp_above) / 2, (tp_through + tp_above) / 2)
    return c.unsort(count)  # back to the examples' order


def _masked_var(x: Tensor, mask: Tensor, k: int) -> Tensor:
    """Sample variance (ddof=1) of the k >= 2 entries of `x` where `mask` (float 0/1) is 1."""
    mean = (x * mask).sum() / k
    return ((x - mean) ** 2 * mask).sum() / (k - 1)


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"`level` must be a number in (0, 1), e.g. 0.95, got {level!r}")


def auroc_ci(preds, target, level: float = 0.95, *, pos_label=None) -> AUROCInterval:
    """The AUROC with DeLong's standard error and confidence interval, as R pROC's `ci.auc(method="delong")`.

    Ties count half. The variance is `var(V10)/m + var(V01)/n` over the m positives' and n negatives'
    placement values (sample variances, ddof=1); the interval is `auroc +- z * std_err` with z the
    two-sided normal quantile of `level`, clipped to [0, 1]. With no examples, or one class, every value
    is NaN, with one `AUROCUndefinedWarning` that says which; with exactly one positive or one negative the
    AUROC is exact but its variance is undefined: `std_err`, `low` and `high` are NaN, with a warning.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, read as `auroc` reads them (`z1 - z0`, or p1).
        target: N labels: {0, 1}, {-1, 1}, bools, or two labels of any kind, as for `auroc`.
        level: the confidence level of the interval, in (0, 1).
        pos_label: the positive label (default: the greater of two labels), as for `auroc`.
    """
    _check_level(level)
    score, positive = _binary_scores(preds, target, "preds", pos_label)
    n_total, m = len(positive), int(positive.sum())
    n = n_total - m
    nan = torch.tensor(math.nan, dtype=torch.float64, device=score.device)
    if n_total == 0:
        warn_undefined("auroc_ci: empty input, AUROC and its interval are undefined (NaN)")
        return AUROCInterval(nan, nan, nan, nan)
    if m == 0 or n == 0:
        warn_undefined(f"auroc_ci: only one class present in `target` ({m} positives of {n_total}); "
                       "AUROC and its interval are undefined (NaN)")
        return AUROCInterval(nan, nan, nan, nan)
    count, pos = placement_counts(score, positive), positive.double()
    auc = (count * pos).sum() / (m * n)
    if m < 2 or n < 2:
        warn_undefined(f"auroc_ci: DeLong's variance needs at least 2 positives and 2 negatives, got {m} and {n}; "
                       "std_err and the interval are NaN")
        return AUROCInterval(auc, nan, nan, nan)
    var = _masked_var(count / n, pos, m) / m + _masked_var(count / m, 1 - pos, n) / n
    std_err = var.sqrt()
    z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
    return AUROCInterval(auc, (auc - z * std_err).clamp(0, 1), (auc + z * std_err).clamp(0, 1), std_err)


def _length(x) -> int | None:
    shape = getattr(x, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    try:
        return len(x)
    except TypeError:
        return None


def auroc_test(preds_a, preds_b, target, *, pos_label=None) -> AUROCTest:
    """DeLong's two-sided test that two correlated AUROCs on the same examples are equal, as R pROC's
    `roc.test(method="delong", paired=TRUE)`.

    `z = (A - B) / sqrt(var(A) + var(B) - 2 cov(A, B))` from the placement values, and
    `p_value = 2 * Phi(-|z|)`. When the difference and its variance are both 0 (e.g. identical
    rankings), z is 0 and p is 1, as pROC decides; a nonzero difference with variance 0 gives
    z = +-inf and p = 0. With no examples, or one class, every value is NaN, with one
    `AUROCUndefinedWarning` that says which; with exactly one positive or negative the AUROCs are exact
    and z, p are NaN, with a warning.

    Args:
        preds_a: the first model's binary scores of the N examples, read as `auroc_ci` reads `preds`.
        preds_b: the second model's, likewise.
        target: N labels, as for `auroc_ci`.
        pos_label: the positive label (default: the greater of two labels), as for `auroc`.
    """
    len_a, len_b = _length(preds_a), _length(preds_b)
    if len_a is not None and len_b is not None and len_a != len_b:
        raise ValueError(f"`preds_a` and `preds_b` must score the same examples, got {len_a} and {len_b} rows")
    score_a, positive = _binary_scores(preds_a, target, "preds_a", pos_label)
    score_b, _ = _binary_scores(preds_b, target, "preds_b", pos_label)
    n_total, m = len(positive), int(positive.sum())
    n = n_total - m
    nan = torch.tensor(math.nan, dtype=torch.float64, device=score_a.device)
    if n_total == 0:
        warn_undefined("auroc_test: empty input, the AUROCs and the test are undefined (NaN)")
        return AUROCTest(nan, nan, nan, nan, nan, nan)
    if m == 0 or n == 0:
        warn_undefined(f"auroc_test: only one class present in `target` ({m} positives of {n_total}); "
                       "the AUROCs and the test are undefined (NaN)")
        return AUROCTest(nan, nan, nan, nan, nan, nan)
    count_a, count_b, pos = placement_counts(score_a, positive), placement_counts(score_b, positive), positive.double()
    pairs = torch.stack([(count_a * pos).sum(), (count_b * pos).sum()])
    auc = pairs / (m * n)
    if m < 2 or n < 2:
        warn_undefined(f"auroc_test: DeLong's variance needs at least 2 positives and 2 negatives, got {m} and {n}; "
                       "z and p_value are NaN")
        return AUROCTest(auc[0], auc[1], nan, nan, (pairs[0] - pairs[1]) / (m * n), nan)
    diff = (pairs[0] - pairs[1]) / (m * n)  # exactly 0 when the two AUROCs are equal
    # var(A) + var(B) - 2 cov(A, B) is the variance of the difference of the placement values: >= 0 by construction.
    d = count_a - count_b
    var = _masked_var(d / n, pos, m) / m + _masked_var(d / m, 1 - pos, n) / n
    z = torch.where((diff == 0) & (var == 0), torch.zeros_like(diff), diff / var.sqrt())
    p_value = 2 * torch.special.ndtr(-z.abs())
    return AUROCTest(auc[0], auc[1], z, p_value, diff, var.sqrt())
