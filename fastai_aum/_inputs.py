"""Validation and normalisation of `(preds, target)` pairs for the functional API (pure torch)."""
from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

__all__ = ["AUROCUndefinedWarning", "Inputs", "check_choice", "prepare", "is_probability_matrix", "warn_undefined"]


class AUROCUndefinedWarning(UserWarning):
    """AUROC (or one of its classes) is undefined: a class is missing or the input is empty."""


@dataclass
class Inputs:
    """Validated inputs: `scores` is (N,), (N, 2) or (N, K); `labels` is (N,) of class indices (any real dtype)."""
    scores: Tensor
    labels: Tensor
    num_classes: int  # 2 for binary
    source_dtype: torch.dtype  # before upcasting

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @cached_property
    def probabilities(self) -> bool:
        """Whether 2-d scores are a probability matrix (one host-device sync)."""
        return is_probability_matrix(self.scores, self.source_dtype)


def check_choice(name: str, value, choices) -> None:
    """Raise a ValueError naming the argument unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x if type(x) is Tensor else x.as_subclass(Tensor)  # fastai's TensorBase makes every op slower
    try:
        return torch.as_tensor(x)
    except Exception as e:  # numpy object arrays, strings, ragged lists
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers, got {type(x).__name__}") from e


def _upcast(preds: Tensor) -> Tensor:
    if preds.dtype.is_complex or preds.dtype == torch.bool:
        raise TypeError(f"`preds` must hold real numbers, got dtype {preds.dtype}")
    if preds.dtype in (torch.float16, torch.bfloat16):
        return preds.float()  # sorting and summing in half precision creates false ties and drift
    if not preds.is_floating_point():
        if preds.dtype == torch.int64 and preds.numel() and bool((preds.abs() > 2**53).any()):
            raise ValueError("`preds` holds integers beyond 2**53, which float64 cannot represent exactly; "
                             "rescale them to floats first")
        return preds.double()
    return preds


def is_probability_matrix(preds: Tensor, source_dtype: torch.dtype | None = None) -> bool:
    """True when every entry lies in [0, 1] and every row sums to 1 (so softmax must not be applied again).

    "Sums to 1" allows for the rounding of `source_dtype` (the dtype the model produced, before any
    upcast): a bf16 softmax row can be 4e-3 off.
    """
    if preds.ndim != 2 or preds.numel() == 0:
        return False
    dtype = source_dtype if source_dtype is not None and source_dtype.is_floating_point else preds.dtype
    tol = max(1e-3, 2 * torch.finfo(dtype).eps)
    p = preds.detach()
    return bool(((p >= 0) & (p <= 1)).all() and ((p.sum(1, dtype=torch.float64) - 1).abs() <= tol).all())


def _check_finite(preds: Tensor) -> None:
    # One cheap reduction first; a sum can overflow to inf, so count exactly before complaining.
    if math.isfinite(preds.detach().sum().item()):
        return
    bad = int((~torch.isfinite(preds)).sum())
    if bad:
        raise ValueError(f"`preds` contains {bad} non-finite value(s) (NaN or inf) out of {preds.numel()}")


def prepare(preds, target, *, validate: bool = True, allow_empty: bool = False) -> Inputs:
    """Check `preds` and `target` against DESIGN.md's rules and return them in canonical form.

    `preds` of shape (N,) or (N, 1) is a binary score, (N, 2) binary logits or probabilities (kept as
    (N, 2) here; callers pick the score), (N, K > 2) multiclass. `target` holds N integer labels.
    With `validate=False` the value checks that need a host-device sync (finiteness, label range) are
    skipped; shape checks always run.
    """
    preds = _as_tensor(preds, "preds")
    source_dtype = preds.dtype
    preds = _upcast(preds)
    target = _as_tensor(target, "target")
    if preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if preds.ndim not in (1, 2) or (preds.ndim == 2 and preds.shape[1] == 0):
        raise ValueError(f"`preds` must have shape (N,), (N, 1), (N, 2) or (N, K), got {tuple(preds.shape)}")
    n = preds.shape[0]
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 1:
        raise ValueError(f"`target` must have shape (N,) or (N, 1) with integer class labels, got {tuple(target.shape)}")
    if target.shape[0] != n:
        raise ValueError(f"`preds` and `target` must have the same length, got {n} predictions and {target.shape[0]} labels")
    if target.dtype.is_complex:
        raise TypeError(f"`target` must hold integer class labels, got dtype {target.dtype}")
    if target.device != preds.device:
        raise ValueError(f"`preds` and `target` must be on the same device, got {preds.device} and {target.device}")
    num_classes = 2 if preds.ndim == 1 else preds.shape[1]
    if n == 0:
        if not allow_empty:
            raise ValueError("`preds` and `target` are empty: there is nothing to rank")
        return Inputs(preds, target.long(), num_classes, source_dtype)
    if validate:
        _check_finite(preds)
    if target.dtype == torch.bool and num_classes == 2:
        return Inputs(preds, target, num_classes, source_dtype)
    if validate and target.is_floating_point():
        nonint = int((target != target.round()).sum())
        if nonint:
            raise ValueError(f"`target` must hold integer class labels, got {nonint} non-integer value(s), "
                             f"e.g. {target[target != target.round()][0].item()}")
    target = target.long()  # float and unsigned labels too: they index class columns
    if validate:
        lo, hi = target.min().item(), target.max().item()
        if lo < 0 or hi >= num_classes:
            expected = "{0, 1}" if num_classes == 2 else f"[0, {num_classes}) for {num_classes} score columns"
            raise ValueError(f"`target` labels must be in {expected}, got values from {lo:g} to {hi:g}")
    return Inputs(preds, target, num_classes, source_dtype)


def warn_undefined(msg: str) -> None:
    """Warn with an `AUROCUndefinedWarning` attributed to the first caller outside this package."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastai_aum."):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, AUROCUndefinedWarning, stacklevel=level)
