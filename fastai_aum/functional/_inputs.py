"""Validation and normalisation of `(preds, target)` pairs for the functional API (pure torch)."""
from __future__ import annotations

import math
import numbers
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from ._labels import encode_target, needs_encoding

__all__ = ["AUROCUndefinedWarning", "ProbabilityRowsWarning", "Inputs", "near_probability_tolerance", "check_choice",
           "count_non_finite", "as_tensor", "check_finite", "check_multiclass_margin", "check_non_negative", "check_sample_weight",
           "prepare", "is_probability_matrix", "warn_undefined"]


class AUROCUndefinedWarning(UserWarning):
    """AUROC (or one of its classes) is undefined: a class is missing or the input is empty."""


class ProbabilityRowsWarning(UserWarning):
    """Scores in [0, 1] whose rows sum to 1 only roughly: read as probabilities, not as logits."""


@dataclass
class Inputs:
    """Validated inputs: `scores` is (N,), (N, 2) or (N, K); `labels` is (N,) of class indices (any real dtype),
    or, when `multilabel`, an (N, L) boolean multi-hot matrix the shape of `scores` (then `num_classes` is L)."""
    scores: Tensor
    labels: Tensor
    num_classes: int  # 2 for binary
    source_dtype: torch.dtype  # before upcasting
    value_range: tuple | None = None  # (min, max) of multiclass scores, when validation found it
    multilabel: bool = False

    @property
    def binary(self) -> bool:
        return self.num_classes == 2 and not self.multilabel

    @cached_property
    def probabilities(self) -> bool:
        """Whether 2-d scores are a probability matrix (one host-device sync); rows that sum to 1 only
        roughly (rounded probabilities) count, with a warning."""
        return is_probability_matrix(self.scores, self.source_dtype, self.value_range, near=True)


