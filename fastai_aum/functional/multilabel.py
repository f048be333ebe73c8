"""AUROC averaged over score columns: one-vs-rest multiclass and multi-label (multi-hot) targets (pure torch).

Multi-label scores are the raw (N, L) outputs, one binary score per label (logits or probabilities):
each label is ranked by its own column, never squashed through a sigmoid (which is monotone, so the
ranking, and the AUROC, are those of the probabilities).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._inputs import warn_undefined
from ._auc import auroc_rows

__all__ = ["auroc_columns", "auroc_samples"]


def _class_support(positive: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per column of (N, K) booleans: the (weighted) number of positives, and whether both classes have weight."""
    n = positive.shape[0]
    if weight is None:
        support = positive.sum(0)
        return support, (support > 0) & (support < n)
    support = (weight[:, None] * positive).sum(0)
    return support, (support > 0) & ((weight[:, None] * ~positive).sum(0) > 0)


def auroc_columns(s: Tensor, positive: Tensor, average: str | None, weight: Tensor | None = None,
                  max_fpr: float | None = None, what: str = "class") -> Tensor:
    """AUROC of each column of (N, K) scores against (N, K) boolean `positive`, averaged as scikit-learn's
    `roc_auc_score` averages them ('macro', 'weighted' by the (weighted) number of positives, 'micro'
    pooling every (score, label) pair, None per column). Columns that lack a class are averaged out with
    one warning (None: NaN), where scikit-learn would give NaN; `what` names the columns in it."""
    if average == "micro":
        w = None if weight is None else weight[:, None].expand_as(s).reshape(1, -1)
        value = auroc_rows(s.reshape(1, -1), positive.reshape(1, -1), w, max_fpr)[0]
        if (what != "class" or weight is not None) and math.isnan(value):
            warn_undefined(f"auroc: the pooled {what}s have no positive or no negative (weight) in `target`; "
                           "micro AUROC is undefined (NaN)")
        return value
    values = auroc_rows(s.T.contiguous(), positive.T, weight, max_fpr)
    support, defined = _class_support(positive, weight)
    if not bool(defined.all()):
        missing = (~defined).nonzero().flatten().tolist()
        how = "set to NaN" if average is None else f"{average} average over the {int(defined.sum())} others"
        which = "class(es)" if what == "class" else f"{what}(s)"
        warn_undefined(f"auroc: {which} {missing} have no positive or no negative example in `target`; {how}")
    if average is None:
        return values
    if not bool(defined.any()):
        return values.new_tensor(math.nan)
    weights = support.double() if average == "weighted" else torch.ones_like(values)
    weights = weights * defined
    return (values.nan_to_num() * weights).sum() / weights.sum()


def auroc_samples(s: Tensor, positive: Tensor, weight: Tensor | None = None, max_fpr: float | None = None) -> Tensor:
    """scikit-learn's `average='samples'` of multi-label AUROC: each example's AUROC across its L labels,
    averaged with `weight`. As scikit-learn, a (non-zero-weight) example whose labels are all 0 or all 1
    makes the average NaN, with one warning."""
    n, num_labels = s.shape
    values = auroc_rows(s, positive, None, max_fpr)
    counts = positive.sum(1)
    one_class = (counts == 0) | (counts == num_labels)
    if weight is not None:
        one_class = one_class & (weight > 0)
    bad = int(one_class.sum())
    if bad:
        warn_undefined(f"auroc: {bad} of {n} examples have one class only among their {num_labels} labels; "
                       "average='samples' is undefined (NaN), as scikit-learn gives")
        return values.new_tensor(math.nan)
    if weight is None:
        return values.mean()
    total = weight.sum()
    if not bool(total > 0):
        warn_undefined("auroc: `sample_weight` sums to 0; average='samples' is undefined (NaN)")
        return values.new_tensor(math.nan)
    return (values.nan_to_num() * weight).sum() / total
