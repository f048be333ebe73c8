"""Autograd AUMs: the published blog version (the benchmarks' peer) and a leaner straightforward one (the
demonstration of why autograd through argsort stalls at ties)."""
from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import check_choice

__all__ = ["plain_autograd_aum", "blog_autograd_aum"]


def plain_autograd_aum(scores: Tensor, target: Tensor, normalize: str = "rate", stable: bool = True) -> Tensor:
    """Binary AUM by argsort, cumsum and minimum, differentiated by autograd.

    Its value is right, but at tied scores its gradient is that of one arbitrary tie-breaking order
    (the input order when `stable`, for reproducibility). When that order ranks the tied positives first, as
    for a model initialised at zero on data listed positives first, the gradient is exactly 0 and
    training never starts. `fastai_aum.functional.aum` uses the mean of the directional derivatives
    instead, which does not depend on any order.
    """
    check_choice("normalize", normalize, ("rate", "count"))
    order = torch.argsort(scores, descending=True, stable=stable)
    s, y = scores[order], target[order].to(scores.dtype)
    fp, fn = torch.cumsum(1 - y, 0), y.sum() - torch.cumsum(y, 0)
    if normalize == "rate":
        fp, fn = fp / (1 - y).sum().clamp_min(1), fn / y.sum().clamp_min(1)
    return ((s[:-1] - s[1:]) * torch.minimum(fp, fn)[:-1]).sum()


def blog_autograd_aum(scores: Tensor, target: Tensor) -> Tensor:
    """Binary AUM (rate normalisation) as Hocking's published torch blog computes it, step for step, for
    autograd to differentiate (https://tdhock.github.io/blog/2024/torch-roc-aum/): the ROC curve of the
    thresholds `-score` in increasing order, FP counted up and FN counted down (a flipped cumulative sum),
    a pass that keeps each distinct threshold's last point, then min(FPR, FNR) times the gaps between
    distinct thresholds. The benchmarks' "blog autograd" peer; `aum`'s value, not its gradient at ties.
    """
    positive = target == 1
    fp_step = torch.where(positive, 0, 1)
    fn_step = torch.where(positive, -1, 0)
    thresholds = -scores.reshape(-1)
    order = torch.argsort(thresholds)
    fp_after = fp_step[order].cumsum(0) / (~positive).sum()
    fn_before = -fn_step[order].flip(0).cumsum(0).flip(0) / positive.sum()
    ordered = thresholds[order]
    changes = ordered.diff() != 0
    true = torch.ones(1, dtype=torch.bool, device=scores.device)
    last_of_group, first_of_group = torch.cat([changes, true]), torch.cat([true, changes])
    distinct = ordered[last_of_group]
    zero = torch.zeros(1, dtype=fp_after.dtype, device=scores.device)
    fpr = torch.cat([zero, fp_after[last_of_group]])
    fnr = torch.cat([fn_before[first_of_group], zero])
    lowest = torch.cat([-torch.ones(1, dtype=distinct.dtype, device=scores.device), distinct])
    return (torch.minimum(fpr, fnr)[1:-1] * lowest[1:].diff()).sum()
