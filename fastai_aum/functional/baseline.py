"""The straightforward autograd AUM: a baseline for benchmarks and the demonstration of why it stalls."""
from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import check_choice

__all__ = ["plain_autograd_aum"]


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