def check_choice(name: str, value, choices) -> None:
    """Raise a ValueError naming the argument unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")


def as_tensor(x, name: str) -> Tensor:
    """`x` as a dense tensor with values; lists of Python floats are read as float64, as numpy reads them."""
    if isinstance(x, Tensor):
        _check_tensor_kind(x, name)
        return x if type(x) is Tensor else x.as_subclass(Tensor)  # fastai's TensorBase makes every op slower
    if hasattr(x, "__cuda_array_interface__"):  # CuPy, Numba: stay on the device
        try:
            return torch.as_tensor(x)
        except Exception as e:
            raise TypeError(f"`{name}` must be a tensor or array-like of numbers, got {type(x).__name__}") from e
    try:
        arr = np.asarray(x)  # float64 for Python floats: torch.as_tensor would read them as float32
    except Exception as e:  # ragged lists
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers, got {type(x).__name__}") from e
    if arr.dtype.kind not in "biufc":  # numpy object, string, datetime arrays
        if arr.dtype.kind == "O" and not isinstance(x, np.ndarray):
            _refuse_huge_python_ints(x, name)  # numpy reads ints beyond 2**64 as objects
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers, got {type(x).__name__}"
                        + (f" of numpy dtype {arr.dtype}" if isinstance(x, np.ndarray) else ""))
    if arr.dtype.kind == "f" and not isinstance(x, np.ndarray) and arr.size and np.abs(arr).max() >= 2**53:
        _refuse_huge_python_ints(x, name)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    elif not arr.flags.writeable:  # e.g. a pandas Series' values: torch warns on read-only arrays it would share
        arr = arr.copy()
    try:
        return torch.as_tensor(arr)
    except Exception as e:  # float128 and other dtypes torch lacks
        raise TypeError(f"`{name}` must be a tensor or array-like of numbers torch can hold, got numpy dtype "
                        f"{arr.dtype}; convert it to float64 first") from e


def _refuse_huge_python_ints(x, name: str) -> None:
    """numpy reads Python ints beyond int64 next to others as float64, rounding them: refuse those beyond 2**53."""
    for v in np.asarray(x, dtype=object).ravel():
        if isinstance(v, numbers.Integral) and not isinstance(v, bool) and abs(int(v)) > 2**53:
            raise ValueError(f"`{name}` holds integers beyond 2**53 (e.g. {int(v)}), which float64 cannot represent "
                             "exactly; rescale them to floats first")


def _check_tensor_kind(x: Tensor, name: str) -> None:
    """Refuse tensors without plain values to rank (no host-device sync: attributes only)."""
    if x.is_nested:
        raise TypeError(f"`{name}` must be a regular tensor of shape (N,) or (N, K), got a nested tensor")
    if x.layout != torch.strided:
        raise TypeError(f"`{name}` must be a dense (strided) tensor, got layout {x.layout}; "
                        f"call `{name}.to_dense()` first")
    if x.device.type == "meta":
        raise TypeError(f"`{name}` is a tensor on the 'meta' device, which has a shape but no values to rank")
    if _batched_by_vmap(x):
        raise TypeError(f"`{name}` is batched by torch.func.vmap, which the functional API does not support (it "
                        "sorts and checks values on the host); call it once per batch element instead")


try:
    from torch._C._functorch import get_unwrapped, is_batchedtensor, is_functorch_wrapped_tensor
except ImportError:  # pragma: no cover - other torch versions: torch's own error then
    is_functorch_wrapped_tensor = None


def _batched_by_vmap(x: Tensor) -> bool:
    """Whether `x` is (a functorch wrapper around) a vmap BatchedTensor; a plain tensor costs one C call."""
    if is_functorch_wrapped_tensor is None:  # pragma: no cover
        return False
    while is_functorch_wrapped_tensor(x):
        if is_batchedtensor(x):
            return True
        x = get_unwrapped(x)
    return False


_FLOAT8 = tuple(d for name, d in vars(torch).items() if isinstance(d, torch.dtype) and name.startswith("float8_"))
_INTEGERS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8) + tuple(
    getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name))
_LOW_PRECISION = (torch.float16, torch.bfloat16) + _FLOAT8
_LABEL_DTYPES = (torch.bool, torch.float16, torch.bfloat16, torch.float32, torch.float64) + _INTEGERS


def _upcast(preds: Tensor) -> Tensor:
    if preds.dtype in _LOW_PRECISION:
        return preds.float()  # sorting and summing in low precision creates false ties and drift; exact
    if preds.dtype in (torch.float32, torch.float64):
        return preds
    if preds.dtype not in _INTEGERS:  # bool, complex, quantized, packed float4, bit types
        raise TypeError(f"`preds` must hold real numbers, got dtype {preds.dtype}")
    if preds.dtype in (torch.int64, getattr(torch, "uint64", None)) and preds.numel():
        # uint64 has no comparisons in torch: its int64 view is negative from 2**63 on
        signed = preds.view(torch.int64)
        if bool(((signed > 2**53) | (signed < -2**53) if preds.dtype == torch.int64 else
                 ((signed > 2**53) | (signed < 0))).any()):
            raise ValueError(f"`preds` holds integers beyond 2**53 (dtype {preds.dtype}), which float64 cannot "
                             "represent exactly; rescale them to floats first")
    return preds.double()


def is_probability_matrix(preds: Tensor, source_dtype: torch.dtype | None = None, value_range=None,
                          near: bool = False) -> bool:
    """True when every entry lies in [0, 1] and every row sums to 1 (so softmax must not be applied again).

    "Sums to 1" allows for the rounding of `source_dtype` (the dtype the model produced, before any
    upcast): a bf16 softmax row can be 4e-3 off. `value_range`, if given, is `preds`' (min, max).
    With `near`, rows off by more but at most `near_probability_tolerance` (probabilities rounded to 2
    decimals) are probabilities too, with a `ProbabilityRowsWarning` naming both tolerances: ranking
    them by a softmax, as logits, would be silently wrong (scikit-learn raises there).
    """
    if preds.ndim != 2 or preds.numel() == 0:
        return False
    lo, hi = _min_max(preds.detach()) if value_range is None else value_range  # NaN fails both comparisons
    if not (lo >= 0 and hi <= 1):  # logits usually stop here, after one reduction
        return False
    dtype = source_dtype if source_dtype is not None and source_dtype.is_floating_point else preds.dtype
    tol = max(1e-3, 2 * torch.finfo(dtype).eps)
    off = (preds.detach().sum(1, dtype=torch.float64) - 1).abs().max()
    if not near:
        return bool(off <= tol)
    off = off.item()
    if off <= tol:
        return True
    loose = near_probability_tolerance(preds.shape[1])
    if off <= loose:
        _warn(f"`preds` looks like a probability matrix (entries in [0, 1]) whose rows sum to 1 only within "
              f"{off:.3g}, beyond the tolerance {tol:g} but within {loose:g} (e.g. rounded probabilities): it "
              "is ranked as probabilities, not as logits; renormalise the rows (p / p.sum(1, keepdim=True)) "
              "to silence this", ProbabilityRowsWarning)
        return True
    return False


def near_probability_tolerance(num_classes: int) -> float:
    """How far from 1 rows of rounded probabilities may sum: K entries rounded to 2 decimals, at least 0.05."""
    return max(0.05, 0.005 * num_classes)


def check_non_negative(name: str, value) -> float:
    """`value` as a float, or a ValueError naming the argument unless it is a finite real number >= 0."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return float(value)


