"""The decision threshold on the binary score that optimises a criterion on given examples (pure torch)."""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import check_choice, prepare
from ._scores import positive_mask
from ._counts import Counts

__all__ = ["BestThreshold", "best_threshold", "CRITERIA", "binary_problem"]

CRITERIA = ("youden", "balanced_accuracy", "f1", "accuracy", "cost", "tpr", "tnr")


class BestThreshold(NamedTuple):
    """The chosen threshold and, at it, the criterion, TPR and FPR.

    Args:
        threshold: 0-d, in the binary score's dtype; predict positive iff `score > threshold`.
        value: the criterion at it (0-d float64).
        tpr: the true positive rate at it (0-d float64).
        fpr: the false positive rate at it (0-d float64).
    """
    threshold: Tensor
    value: Tensor
    tpr: Tensor
    fpr: Tensor


def binary_problem(preds, target, *, what: str, validate: bool = True, name: str = "preds",
                   pos_label=None) -> tuple[Tensor, Tensor]:
    """The binary score and the positive mask of a two-class `(preds, target)`, for `what` (named in errors).

    `preds` is (N,) or (N, 1), whose dtype is kept (half becomes float32, integers float64), or (N, 2),
    whose score is `z1 - z0` computed in float64 (`z_pos - z_other` when `pos_label` is the first of the
    two sorted labels). Labels are {0, 1}, {-1, 1}, bools, or any two with `pos_label` naming the positive
    one. Both classes must be present.
    """
    if isinstance(preds, Tensor):
        preds = preds.detach()
    try:
        inp = prepare(preds, target, validate=validate, allow_empty=True, pos_label=pos_label, implicit_positive=False,
                      one_class_any_column=True)  # one class is refused below
    except (ValueError, TypeError) as e:
        if name == "preds":
            raise
        raise type(e)(str(e).replace("`preds`", f"`{name}`")) from None
    s = inp.scores
    if not inp.binary:
        raise ValueError(f"`{name}` must have shape (N,), (N, 1) or (N, 2) for {what} (binary only), "
                         f"got shape {tuple(s.shape)}")
    n = len(inp.labels)
    if n == 0:
        raise ValueError(f"`{name}` and `target` are empty: there is nothing for {what} to work on")
    positive = positive_mask(inp.labels)
    n_pos = int(positive.sum())
    if n_pos in (0, n):
        raise ValueError(f"{what} needs both classes in `target`, got {n_pos} positive(s) of {n} examples")
    score = s if s.ndim == 1 else s[:, 1].double() - s[:, 0].double()
    return score, positive


def _check_rate(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                              or not 0 <= value <= 1):
        raise ValueError(f"`{name}` must be a number in [0, 1] or None, got {value!r}")


def _check_constraint(criterion: str, max_fpr, min_tpr) -> None:
    """'tpr' is maximised under a false-positive budget and 'tnr' under a floor on the TPR: without it the
    optimum is the trivial cut (everything positive, or nothing), so the constraint is required."""
    for crit, name, value, what in (("tpr", "max_fpr", max_fpr, "the false positive rate allowed"),
                                    ("tnr", "min_tpr", min_tpr, "the true positive rate required")):
        if criterion == crit and value is None:
            raise ValueError(f"criterion {crit!r} needs `{name}` ({what}, a number in [0, 1]): without it the best "
                             f"cut predicts {'everything' if crit == 'tpr' else 'nothing'} positive; got {name}=None")


def _check_costs(cost_fp, cost_fn) -> None:
    for name, c in (("cost_fp", cost_fp), ("cost_fn", cost_fn)):
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or c < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, got {c!r}")
    if cost_fp == 0 and cost_fn == 0:
        raise ValueError("`cost_fp` and `cost_fn` must not both be 0, got 0 and 0")


def _interior_threshold(lo: Tensor, hi: Tensor) -> Tensor:
    """A value t of the dtype of `lo < hi` with lo <= t < hi exactly: the midpoint where it rounds inside, else lo."""
    mid = (lo.double() / 2 + hi.double() / 2).to(lo.dtype)
    return torch.where((mid < hi) & (mid >= lo), mid, lo)


