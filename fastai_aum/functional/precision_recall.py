"""Precision-recall curves and average precision with scikit-learn's semantics (pure torch)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._counts import Counts, Points
from ._inputs import Inputs, check_choice, check_sample_weight, prepare, warn_undefined
from ._scores import one_hot, positive_mask, ranking_scores

__all__ = ["PR", "precision_recall_curve", "average_precision"]


class PR(NamedTuple):
    """Precision-recall points as scikit-learn's `precision_recall_curve` returns them; a last point
    (precision 1, recall 0) closes the curve.

    Args:
        precision: float64, `precision[i]` that of predicting `score >= thresholds[i]` positive.
        recall: float64, likewise.
        thresholds: the distinct scores in increasing order, in the scores' dtype.
    """
    precision: Tensor
    recall: Tensor
    thresholds: Tensor


def _read(preds, target, labels=None, pos_label=None, curve: bool = False) -> tuple[Inputs, Tensor, Tensor]:
    """Validated inputs (empty refused), the (N,) or (N, K) scores they are ranked by, as `auroc` ranks
    them (a multi-label column: as it is), and the positive mask of their shape. A `curve`'s thresholds
    depend on which column is the positive class's even with one class; average precision does not."""
    if isinstance(preds, Tensor):
        preds = preds.detach()
    inp = prepare(preds, target, labels=labels, pos_label=pos_label, implicit_positive=False, multilabel=True,
                  one_class_any_column=not curve)
    if inp.multilabel:
        return inp, inp.scores, inp.labels
    if inp.binary:
        return inp, ranking_scores(inp), positive_mask(inp.labels)
    return inp, ranking_scores(inp), one_hot(inp.labels, inp.num_classes)


def _curve(p: Points) -> PR:
    """The PR curve of one row's distinct-threshold points."""
    tps = p.tp
    precision = tps / (tps + p.fp)
    recall = tps / tps[-1] if bool(tps[-1] > 0) else torch.ones_like(tps)  # scikit-learn's choice with no positive
    one, zero = precision.new_ones(1), precision.new_zeros(1)
    return PR(torch.cat([precision.flip(0), one]), torch.cat([recall.flip(0), zero]), p.values.flip(0))


def _columns(inp: Inputs) -> str:
    return "label(s)" if inp.multilabel else "class(es)"


def precision_recall_curve(preds, target, *, sample_weight=None, pos_label=None, labels=None) -> PR | list[PR]:
    """Precision-recall curve of binary scores (ties grouped), or a list with one `PR` per class
    (one-vs-rest) or label, with the semantics of scikit-learn's `precision_recall_curve` (without
    `drop_intermediate`).

    Thresholds are on the scale of the score ranked, as `auroc` ranks it: the score itself for one
    column, `z1 - z0` (float64) for (N, 2) logits, p1 for an (N, 2) probability matrix; for K classes
    the probabilities, or the log-softmax (log-probabilities) of logits; a label's own column. A class
    or label with no positive example gets recall 1 at every threshold, with one `AUROCUndefinedWarning`.
    As scikit-learn, examples of weight 0 are dropped first (their scores are no thresholds).

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, (N, K) logits or probabilities, or (N, L) label scores.
        target: N labels, or a multi-hot (N, L) matrix of the shape of `preds` (multi-label).
        sample_weight: N non-negative weights, for weighted precision and recall.
        pos_label: the positive label of binary scores, as for `roc_curve`.
        labels: multiclass labels in sorted order, as for `roc_curve`.
    """
    inp, s, positive = _read(preds, target, labels, pos_label, curve=True)
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(inp.labels), s.device)
    if w is not None:
        keep = w > 0
        if not bool(keep.any()):
            raise ValueError("`sample_weight` is 0 for every example: there is no precision-recall curve to draw")
        s, positive, w = s[keep], positive[keep], w[keep]
    c = Counts(s, positive, w) if inp.binary else Counts(s.T, positive.T, w)
    points = [c.points()] if inp.binary else [c.points(k) for k in range(len(c.v))]
    no_positive = (c.positives.reshape(-1) == 0).nonzero().flatten().tolist()
    del c  # the full-length rows are no longer needed (less memory in use for what follows)
    curves = [_curve(p) for p in points]
    if no_positive:
        which = "`target`" if inp.binary else f"`target` for {_columns(inp)} {no_positive}"
        weighted = "" if w is None else " with non-zero weight"
        warn_undefined(f"precision_recall_curve: no positive example{weighted} in {which}; recall is set to 1 at "
                       "every threshold, as scikit-learn does")
    return curves[0] if inp.binary else curves


