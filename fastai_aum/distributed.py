"""DDP fits with fastai's `Learner.distrib_ctx`, launched with `torchrun`, on GPUs and on CPU-only hosts.

On GPUs `distrib_ctx` is fastai's own context, unchanged. On a CPU-only host (or with `cpu=True`) fastai's
needs three fixes, applied only there and only to this Learner's trainer: accelerate's `cpu=True` (without
it the model is never wrapped in DDP under `torchrun`), `sync_bn=False` (`SyncBatchNorm` needs CUDA) and
a `DistributedDL` whose index broadcast takes CPU tensors (fastai's hard-codes `.cuda()`, which gloo refuses).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
import torch.distributed as dist
from fastai.learner import Learner

__all__ = ["distrib_ctx", "cpu_distributed_dl"]


@functools.cache
def _fastai_distributed():
    """fastai's distributed module, imported on first use: it needs accelerate, which the package does not."""
    try:
        import fastai.distributed
    except (ImportError, NameError) as e:  # fastai.distributed names accelerate's Accelerator at import
        raise ImportError(f"distrib_ctx needs accelerate, which fastai's DDP runs on: `pip install accelerate` "
                          f"({type(e).__name__}: {e})") from None
    return fastai.distributed


def _broadcast(self, t, rank):
    """Broadcast the indices on the backend's own device: CPU tensors for gloo (and mpi), CUDA for nccl."""
    if dist.get_backend() == "nccl":
        return super(cpu_distributed_dl(), self)._broadcast(t, rank)
    t = torch.tensor(t, dtype=torch.long)
    dist.broadcast(t, rank)
    return t.tolist()


@functools.cache
def cpu_distributed_dl() -> type:
    """`CPUDistributedDL`: fastai's `DistributedDL` with an index broadcast that gloo takes (fastai's
    hard-codes `.cuda()`); CUDA tensors for nccl, as fastai's."""
    base = _fastai_distributed().DistributedDL
    return type("CPUDistributedDL", (base,), {"_broadcast": _broadcast, "__doc__": cpu_distributed_dl.__doc__,
                                               "__module__": __name__})


def _wrap_dl_on_cpu(trainer, dl):
    model = trainer.learn.model  # DDP has a `device`; a bare module (before the fit wraps it) its parameters'
    device = getattr(model, "device", None) or next(iter(model.parameters()), torch.zeros(0)).device
    is_distributed_dl = isinstance(dl, _fastai_distributed().DistributedDL)
    return dl if is_distributed_dl else cpu_distributed_dl()(dl, device=device)


@contextmanager
def distrib_ctx(learn: Learner, sync_bn: bool | None = None, cpu: bool | None = None, **kwargs):
    """`learn.distrib_ctx(...)` (fastai's DDP context, for a script launched with `torchrun`) that also
    runs on CPU-only hosts.

    Args:
        learn: the Learner to fit inside the context.
        sync_bn: replace batch norm with `nn.SyncBatchNorm` (default: True on GPUs, as fastai; False on
            the CPU, where True is an error).
        cpu: train on the CPU with gloo (default: where no CUDA device is available). With False (or on
            a GPU host by default) this is `learn.distrib_ctx(sync_bn, **kwargs)`, and nothing else.
        **kwargs: passed on to fastai's `distrib_ctx` (and accelerate's `Accelerator`).
    """
    if not isinstance(learn, Learner):
        raise TypeError(f"distrib_ctx: `learn` must be a fastai Learner, got {type(learn).__name__}")
    trainer_type = _fastai_distributed().DistributedTrainer  # also gives Learner its `distrib_ctx`
    if cpu is None:
        cpu = not torch.cuda.is_available()
    if not cpu:
        with learn.distrib_ctx(sync_bn=True if sync_bn is None else sync_bn, **kwargs):
            yield learn
        return
    if sync_bn:
        raise ValueError("distrib_ctx: `sync_bn=True` needs CUDA (nn.SyncBatchNorm), but the fit runs on the CPU "
                         "(cpu=True, or no CUDA device): leave `sync_bn` unset or False")
    trainer = None
    try:
        with learn.distrib_ctx(sync_bn=False, cpu=True, **kwargs):
            trainer = next((cb for cb in learn.cbs if isinstance(cb, trainer_type)), None)
            if trainer is not None:  # this trainer only: fastai's class and every other Learner stay as they are
                trainer._wrap_dl = _wrap_dl_on_cpu.__get__(trainer)
            yield learn
    finally:
        if trainer is not None:
            vars(trainer).pop("_wrap_dl", None)
            if trainer in learn.cbs:  # fastai leaves it attached when WORLD_SIZE is 1
                learn.remove_cb(trainer)