def check_multiclass_margin(margin: float) -> None:
    """Multiclass AUM ranks softmax probabilities, which are at most 1: a margin of 1 or more puts every
    shifted member below every non-member, whatever the model, and leaves nothing to learn."""
    if margin >= 1:
        raise ValueError(f"`margin` must be below 1 for multiclass scores, which AUM ranks as softmax probabilities "
                         f"(a margin >= 1 leaves nothing to rank), got {margin!r}; e.g. 0.5")


def count_non_finite(preds: Tensor) -> int:
    """How many of `preds` are NaN or inf (0 for non-float tensors), from one cheap reduction when none is:
    a sum is finite only if every value is, but can overflow to inf, so then they are counted exactly."""
    if not preds.is_floating_point() or math.isfinite(preds.detach().sum().item()):
        return 0
    return int((~torch.isfinite(preds)).sum())


def check_finite(preds: Tensor) -> None:
    """Raise a ValueError with their count if `preds` holds NaN or inf."""
    bad = count_non_finite(preds)
    if bad:
        raise ValueError(f"`preds` contains {bad} non-finite value(s) (NaN or inf) out of {preds.numel()}")


def prepare(preds, target, *, validate: bool = True, allow_empty: bool = False,
            binary_finite_check: bool = True, multilabel: bool = False, labels=None, pos_label=None,
            implicit_positive: bool | None = None, one_class_any_column: bool = False) -> Inputs:
    """Check `preds` and `target` against the rules for bad input (`docs/definitions.md`) and return them
    in canonical form.

    `preds` of shape (N,) or (N, 1) is a binary score, (N, 2) binary logits or probabilities (kept as
    (N, 2) here; callers pick the score), (N, K > 2) multiclass. `target` holds N integer labels.
    With `validate=False` the value checks that need a host-device sync (finiteness, label range) are
    skipped; shape checks always run. `binary_finite_check=False` leaves the finiteness of binary
    scores to the caller (`check_finite`), who may have a cheaper way to tell. `multilabel=True` also
    accepts a multi-hot (N, L) `target` of the shape of (N, L) `preds` (L >= 2), values in {0, 1}.
    Labels other than class indices (`labels=`, `pos_label`, and strings where `implicit_positive` is not
    None) go through `_labels.encode_target` (`implicit_positive=True`: roc_auc_score's rule for two
    string labels; False: strings need `pos_label`); binary {-1, 1} labels mean {0, 1}. The two columns of
    (N, 2) scores are the two sorted labels: when `pos_label` is the first, they are swapped, so that the
    positive class's column is always second (`one_class_any_column`: see `encode_target`).
    """
    preds = as_tensor(preds, "preds")
    source_dtype = preds.dtype
    preds = _upcast(preds)
    encode = (labels is not None or pos_label is not None
              or (implicit_positive is not None and needs_encoding(target)))
    if not encode:
        target = as_tensor(target, "target")
    if preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if preds.ndim not in (1, 2) or (preds.ndim == 2 and preds.shape[1] == 0):
        raise ValueError(f"`preds` must have shape (N,), (N, 1), (N, 2) or (N, K), got {tuple(preds.shape)}")
    n = preds.shape[0]
    if encode:
        if multilabel and np.ndim(target) == 2 and np.shape(target)[1] > 1:
            raise ValueError("`labels` and `pos_label` apply to class labels, not to a multi-hot (N, L) `target`")
        target, first_is_positive = encode_target(
            target, num_columns=1 if preds.ndim == 1 else preds.shape[1], binary=preds.ndim == 1 or preds.shape[1] == 2,
            labels=labels, pos_label=pos_label, implicit_positive=bool(implicit_positive),
            one_class_any_column=one_class_any_column, device=preds.device)
        if first_is_positive and preds.ndim == 2:
            preds = preds.flip(1)  # the positive class's column second: its score is z_pos - z_other
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 1:
        if multilabel and target.ndim == 2 and preds.ndim == 2:
            return _prepare_multilabel(preds, target, source_dtype, validate, allow_empty)
        also = " or a multi-hot (N, L) matrix of the shape of `preds`" if multilabel else ""
        raise ValueError(f"`target` must have shape (N,) or (N, 1) with integer class labels{also}, "
                         f"got {tuple(target.shape)}")
    if target.shape[0] != n:
        raise ValueError(f"`preds` and `target` must have the same length, got {n} predictions and {target.shape[0]} labels")
    if target.dtype not in _LABEL_DTYPES:
        if target.dtype not in _FLOAT8:  # complex, quantized, bit types
            raise TypeError(f"`target` must hold integer class labels, got dtype {target.dtype}")
        target = target.float()  # exact; torch has few float8 kernels
    if target.device != preds.device:
        raise ValueError(f"`preds` and `target` must be on the same device, got {preds.device} and {target.device}")
    num_classes = 2 if preds.ndim == 1 else preds.shape[1]
    if n == 0:
        if not allow_empty:
            raise ValueError("`preds` and `target` are empty: there is nothing to rank")
        return Inputs(preds, target.long(), num_classes, source_dtype)
    value_range = None
    if validate and num_classes > 2:  # one reduction tells finiteness and, later, logits from probabilities
        value_range = _min_max(preds.detach())
        if not (math.isfinite(value_range[0]) and math.isfinite(value_range[1])):
            check_finite(preds)
    elif validate and binary_finite_check:
        check_finite(preds)
    if target.dtype == torch.bool and num_classes == 2:
        return Inputs(preds, target, num_classes, source_dtype)
    if validate and target.is_floating_point():
        nonint = int((target != target.round()).sum())
        if nonint:
            raise ValueError(f"`target` must hold integer class labels, got {nonint} non-integer value(s), "
                             f"e.g. {target[target != target.round()][0].item()}")
        # the range before the cast to long, which would turn inf and 1e20 into -2**63
        lo, hi = _min_max(target)
        if num_classes == 2 and lo == -1 and hi == 1 and not bool((target == 0).any()):
            return Inputs(preds, target == 1, num_classes, source_dtype)  # {-1, 1}, as scikit-learn reads it
        _check_label_range(lo, hi, num_classes)
        return Inputs(preds, target.long(), num_classes, source_dtype, value_range)
    unsigned64 = target.dtype == getattr(torch, "uint64", None)
    # unsigned and bool labels too: they index class columns
    if target.dtype != torch.int64:
        target = target.view(torch.int64) if unsigned64 else target.long()
    if validate:
        lo, hi = _min_max(target)
        if unsigned64 and lo < 0:  # uint64 labels from 2**63 on wrap round in the int64 view: show them as given
            values = target.view(torch.uint64).cpu().numpy()
            lo, hi = int(values.min()), int(values.max())
        if num_classes == 2 and lo == -1 and hi == 1 and not bool((target == 0).any()):
            return Inputs(preds, target == 1, num_classes, source_dtype)  # {-1, 1}, as scikit-learn reads it
        _check_label_range(lo, hi, num_classes)
    return Inputs(preds, target, num_classes, source_dtype, value_range)


