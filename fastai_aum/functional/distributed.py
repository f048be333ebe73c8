"""Every rank's batch in one (pure torch.distributed): the global batch that a global AUM ranks under DDP."""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from ._inputs import as_tensor, check_choice

__all__ = ["DISTRIBUTED_MODES", "check_distributed", "gather_batch", "gather_inputs", "is_distributed"]

DISTRIBUTED_MODES = ("local", "global")
_MAX_DIMS = 6  # the shapes that ranks compare before gathering: (ndim, shape..., padding, dtype)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool, torch.uint8, torch.int8,
           torch.int16, torch.int32, torch.int64)


def is_distributed(group=None) -> bool:
    """Whether a process group of more than one rank is running (so that 'global' gathers anything)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def gather_batch(preds: Tensor, *others: Tensor, group=None, grad_scale: float | None = None) -> tuple[Tensor, ...]:
    """Every rank's `preds` and `others` (each with the batch on its first axis), concatenated in rank order,
    on every rank. Batches may differ in length (each is padded to the longest, then trimmed); the other
    axes must agree across ranks. Only this rank's slice of the gathered `preds` carries a gradient, times
    `grad_scale` (default: the world size, so that DDP's mean of the ranks' gradients is the gradient of
    the loss of the whole gathered batch). Outside a process group of several ranks, the tensors as they are.

    Every rank must call it at the same point, as for any collective; it reads the batch lengths back to
    the host (one sync).
    """
    tensors = (preds, *others)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"gather_batch: argument {i} must be a tensor, got {type(t).__name__}")
        if t.ndim == 0 or t.ndim >= _MAX_DIMS:
            raise ValueError(f"gather_batch: argument {i} must have 1 to {_MAX_DIMS - 1} axes (the batch first), "
                             f"got shape {tuple(t.shape)}")
    if not is_distributed(group):
        return tensors
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    shapes = _all_shapes(tensors, preds.device, group)  # (world, tensors, _MAX_DIMS + 1)
    lengths = shapes[:, 0, 1].tolist()
    for i in range(len(tensors)):
        rest = shapes[:, i].clone()
        rest[:, 1] = 0  # the batch axis may differ across ranks, but not from `preds`'s on the same rank
        if not (rest == rest[0]).all() or not (shapes[:, i, 1] == shapes[:, 0, 1]).all():
            found = [_shape(s) for s in shapes[:, i].tolist()]
            raise ValueError(f"gather_batch: argument {i} must have the same dtype and shape on every rank but for "
                             f"the batch axis, and as many rows as `preds`; the ranks have {found}")
    scale = float(world if grad_scale is None else grad_scale)
    joined = _gather(tensors, lengths, group)
    start = sum(lengths[:rank])
    return (_OwnRows.apply(preds, joined[0], start, start + len(preds), scale), *joined[1:])


def _all_shapes(tensors, device, group) -> Tensor:
    mine = torch.zeros(len(tensors), _MAX_DIMS + 1, dtype=torch.long)
    for i, t in enumerate(tensors):
        mine[i, 0] = t.ndim
        mine[i, 1:1 + t.ndim] = torch.tensor(t.shape)
        mine[i, -1] = _DTYPES.index(t.dtype) if t.dtype in _DTYPES else len(_DTYPES)
    mine = mine.to(device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return torch.stack(out).cpu()


def _shape(row: list[int]) -> str:
    dtype = _DTYPES[row[-1]] if row[-1] < len(_DTYPES) else "other"
    return f"{tuple(row[1:1 + row[0]])} {str(dtype).replace('torch.', '')}"


def _gather(tensors, lengths: list[int], group) -> list[Tensor]:
    """The ranks' tensors, each concatenated in rank order (no gradient), in one `all_gather`: each rank's
    rows as their bytes, side by side, padded to the longest batch; unpacked bit for bit."""
    device, n = tensors[0].device, len(tensors[0])
    rows = [t.detach().to(device).reshape(n, math.prod(t.shape[1:])).contiguous().view(torch.uint8) for t in tensors]
    widths = [r.shape[1] for r in rows]
    packed = torch.zeros((max(lengths), sum(widths)), dtype=torch.uint8, device=device)
    packed[:n] = torch.cat(rows, dim=1)
    out = [torch.empty_like(packed) for _ in lengths]
    dist.all_gather(out, packed, group=group)
    joined = torch.cat([o[:k] for o, k in zip(out, lengths)])
    parts = joined.split(widths, dim=1)
    return [p.contiguous().view(t.dtype).reshape(len(joined), *t.shape[1:]) for p, t in zip(parts, tensors)]


class _OwnRows(torch.autograd.Function):
    """The gathered batch with this rank's own rows in it, exactly as they are: the backward hands them their
    slice of the gradient, times `scale`, and the other ranks' rows are constants."""

    @staticmethod
    def forward(ctx, x: Tensor, joined: Tensor, start: int, stop: int, scale: float) -> Tensor:
        ctx.start, ctx.stop, ctx.scale = start, stop, scale
        return torch.cat([joined[:start], x, joined[stop:]])

    @staticmethod
    def backward(ctx, grad: Tensor):
        own = grad[ctx.start:ctx.stop]
        return own * ctx.scale if ctx.scale != 1 else own, None, None, None, None


def check_distributed(distributed: str) -> str:
    """`distributed` if it is 'local' or 'global', else a ValueError naming it."""
    check_choice("distributed", distributed, DISTRIBUTED_MODES)
    return distributed


def gather_inputs(preds, target, sample_weight=None, group=None):
    """`(preds, target, sample_weight)` of the whole global batch, for a global AUM (`gather_batch`)."""
    preds = as_tensor(preds, "preds")
    try:
        target = torch.as_tensor(target, device=preds.device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"distributed='global' gathers numeric labels (a tensor or an array of numbers), got "
                        f"{type(target).__name__} ({e})") from None
    if sample_weight is None:
        return (*gather_batch(preds, target, group=group), None)
    return gather_batch(preds, target, torch.as_tensor(sample_weight, device=preds.device), group=group)
