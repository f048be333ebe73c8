"""Sorting scores fast (integer keys that torch radix-sorts) and finding groups of tied values (pure torch)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["sort_rows_descending", "group_start", "group_end", "group_marks", "group_bounds", "Ties", "find_ties"]


def _descending_key(scores: Tensor) -> Tensor:
    """Integers whose ascending order is the descending order of the float `scores` (ties kept as ties)."""
    wide = scores.dtype == torch.float64
    negated = 0.0 - (scores if wide else scores.float())  # also maps -0.0 to +0.0, so that 0.0 and -0.0 tie
    bits = negated.view(torch.int64 if wide else torch.int32)
    # IEEE floats order like sign-magnitude integers: flip the magnitude bits of negatives to get two's complement.
    return bits ^ ((bits >> (63 if wide else 31)) & (2**63 - 1 if wide else 2**31 - 1))


# torch's CPU sort radix-sorts a 1-d integer tensor from this length on (at::internal::GRAIN_SIZE) and
# compares below it. Below _KEYS_FROM a comparison sort of the floats themselves beats building integer
# keys; from there, keys padded up to _RADIX_FROM win (measured, one thread, 1024 to 8192 elements).
_RADIX_FROM, _PAD_FROM, _KEYS_FROM = 32768, 6144, 6144


def _argsort_keys(key: Tensor) -> Tensor:
    """Stable ascending argsort of a 1-d integer tensor, as fast as torch allows."""
    n = len(key)
    if key.device.type == "cpu" and _PAD_FROM <= n < _RADIX_FROM:
        padding = key.new_full((_RADIX_FROM - n,), torch.iinfo(key.dtype).max)  # sorts after every real key
        return torch.sort(torch.cat([key, padding]), stable=True).indices[:n]
    return torch.sort(key, stable=True).indices


def sort_rows_descending(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Sort (N,) scores, or each row of (B, N) scores, in decreasing order, stably: (values, indices).

    torch.sort of floats on the CPU is a comparison sort; of a long 1-d integer tensor, a radix sort
    several times faster. So from a few thousand scores this sorts integer keys that order like the
    scores: all rows in one flat sort (row index in the high bits) where the 32-bit keys of float32
    scores leave room. Short rows are sorted as floats, which costs fewer operations.
    """
    n = scores.shape[-1]
    if not scores.is_contiguous():  # a transposed view: sorted rows would keep its strides, and sums over them
        scores = scores.contiguous()  # would add up in another order (last-bit differences)
    if n < _KEYS_FROM and scores.numel() < _RADIX_FROM and scores.device.type == "cpu":
        return torch.sort(scores, dim=-1, descending=True, stable=True)  # -0.0 == 0.0 here too, as in the keys
    if scores.ndim == 1:
        v, perm = sort_rows_descending(scores[None])
        return v[0], perm[0]
    b = scores.shape[0]
    key = _descending_key(scores)
    if b == 1:
        perm = _argsort_keys(key.view(n)).view(1, n)
    elif key.dtype == torch.int32:
        rows = torch.arange(b, device=scores.device)[:, None]
        flat = (rows << 32) | (key.long() + 2**31)
        perm = _argsort_keys(flat.view(-1)).view(b, n) - rows * n
    else:  # 64-bit keys leave no room for the row: sort the rows one by one, still by integer key
        perm = torch.stack([_argsort_keys(row) for row in key])
    return scores.gather(-1, perm), perm


def group_start(first: Tensor) -> Tensor:
    """Given a mask (along the last dim) of the elements that open a group, the index where each
    element's group starts."""
    idx = torch.arange(first.shape[-1], device=first.device).expand_as(first)
    return torch.where(first, idx, 0).cummax(-1).values


def group_end(last: Tensor) -> Tensor:
    """Given a mask (along the last dim) of the elements that close a group, the index where each
    element's group ends."""
    n = last.shape[-1]
    idx = torch.arange(n, device=last.device).expand_as(last)
    return torch.where(last, idx, n - 1).flip(-1).cummin(-1).values.flip(-1)


def group_marks(v: Tensor) -> tuple[Tensor, Tensor]:
    """Masks of the elements of sorted rows that open and that close a group of equal values."""
    first = torch.ones_like(v, dtype=torch.bool)
    first[..., 1:] = v[..., 1:] != v[..., :-1]
    last = torch.ones_like(first)
    last[..., :-1] = first[..., 1:]
    return first, last


def group_bounds(v: Tensor) -> tuple[Tensor, Tensor]:
    """For every element of rows sorted along the last dim, the indices of the first and last element
    of its group of equal values."""
    if v.ndim == 1 and v.device.type == "cpu":  # one run-length pass, where its sync to size the runs is free
        _, inverse, counts = torch.unique_consecutive(v, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0)
        return (ends - counts).index_select(0, inverse), ends.sub_(1).index_select(0, inverse)
    first, last = group_marks(v)
    return group_start(first), group_end(last)


class Ties(NamedTuple):
    """The elements of sorted (B, N) rows that share their value with a neighbour, in row-major order:
    `row`, `col`, and the columns where each one's group of equal values starts and ends."""
    row: Tensor
    col: Tensor
    start: Tensor
    end: Tensor


def find_ties(v: Tensor) -> Ties | None:
    """Ties of rows sorted along the last dim, or None. Untied elements need no group bookkeeping, so
    only the (usually few) tied ones are compacted; that costs a host-device sync."""
    if not bool((v[..., 1:] == v[..., :-1]).any()):
        return None
    first, last = group_marks(v)
    row, col = (~(first & last)).nonzero(as_tuple=True)
    # Every row opens and closes a group at its ends, so groups found in the flat subset never span rows.
    return Ties(row, col, col[group_start(first[row, col])], col[group_end(last[row, col])])