def _prepare_multilabel(preds: Tensor, target: Tensor, source_dtype, validate: bool, allow_empty: bool) -> Inputs:
    """`prepare` for a 2-d `target`: a multi-hot (N, L) matrix of the shape of `preds`, read as booleans."""
    if target.shape != preds.shape:
        raise ValueError(f"a multi-hot `target` must have the shape of `preds`, got {tuple(target.shape)} for "
                         f"`preds` of shape {tuple(preds.shape)}")
    if target.dtype not in _LABEL_DTYPES:
        raise TypeError(f"`target` must hold 0/1 (or boolean) multi-hot labels, got dtype {target.dtype}")
    if target.device != preds.device:
        raise ValueError(f"`preds` and `target` must be on the same device, got {preds.device} and {target.device}")
    if preds.shape[0] == 0 and not allow_empty:
        raise ValueError("`preds` and `target` are empty: there is nothing to rank")
    if validate and preds.numel():
        check_finite(preds)
        if target.dtype != torch.bool:
            bad = int(((target != 0) & (target != 1)).sum())
            if bad:
                lo, hi = _min_max(target.double())
                raise ValueError(f"a multi-hot `target` must hold 0 and 1 only, got {bad} other value(s), "
                                 f"from {lo:g} to {hi:g}")
    return Inputs(preds, target if target.dtype == torch.bool else target != 0, preds.shape[1], source_dtype,
                  multilabel=True)


