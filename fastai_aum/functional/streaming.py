"""Streaming binary AUROC in fixed memory, with a provable error bound (pure torch).

Each score is rounded to float32 and binned by the top bits of its order-preserving bit pattern, so a
bin is a range of consecutive float32 values; a histogram keeps the negatives and positives of each
bin. Two scores in different bins are ordered as their exact values are (float32 rounding and the
bit pattern are monotone), so only the pairs of a positive and a negative inside one bin can be
credited wrongly: the histogram credits each of them 1/2, the exact AUROC 0, 1/2 or 1. Hence

    |histogram AUROC - exact AUROC| <= bound = (1/2) * sum_b pos_b * neg_b / (P * N),

half the fraction of positive-negative pairs that share a bin. Memory is 16 bytes per bin (two int64
counts), whatever the number of rows; histograms of several batches, processes or ranks add up.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import warn_undefined
from ._scores import binary_score

__all__ = ["AUROCHistogram", "BoundedAUROC", "check_bins", "histogram_auroc", "order_keys", "streaming_auroc"]

MAX_BINS = 2 ** 28  # 4 GiB of counts


class BoundedAUROC(NamedTuple):
    """A streaming AUROC and its error bound: the exact AUROC lies in [auroc - bound, auroc + bound]."""
    auroc: Tensor
    bound: Tensor


def check_bins(bins) -> int:
    """`bins` as an int: a power of two from 2 to 2**28; anything else is a ValueError or TypeError."""
    if isinstance(bins, bool) or not isinstance(bins, int):
        raise TypeError(f"`bins` must be an int (a power of two, e.g. 2**20), got {type(bins).__name__} {bins!r}")
    if bins < 2 or bins > MAX_BINS or bins & (bins - 1):
        raise ValueError(f"`bins` must be a power of two from 2 to 2**28 (bins are ranges of the float32 bit "
                         f"pattern), got {bins}; e.g. 2**20 (16 MiB of counts)")
    return bins


def order_keys(scores: Tensor) -> Tensor:
    """int64 keys in [0, 2**32) of float32 `scores` that order as the scores do (-0.0 and 0.0 equal)."""
    bits = (scores.float() + 0.0).view(torch.int32).to(torch.int64)  # + 0.0 turns -0.0 into 0.0
    return torch.where(bits < 0, -1 - bits, bits + 2 ** 31)


def histogram_auroc(counts: Tensor) -> BoundedAUROC:
    """AUROC and its bound from (bins, 2) counts of negatives (column 0) and positives (column 1) per bin,
    bins in increasing score order; NaN (and a NaN bound) without a positive or without a negative."""
    neg, pos = counts[:, 0], counts[:, 1]
    n_neg, n_pos = int(neg.sum()), int(pos.sum())
    nan = torch.tensor(math.nan, dtype=torch.float64, device=counts.device)
    if n_neg == 0 or n_pos == 0:
        return BoundedAUROC(nan, nan)
    exact_ints = n_neg + n_pos < 2 ** 31  # then every sum below fits int64, and is exact
    neg, pos = (neg, pos) if exact_ints else (neg.double(), pos.double())
    below = torch.cumsum(neg, 0) - neg
    tied = (pos * neg).sum()
    twice = 2 * (pos * below).sum() + tied  # twice the AUROC's numerator (ties count 1/2)
    pairs = 2.0 * n_pos * n_neg
    return BoundedAUROC(twice.double() / pairs, tied.double() / pairs)


class AUROCHistogram:
    """A fixed-memory histogram of binary scores for a streaming AUROC: `update` it batch by batch (on
    any device), add histograms of other batches or processes (`+=`, `all_reduce`), then `compute`.

    Args:
        bins: a power of two from 2 to 2**28; 2**20 bins (16 MiB) give bounds around 1e-6 on well spread scores.
        device: where the counts live (default: the CPU; `update` moves them to its scores' device).
    """

    def __init__(self, bins: int = 2 ** 20, device=None):
        self.bins = check_bins(bins)
        self.shift = 32 - (self.bins.bit_length() - 1)
        self.counts = torch.zeros(self.bins, 2, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Forget every score counted so far."""
        self.counts.zero_()

    def update(self, preds: Tensor, target: Tensor, weight: Tensor | None = None, validate: bool = True) -> None:
        """Count a batch: `preds` (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns), `target`
        N labels in {0, 1} (or booleans). `weight` (N,) of 0/1 integers leaves out rows (e.g. non-finite ones)
        without a host-device sync; `validate=False` skips the checks that need one (finite scores, labels)."""
        preds, target = torch.as_tensor(preds), torch.as_tensor(target)
        if preds.is_complex() or (preds.ndim == 2 and preds.shape[1] > 2) or preds.ndim > 2:
            raise ValueError(f"`preds` must be (N,), (N, 1) or (N, 2) binary scores, got shape {tuple(preds.shape)}: "
                             "the streaming AUROC is for binary problems only (use `auroc` for multiclass or multi-label)")
        score = binary_score(preds.double() if preds.ndim == 2 and preds.shape[1] == 2 else preds)
        target = target.reshape(-1) if target.ndim == 2 and target.shape[1] == 1 else target
        if target.ndim != 1 or len(target) != len(score):
            raise ValueError(f"`target` must hold one label per row of `preds` ({len(score)}), got shape "
                             f"{tuple(target.shape)}: the streaming AUROC is for binary labels (no multi-hot target)")
        if validate:
            _check_batch(score, target)
        if self.counts.device != score.device:
            self.counts = self.counts.to(score.device)
        index = (order_keys(score) >> self.shift) * 2 + (target != 0).long()
        src = torch.ones_like(index) if weight is None else weight.to(index)
        self.counts.view(-1).scatter_add_(0, index, src)

    def __iadd__(self, other: AUROCHistogram) -> AUROCHistogram:
        if not isinstance(other, AUROCHistogram) or other.bins != self.bins:
            raise ValueError(f"only a histogram of the same `bins` ({self.bins}) can be added, got "
                             f"{getattr(other, 'bins', type(other).__name__)}")
        self.counts += other.counts.to(self.counts.device)
        return self

    def all_reduce(self, group=None) -> None:
        """Sum the counts of every process of `group` (torch.distributed must be initialised)."""
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("AUROCHistogram.all_reduce: torch.distributed is not initialised")
        dist.all_reduce(self.counts, group=group)

    @property
    def count(self) -> tuple[int, int]:
        """(negatives, positives) counted so far."""
        neg, pos = self.counts.sum(0).tolist()
        return neg, pos

    def compute(self) -> BoundedAUROC:
        """The AUROC of every score counted, and its bound; NaN with a warning without both classes."""
        neg, pos = self.count
        if neg == 0 or pos == 0:
            warn_undefined(f"auroc: only one class present in `target` ({pos} positives of {neg + pos}); "
                           "AUROC is undefined (NaN)" if neg + pos else "auroc: empty input, AUROC is undefined (NaN)")
        return histogram_auroc(self.counts)


def _check_batch(score: Tensor, target: Tensor) -> None:
    if score.is_floating_point():
        bad = int((~torch.isfinite(score)).sum())
        if bad:
            raise ValueError(f"`preds` contains {bad} non-finite value(s) (NaN or inf) out of {score.numel()}")
    elif score.dtype == torch.bool:
        raise TypeError("`preds` must be numeric scores, got a bool tensor")
    if target.dtype != torch.bool and len(target):
        if target.is_floating_point() and not bool(((target == 0) | (target == 1)).all()):
            raise ValueError("`target` labels must be in {0, 1}, got other values")
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"`target` labels must be in {{0, 1}}, got values from {lo} to {hi}")


def streaming_auroc(preds, target, bins: int = 2 ** 20) -> BoundedAUROC:
    """Binary AUROC from a `bins`-bin histogram of float32 scores, and its provable bound (module doc).

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns); NaN or inf is a ValueError.
        target: N labels in {0, 1} or booleans.
        bins: a power of two from 2 to 2**28.
    """
    hist = AUROCHistogram(bins, device=preds.device if isinstance(preds, Tensor) else None)
    hist.update(preds, target)
    return hist.compute()
