"""Precision-recall curves and average precision with scikit-learn's semantics (pure torch)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import Inputs, check_choice, check_sample_weight, prepare, warn_undefined
from ._scores import one_hot, positive_mask, ranking_scores
from ._sorting import group_end, group_marks, sort_rows_descending

__all__ = ["PR", "precision_recall_curve", "average_precision"]


class PR(NamedTuple):
    """Precision-recall points as scikit-learn's `precision_recall_curve` returns them: `thresholds` are
    the distinct scores in increasing order; `precision[i]`, `recall[i]` (float64) are those of predicting
    `score >= thresholds[i]` positive, and a last point (precision 1, recall 0) closes the curve."""
    precision: Tensor
    recall: Tensor
    thresholds: Tensor


def _read(preds, target, labels=None, pos_label=None) -> tuple[Inputs, Tensor]:
    """Validated inputs (empty refused) and the scores they are ranked by, as `auroc` ranks them."""
    if isinstance(preds, Tensor):
        preds = preds.detach()
    inp = prepare(preds, target, labels=labels, pos_label=pos_label,
                  implicit_positive=False)
    return inp, ranking_scores(inp)


def _curve(v: Tensor, pos: Tensor) -> PR:
    """The PR curve of one row sorted in decreasing order (`v`) with its float64 positive indicator."""
    tp = pos.cumsum(0)
    _, last = group_marks(v)
    tps = tp[last]
    predicted = torch.arange(1, len(v) + 1, device=v.device, dtype=torch.float64)[last]
    precision = tps / predicted
    recall = tps / tps[-1] if bool(tps[-1] > 0) else torch.ones_like(tps)  # scikit-learn's choice with no positive
    one, zero = precision.new_ones(1), precision.new_zeros(1)
    return PR(torch.cat([precision.flip(0), one]), torch.cat([recall.flip(0), zero]), v[last].flip(0))


def precision_recall_curve(preds, target) -> PR | list[PR]:
    """Precision-recall curve of binary scores (ties grouped), or one-vs-rest, a list with one `PR` per class.

    Semantics of scikit-learn's `precision_recall_curve` (without `drop_intermediate`). Binary `preds`
    are (N,), (N, 1) or (N, 2), ranked as `auroc` ranks them: thresholds are on the scale of the score
    itself for one column, of `z1 - z0` (float64) for (N, 2) logits, of p1 for an (N, 2) probability
    matrix. Multiclass (N, K) scores give one curve per class, thresholds on the probability scale for a
    probability matrix and on the log-softmax scale (log-probabilities) for logits. A class with no
    positive example gets recall 1 at every threshold, with one `AUROCUndefinedWarning`, as scikit-learn.
    """
    inp, s = _read(preds, target)
    if inp.binary:
        rows, positive = s[None], positive_mask(inp.labels)[None]
    else:
        rows, positive = s.T.contiguous(), one_hot(inp.labels, inp.num_classes).T
    v, perm = sort_rows_descending(rows)
    pos = positive.gather(-1, perm).double()
    curves = [_curve(v[k], pos[k]) for k in range(len(v))]
    no_positive = (pos.sum(-1) == 0).nonzero().flatten().tolist()
    if no_positive:
        which = "`target`" if inp.binary else f"`target` for class(es) {no_positive}"
        warn_undefined(f"precision_recall_curve: no positive example in {which}; recall is set to 1 at every "
                       "threshold, as scikit-learn does")
    return curves[0] if inp.binary else curves


def _average_precision_rows(scores: Tensor, positive: Tensor, weight: Tensor | None = None) -> Tensor:
    """Average precision of each row of (B, N) scores against (B, N) boolean labels; 0 where a row has
    no positive. It is the mean, over the positives, of the precision at the positive's group of ties;
    with `weight` ((N,) or (B, N)), the weighted mean of the weighted precision."""
    v, perm = sort_rows_descending(scores)
    pos = positive.gather(-1, perm).double()
    end = torch.arange(v.shape[-1], device=v.device).expand_as(v)
    if bool((v[..., 1:] == v[..., :-1]).any()):
        end = group_end(group_marks(v)[1])  # precision is read where each element's group of tied scores ends
    if weight is not None:
        w = weight.expand_as(scores).gather(-1, perm)
        pos = pos * w
        predicted = w.cumsum(-1).gather(-1, end)
    else:
        predicted = (end + 1).double()
    tp = pos.cumsum(-1)
    precision = tp.gather(-1, end) / predicted
    if weight is not None:  # leading examples of weight 0 predict nothing: 0/0, and count for nothing
        precision = torch.where(pos > 0, precision, 0.0)
    n_pos = tp[:, -1]
    ap = (pos * precision).sum(-1) / n_pos
    return torch.where(n_pos > 0, ap, 0.0)


def average_precision(preds, target, average: str | None = "macro", *, sample_weight=None, pos_label=None,
                      labels=None) -> Tensor:
    """Average precision, `sum_n (R_n - R_{n-1}) P_n` over the thresholds (step-wise, not interpolated),
    with scikit-learn's `average_precision_score` semantics.

    Binary `preds` are (N,), (N, 1) or (N, 2) (`average` is then ignored, as scikit-learn does);
    multiclass (N, K) logits or probabilities are scored one-vs-rest, ranked as `auroc` ranks them, with
    `average` 'macro' (mean over classes), 'weighted' (by the number of positives), 'micro' (all N * K
    pairs pooled) or None (per class values, (K,)). A binary problem or class with no positive example
    has AP 0, with an `AUROCUndefinedWarning`, as scikit-learn gives; it counts as 0 in the macro mean.
    Returns float64. Empty input, NaN/inf scores and labels out of range raise a ValueError.
    `sample_weight` (N non-negative numbers) weighs precision and recall, as scikit-learn does; then
    'weighted' weighs classes by their positives' total weight. `pos_label` and `labels` as for `roc_curve`.
    """
    check_choice("average", average, ("macro", "weighted", "micro", None))
    inp, s = _read(preds, target, labels, pos_label)
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(inp.labels), s.device)
    if inp.binary:
        positive = positive_mask(inp.labels)
        if not bool(positive.any() if w is None else (w * positive).sum() > 0):
            warn_undefined("average_precision: no positive example in `target`; AP is 0, as scikit-learn gives")
        return _average_precision_rows(s[None], positive[None], None if w is None else w[None])[0]
    onehot = one_hot(inp.labels, inp.num_classes)
    if average == "micro":
        ww = None if w is None else w[:, None].expand_as(s).reshape(1, -1)
        return _average_precision_rows(s.reshape(1, -1), onehot.reshape(1, -1), ww)[0]
    values = _average_precision_rows(s.T.contiguous(), onehot.T, w)
    support = onehot.sum(0) if w is None else (w[:, None] * onehot).sum(0)
    missing = (support == 0).nonzero().flatten().tolist()
    if missing:
        warn_undefined(f"average_precision: class(es) {missing} have no positive example in `target`; "
                       "their AP is 0, as scikit-learn gives")
    if average is None:
        return values
    if average == "macro":
        return values.mean()
    weights = support.double()  # N > 0 labels in [0, K): some class has positives
    if w is not None and not bool(weights.sum() > 0):
        return values.new_tensor(0.0)  # scikit-learn's 'weighted' gives 0 when no label has weight
    return (values * weights).sum() / weights.sum()