def _average_precision_rows(scores: Tensor, positive: Tensor, weight: Tensor | None = None) -> Tensor:
    """Average precision of each row of (B, N) scores against (B, N) boolean labels; 0 where a row has
    no positive. It is the mean, over the positives, of the precision at the positive's group of ties;
    with `weight` ((N,) or (B, N)), the weighted mean of the weighted precision."""
    c = Counts(scores, positive, weight)
    precision = c.through(c.tp) / c.through(c.predicted)  # read where each element's group of ties ends
    if c.weighted:  # leading examples of weight 0 predict nothing: 0/0, and count for nothing
        precision = torch.where(c.pos > 0, precision, 0.0)
    n_pos = c.positives
    ap = (c.pos * precision).sum(-1) / n_pos
    return torch.where(n_pos > 0, ap, 0.0)


def average_precision(preds, target, average: str | None = "macro", *, sample_weight=None, pos_label=None,
                      labels=None) -> Tensor:
    """Average precision, `sum_n (R_n - R_{n-1}) P_n` over the thresholds (step-wise, not interpolated),
    with scikit-learn's `average_precision_score` semantics. Returns float64.

    K classes are scored one-vs-rest, ranked as `auroc` ranks them, L labels each by its own column;
    'weighted' weighs them by their positives' total weight, 'samples' averages each example's AP across
    the labels. A problem, class, label or example with no positive example has AP 0, with an
    `AUROCUndefinedWarning`, as scikit-learn gives; it counts as 0 in the means. Empty input, NaN/inf
    scores and labels out of range raise a ValueError.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, (N, K) logits or probabilities, or (N, L) label scores.
        target: N labels, or a multi-hot (N, L) matrix of the shape of `preds` (multi-label).
        average: 'macro', 'weighted', 'micro' (pooled), 'samples' (multi-label) or None; ignored for binary.
        sample_weight: N non-negative weights of precision and recall ('samples': of the examples' mean).
        pos_label: the positive label of binary scores, as for `roc_curve`.
        labels: multiclass labels in sorted order, as for `roc_curve`.
    """
    check_choice("average", average, ("macro", "weighted", "micro", "samples", None))
    inp, s, positive = _read(preds, target, labels, pos_label)
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(inp.labels), s.device)
    if inp.binary:
        if not bool(positive.any() if w is None else (w * positive).sum() > 0):
            warn_undefined("average_precision: no positive example in `target`; AP is 0, as scikit-learn gives")
        return _average_precision_rows(s[None], positive[None], None if w is None else w[None])[0]
    if average == "micro":
        ww = None if w is None else w[:, None].expand_as(s).reshape(1, -1)
        return _average_precision_rows(s.reshape(1, -1), positive.reshape(1, -1), ww)[0]
    if average == "samples":
        if not inp.multilabel:  # as `auroc`; scikit-learn would score each example's one-hot row
            raise ValueError("`average` must be 'macro', 'weighted', 'micro' or None for class labels: 'samples' "
                             "needs a multi-hot (N, L) `target` (multi-label)")
        return _average_samples(s, positive, w)
    values = _average_precision_rows(s.T.contiguous(), positive.T, w)
    support = positive.sum(0) if w is None else (w[:, None] * positive).sum(0)
    missing = (support == 0).nonzero().flatten().tolist()
    if missing:
        warn_undefined(f"average_precision: {_columns(inp)} {missing} have no positive example in `target`; "
                       "their AP is 0, as scikit-learn gives")
    if average is None:
        return values
    if average == "macro":
        return values.mean()
    weights = support.double()
    if not bool(weights.sum() > 0):
        return values.new_tensor(0.0)  # scikit-learn's 'weighted' gives 0 when no column has (weighted) positives
    return (values * weights).sum() / weights.sum()


def _average_samples(s: Tensor, positive: Tensor, w: Tensor | None) -> Tensor:
    """scikit-learn's `average='samples'`: each example's AP across its columns, averaged with `w`."""
    values = _average_precision_rows(s, positive)
    empty = int((~positive.any(1)).sum())
    if empty:
        warn_undefined(f"average_precision: {empty} of {len(s)} examples have no positive label; their AP is 0, "
                       "as scikit-learn gives")
    if w is None:
        return values.mean()
    if not bool(w.sum() > 0):
        warn_undefined("average_precision: `sample_weight` sums to 0; average='samples' is undefined (NaN)")
        return values.new_tensor(float("nan"))
    return (values * w).sum() / w.sum()
