"""The one counting core of the ROC and precision-recall quantities (pure torch): rows of scores sorted
once, in decreasing order, with each element's (weighted) class, the cumulative (weighted) TP and FP
through it, its group of tied scores, and the distinct-threshold points.

scikit-learn derives every curve from one helper (`_binary_clf_curve`); `Counts` is that helper,
batched over rows, with the two views its callers need: per element (AUROC, average precision,
DeLong's placements) and per distinct threshold (ROC and PR curves, the best threshold).
"""
from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import torch
from torch import Tensor

from ._sorting import Ties, find_ties, group_end, group_start, sort_rows_descending

__all__ = ["Counts", "Points", "unit_scale"]


def unit_scale(weight: Tensor) -> Tensor:
    """float64 `weight` times the power of two that brings each row's (last dim's) greatest weight into
    [0.5, 1); rows of zeros stay. Exact (a power of two changes only the exponent), and in two steps so
    that neither factor leaves float64's range, whatever the weights' scale (from 5e-324 to 1.8e308)."""
    _, e = torch.frexp(weight.amax(-1, keepdim=True))
    half = e // 2
    for k in (half, e - half):  # |k| <= 538: 2**-k is a normal float64, built from its exponent bits
        weight = weight * ((1023 - k).long() << 52).view(torch.float64)
    return weight


class Points(NamedTuple):
    """The distinct-threshold points of one row: `values`, its distinct scores in decreasing order (in the
    scores' dtype), and `tp`, `fp` (float64), the (weighted) counts of predicting `score >= value` positive."""
    values: Tensor
    tp: Tensor
    fp: Tensor


class Counts:
    """(B, N) rows of scores against (B, N) boolean labels, sorted once in decreasing order (stably); or
    one (N,) row, which saves the batch dimension's overhead for one problem (not with `ties`).

    `v`, `perm`: the sorted scores and the sort permutation. `pos`, `neg`: each sorted element's positive
    and negative weight (float64: 1 or 0 without `weight`, else its weight or 0; `weight` is (N,) or
    (B, N)). `tp`, `fp`: the cumulative positive and negative weight through each sorted element;
    `predicted`, the cumulative weight (`tp + fp`, but one cumsum of the weights when weighted).
    Without weights every count is an integer, exact in float64. Weights are first scaled by a power of
    two (`unit_scale`), exactly, so that products of two (AUROC's pairs) neither overflow nor underflow:
    the weighted counts are relative, and the quantities they make (rates, precision, AUROC) the same at
    every weight scale. Ties are grouped once, lazily: `tied`
    (one host-device sync), `ties` (the tied elements only, compacted; 2-d rows) or `above` / `through`
    (the counts strictly above each element's group, and through its end, for every element).
    """

    def __init__(self, scores: Tensor, positive: Tensor, weight: Tensor | None = None):
        self.v, self.perm = sort_rows_descending(scores)
        pos = positive.gather(-1, self.perm).double()
        self.w = None if weight is None else unit_scale(weight.expand_as(scores).gather(-1, self.perm))
        self.pos = pos if self.w is None else pos * self.w
        self.tp = self.pos.cumsum(-1)

    @property
    def weighted(self) -> bool:
        return self.w is not None

    @cached_property
    def _one_to_n(self) -> Tensor:
        n = self.v.shape[-1]
        return torch.arange(1, n + 1, device=self.v.device, dtype=torch.float64).expand_as(self.tp)

    @cached_property
    def neg(self) -> Tensor:
        return 1 - self.pos if self.w is None else self.w - self.pos

    @cached_property
    def fp(self) -> Tensor:
        return self._one_to_n - self.tp if self.w is None else self.neg.cumsum(-1)

    @cached_property
    def predicted(self) -> Tensor:
        return self._one_to_n if self.w is None else self.w.cumsum(-1)

    @property
    def positives(self) -> Tensor:
        """(B,) total positive weight of each row."""
        return self.tp[..., -1]

    @property
    def negatives(self) -> Tensor:
        """(B,) total negative weight of each row, summed at once (`fp[..., -1]` rounds otherwise when weighted)."""
        return self.v.shape[-1] - self.tp[..., -1] if self.w is None else self.neg.sum(-1)

    # ------------------------------------------------------------------------------------- ties ---

    @cached_property
    def tied(self) -> bool:
        """Whether some row has tied scores (one host-device sync)."""
        return bool((self.v[..., 1:] == self.v[..., :-1]).any())

    @cached_property
    def tied_pairs(self) -> int:
        """How many sorted elements equal the next one in their row (one host-device sync); sets `tied`."""
        count = int((self.v[..., 1:] == self.v[..., :-1]).sum())
        self.tied = count > 0
        return count

    @cached_property
    def ties(self) -> Ties | None:
        """The tied elements only, with their groups' first and last columns, or None."""
        return find_ties(self.v)  # which tells `tied` itself (one sync)

    @cached_property
    def _last(self) -> Tensor:
        """Mask of the sorted elements that close a group of ties (the distinct-threshold points)."""
        last = torch.ones_like(self.v, dtype=torch.bool)
        last[..., :-1] = self.v[..., 1:] != self.v[..., :-1]
        return last

    @cached_property
    def _start(self) -> Tensor:
        first = torch.ones_like(self._last)
        first[..., 1:] = self._last[..., :-1]
        return group_start(first)

    @cached_property
    def _end(self) -> Tensor:
        return group_end(self._last)

    def above(self, count: Tensor, own: Tensor) -> Tensor:
        """For every sorted element, the cumulative `count` strictly above its group of ties, given each
        element's `own` share of it (e.g. `tp` and `pos`)."""
        if not self.tied:
            return count - own
        return count.gather(-1, self._start) - own.gather(-1, self._start)

    def through(self, count: Tensor) -> Tensor:
        """For every sorted element, the cumulative `count` through the end of its group of ties."""
        return count.gather(-1, self._end) if self.tied else count

    # -------------------------------------------------------------------------- distinct points ---

    def points(self, row: int | None = None) -> Points:
        """The distinct-threshold points of the one (N,) row, or of row `row`: where each group of ties ends."""
        if row is None:
            last = self._last
            return Points(self.v[last], self.tp[last], self.fp[last])
        last = self._last[row]
        return Points(self.v[row][last], self.tp[row][last], self.fp[row][last])

    def unsort(self, x: Tensor) -> Tensor:
        """Values of the sorted elements (shape of the rows) back in the examples' order."""
        return torch.empty_like(x).scatter_(-1, self.perm, x)
