"""The AUROC machinery shared by `roc` and `multilabel`, on the counting core `Counts`: ROC points and
batched, weighted Mann-Whitney AUROC of rows (pure torch)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._counts import Counts, Points
from ._sorting import Ties, find_ties, sort_rows_descending

__all__ = ["ROC", "auroc_rows", "binary_auroc", "roc_rows"]


class ROC(NamedTuple):
    """ROC points, ties grouped, in order of increasing constant `c` added to the scores: point j is what
    thresholding `score + c > 0` gives for every `c` in `(min_constant[j], max_constant[j])`.

    Args:
        fpr: the false positive rate of each point (float64).
        tpr: the true positive rate.
        fnr: the false negative rate, 1 - tpr.
        min_constant: the least constant of each point's interval (-inf for the first).
        max_constant: the greatest constant of each point's interval (inf for the last).
    """
    fpr: Tensor
    tpr: Tensor
    fnr: Tensor
    min_constant: Tensor
    max_constant: Tensor


def roc_rows(rows: Tensor, positive: Tensor, weight: Tensor | None = None) -> list[ROC]:
    """The ROC of each row of (B, N) scores against (B, N) booleans (or of one (N,) row), from one
    `Counts`; with (N,) `weight`, of the weighted counts (zero weights dropped first, as scikit-learn
    drops them, so that their scores are no thresholds)."""
    if weight is not None:
        keep = weight > 0
        rows, positive, weight = rows[..., keep], positive[..., keep], weight[keep]
    if rows.ndim == 2 and rows.numel() > _BATCH_ROWS_UP_TO and rows.device.type == "cpu":
        return [_roc(_points(row, pos, weight)[0]) for row, pos in zip(rows, positive)]
    return [_roc(p) for p in _points(rows, positive, weight)]


def _points(rows: Tensor, positive: Tensor, weight: Tensor | None) -> list[Points]:
    """The distinct-threshold points of each row (or of the one (N,) row), from one `Counts`; only they
    stay in memory for what follows."""
    c = Counts(rows, positive, weight)
    return [c.points()] if rows.ndim == 1 else [c.points(b) for b in range(len(rows))]


_BATCH_ROWS_UP_TO = 2**19  # elements; beyond, one row at a time is faster on the CPU (memory locality; measured)


def _roc(p: Points) -> ROC:
    tp, fp, thr = p.tp, p.fp, -p.values.double()
    n_pos, n_neg = tp[-1], fp[-1]
    zero = tp.new_zeros(1)
    inf = tp.new_full((1,), math.inf)
    tp, fp = torch.cat([zero, tp]), torch.cat([zero, fp])
    return ROC(fpr=fp / n_neg, tpr=tp / n_pos, fnr=(n_pos - tp) / n_pos,
               min_constant=torch.cat([-inf, thr]), max_constant=torch.cat([thr, inf]))


def _auroc_rows(scores: Tensor, positive: Tensor, weight: Tensor | None = None) -> Tensor:
    """Exact AUROC of each row of (B, N) scores against (B, N) boolean labels; NaN where a row has one class.

    Mann-Whitney: each negative counts the positives ranked above it, plus half of those tied with it.
    With `weight` ((N,) or (B, N)), each pair counts the product of its weights. Without ties one
    product per element; with few, group bookkeeping for the tied elements only; with many (rounded or
    quantised scores), one term per distinct threshold (the trapezoids of the ROC curve).
    """
    c = Counts(scores, positive, weight)
    b, n = c.v.shape
    if b == 1:  # one row (binary AUROC): its distinct thresholds are where its sorted scores change
        change = c.v[0, 1:] != c.v[0, :-1]
        tied = n - 1 - int(change.sum())
    else:
        tied = c.tied_pairs
    if tied == 0:
        pairs = (c.neg * c.tp).sum(-1)
    elif tied * _GROUPED_FROM >= c.v.numel():
        pairs = _grouped_row_pairs(c, change) if b == 1 else _grouped_pairs(c)
    else:  # a tied negative counts the positives above its group and half of those in it
        pairs = (c.neg * c.tp).sum(-1) + _tied_negatives(c.tp, c.pos, c.neg, c.ties)  # the sum: untied negatives
    return pairs / (c.positives * c.negatives)


def _tied_negatives(tp: Tensor, pos: Tensor, neg: Tensor, t: Ties) -> Tensor:
    """(B,) what the tied negatives of sorted rows add to their pairs counted as if untied (each one's `tp`):
    half the positives of its group less those before it in the group (from the sorted rows' `tp`, and each
    element's positive and negative weight)."""
    tp_group = (tp[t.row, t.start] - pos[t.row, t.start] + tp[t.row, t.end]) / 2
    return tp.new_zeros(len(tp)).index_add_(0, t.row, neg[t.row, t.col] * (tp_group - tp[t.row, t.col]))


def binary_auroc(score: Tensor, positive: Tensor, n_pos: int) -> Tensor:
    """Exact AUROC of one (N,) row of unweighted scores against (N,) booleans holding `n_pos` positives and
    at least one negative: `_auroc_rows` for the common case, in fewer torch operations, since below
    N = 1e4 each operation's fixed cost outweighs its arithmetic."""
    n = score.shape[0]
    v, perm = sort_rows_descending(score)
    pos = positive.gather(0, perm)
    tp = pos.cumsum(0, dtype=torch.float64)
    change = v[1:] != v[:-1]  # closes a group of tied scores (but the last group)
    tied = n - 1 - int(change.sum())
    if tied * _GROUPED_FROM >= n:
        at = change.nonzero().view(-1)
        t = tp.take(at)
        pairs = _trapezoids((at + 1) - t, t, t.new_full((1,), n - n_pos), t.new_full((1,), n_pos))
    else:  # the k-th positive has tp = k, so the negatives' tp sum to the total less 1 + 2 + ... + n_pos
        pairs = tp.sum() - n_pos * (n_pos + 1) // 2
        if tied:
            pos = pos[None].double()
            pairs = pairs + _tied_negatives(tp[None], pos, 1 - pos, find_ties(v[None]))[0]
    return pairs / (n_pos * (n - n_pos))


def _trapezoids(fp: Tensor, tp: Tensor, negatives: Tensor, positives: Tensor) -> Tensor:
    """The area under one ROC curve of counts, from (0, 0) through its distinct-threshold points (fp, tp)
    but the last, to the last, (negatives, positives) (one element each)."""
    zero = tp.new_zeros(1)
    return torch.trapezoid(torch.cat([zero, tp, positives]), torch.cat([zero, fp, negatives]))


# From this share of tied neighbours on (1 / _GROUPED_FROM of the elements), a term per distinct threshold
# costs less than bookkeeping for each tied element (measured on the CPU, one thread, N = 1e4 to 1e6).
_GROUPED_FROM = 16


def _grouped_row_pairs(c: Counts, change: Tensor) -> Tensor:
    """(1,) (weighted) Mann-Whitney pair count of one row, the area under its ROC curve of counts: the
    trapezoids between its distinct-threshold points (FP, TP), from (0, 0) to (negatives, positives).
    `change` marks the sorted elements that close a group of ties, but the last one."""
    at = change.nonzero().view(-1)
    tp = c.tp[0].take(at)
    fp = c.fp[0].take(at) if c.weighted else torch.sub(at + 1, tp)
    return _trapezoids(fp, tp, c.negatives.view(1), c.positives.view(1)).view(1)


def _grouped_pairs(c: Counts) -> Tensor:
    """(B,) (weighted) Mann-Whitney pair count of each row, one trapezoid per distinct threshold: a group
    of tied scores that takes FP from F' to F and TP from T' to T adds (F - F') (T + T') / 2."""
    b, n = c.v.shape
    at = c._last.view(-1).nonzero().view(-1)  # every distinct threshold's last element, row-major
    tp = c.tp.take(at)
    fp = c.fp.take(at) if c.weighted else (at % n + 1) - tp
    first = torch.ones_like(at, dtype=torch.bool)  # the first threshold of each row: nothing before it
    first[1:] = at[:-1] % n == n - 1
    fp_before = torch.cat([fp.new_zeros(1), fp[:-1]]).masked_fill_(first, 0)
    tp_before = torch.cat([tp.new_zeros(1), tp[:-1]]).masked_fill_(first, 0)
    terms = (fp - fp_before) * (tp + tp_before)
    return torch.zeros(b, dtype=terms.dtype, device=terms.device).index_add_(0, at // n, terms).div_(2)


def _partial_auroc(score: Tensor, positive: Tensor, max_fpr: float, weight: Tensor | None = None) -> Tensor:
    """McClish-corrected partial AUROC up to `max_fpr`, as scikit-learn computes it."""
    roc = roc_rows(score, positive, weight)[0]
    fpr, tpr = roc.fpr, roc.tpr
    stop = int(torch.searchsorted(fpr, torch.tensor([max_fpr], dtype=fpr.dtype, device=fpr.device), right=True))
    x0, x1, y0, y1 = fpr[stop - 1], fpr[stop], tpr[stop - 1], tpr[stop]
    y_max = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
    fpr = torch.cat([fpr[:stop], fpr.new_tensor([max_fpr])])
    tpr = torch.cat([tpr[:stop], y_max.reshape(1)])
    partial = torch.trapezoid(tpr, fpr)
    min_area, max_area = 0.5 * max_fpr ** 2, max_fpr
    return 0.5 * (1 + (partial - min_area) / (max_area - min_area))


def auroc_rows(rows: Tensor, positive: Tensor, weight: Tensor | None = None, max_fpr: float | None = None) -> Tensor:
    """AUROC of each row of (B, N) scores against (B, N) booleans, weights (N,) or (B, N); NaN where a row
    lacks a class. `max_fpr` gives McClish-corrected partial AUROCs (one row at a time)."""
    if max_fpr is None or max_fpr == 1:
        return _auroc_rows(rows, positive, weight)
    w = None if weight is None else weight.expand_as(rows)
    out = torch.full((len(rows),), math.nan, dtype=torch.float64, device=rows.device)
    for b in range(len(rows)):
        wb = None if w is None else w[b]
        pos = positive[b] if wb is None else positive[b] & (wb > 0)
        neg = ~positive[b] if wb is None else ~positive[b] & (wb > 0)
        if bool(pos.any()) and bool(neg.any()):
            out[b] = _partial_auroc(rows[b], positive[b], float(max_fpr), wb)
    return out