def check_sample_weight(sample_weight, n: int, device: torch.device) -> Tensor:
    """`sample_weight` as a float64 (N,) tensor on `device`: N finite, non-negative numbers."""
    w = as_tensor(sample_weight, "sample_weight")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"`sample_weight` must have shape ({n},), one weight per example, got {tuple(w.shape)}")
    if w.dtype == torch.bool or w.is_complex() or not (w.is_floating_point() or w.dtype in _INTEGERS):
        raise TypeError(f"`sample_weight` must hold real numbers, got dtype {w.dtype}")
    w = w.to(device=device, dtype=torch.float64)
    if n:
        bad = int((~torch.isfinite(w) | (w < 0)).sum())
        if bad:
            raise ValueError(f"`sample_weight` must be finite and >= 0, got {bad} other value(s), e.g. "
                             f"{w[~torch.isfinite(w) | (w < 0)][0].item()}")
    return w


def _min_max(x: Tensor) -> tuple:
    """The least and greatest value of `x` as Python numbers (one reduction, one host-device sync)."""
    lo, hi = torch.aminmax(x)
    if x.device.type == "cpu":  # two reads cost less than a stack there
        return lo.item(), hi.item()
    return tuple(torch.stack([lo, hi]).tolist())


def _check_label_range(lo, hi, num_classes: int) -> None:
    if lo < 0 or hi >= num_classes:
        expected = "{0, 1}" if num_classes == 2 else f"[0, {num_classes}) for {num_classes} score columns"
        raise ValueError(f"`target` labels must be in {expected}, got values from {lo:g} to {hi:g}")


def warn_undefined(msg: str) -> None:
    """Warn with an `AUROCUndefinedWarning` attributed to the first caller outside this package."""
    _warn(msg, AUROCUndefinedWarning)


def _warn(msg: str, category: type[Warning]) -> None:
    """Warn with `category`, attributed to the first caller outside this package."""
    frame, level = sys._getframe(2), 3
    while frame is not None and (frame.f_globals.get("__name__", "").startswith("fastai_aum.")
                                 or frame.f_globals.get("__name__") == "functools"):  # cached_property
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, category, stacklevel=level)