def best_threshold(preds, target, criterion: str = "balanced_accuracy", *, cost_fp: float = 1.0,
                   cost_fn: float = 1.0, max_fpr: float | None = None, min_tpr: float | None = None,
                   pos_label=None, validate: bool = True) -> BestThreshold:
    """The threshold on the binary score that optimises `criterion` on these examples (a `BestThreshold`).

    Decision rule: an example is predicted positive iff `score > threshold`. Every distinct split of the
    sorted scores is a candidate (tied scores always fall on the same side): `threshold = inf` predicts
    nothing positive, `-inf` everything, and a cut between adjacent distinct scores lo < hi gets a
    threshold with lo <= t < hi exactly in the score's dtype (their midpoint when it rounds strictly
    inside, else lo), so `score > t` reproduces it bit for bit. Among equally good cuts the one with the
    highest threshold (fewest predicted positives) wins. One sort, O(N log N), on the inputs' device.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns), as `auroc` reads them.
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels with `pos_label`; both classes needed.
        criterion: maximised 'youden', 'balanced_accuracy', 'f1', 'accuracy', 'tpr' (needs `max_fpr`), 'tnr'
            (needs `min_tpr`); minimised 'cost'.
        cost_fp: the cost of a false positive ('cost': the mean (cost_fp * FP + cost_fn * FN) / N).
        cost_fn: the cost of a false negative.
        max_fpr: keep only the cuts with FPR <= max_fpr (required with 'tpr').
        min_tpr: keep only the cuts with TPR >= min_tpr (required with 'tnr').
        pos_label: the positive label (needed unless the labels are {0, 1} or {-1, 1}), as for `roc_curve`.
        validate: False skips the value checks.
    """
    check_choice("criterion", criterion, CRITERIA)
    _check_constraint(criterion, max_fpr, min_tpr)
    _check_costs(cost_fp, cost_fn)
    _check_rate("max_fpr", max_fpr)
    _check_rate("min_tpr", min_tpr)
    score, positive = binary_problem(preds, target, what="best_threshold", validate=validate, pos_label=pos_label)
    points = Counts(score, positive).points()
    n = len(score)
    zero = points.tp.new_zeros(1)
    # Cut k predicts the first k groups of tied scores positive (k = 0: none, k = G: all).
    tp, fp, distinct = torch.cat([zero, points.tp]), torch.cat([zero, points.fp]), points.values
    n_pos, n_neg = tp[-1], fp[-1]
    fn, tn = n_pos - tp, n_neg - fp
    tpr, fpr = tp / n_pos, fp / n_neg
    # Each value is one correctly rounded division of exact integers, so equal criteria compare equal.
    tolerance = 0.0
    if criterion == "youden":
        value = (tp * n_neg - fp * n_pos) / (n_pos * n_neg)
    elif criterion == "balanced_accuracy":
        value = (tp * n_neg + tn * n_pos) / (2 * n_pos * n_neg)
    elif criterion == "f1":
        value = torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), 0.0)
    elif criterion == "accuracy":
        value = (tp + tn) / n
    elif criterion == "tpr":
        value = tpr
    elif criterion == "tnr":
        value = tn / n_neg
    else:  # cost: real-valued weights round, so equal costs may differ by a few ulps
        value = (cost_fp * fp + cost_fn * fn) / n
        tolerance = 8 * torch.finfo(torch.float64).eps * (cost_fp * n_neg + cost_fn * n_pos) / n
    key = -value if criterion == "cost" else value
    feasible = torch.ones_like(key, dtype=torch.bool)
    if max_fpr is not None:
        feasible &= fpr <= max_fpr
    if min_tpr is not None:
        feasible &= tpr >= min_tpr
    if max_fpr is not None and min_tpr is not None and not bool(feasible.any()):
        raise ValueError(f"no threshold satisfies both `max_fpr` <= {max_fpr!r} and `min_tpr` >= {min_tpr!r} "
                         "on these examples")
    key = torch.where(feasible, key, -math.inf)
    best = key.max()
    k = (feasible & (key >= best - tolerance)).int().argmax()  # the first optimum: the highest threshold
    groups = len(distinct)
    hi = torch.cat([distinct[:1], distinct])[k]  # the clamped ends are replaced by +-inf below
    lo = torch.cat([distinct, distinct[-1:]])[k]
    inf = torch.tensor(math.inf, dtype=distinct.dtype, device=distinct.device)
    threshold = torch.where(k == 0, inf, torch.where(k == groups, -inf, _interior_threshold(lo, hi)))
    return BestThreshold(threshold=threshold, value=value[k], tpr=tpr[k], fpr=fpr[k])
