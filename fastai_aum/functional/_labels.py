"""Class labels that are not 0..K-1: string and object labels, `labels=` and `pos_label`, mapped to class
indices as scikit-learn maps them (numpy; only called when such labels or options are given)."""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["Encoded", "needs_encoding", "encode_target"]


def needs_encoding(target) -> bool:
    """Whether `target` holds labels other than numbers (strings, objects): cheap for tensors."""
    if isinstance(target, Tensor) or hasattr(target, "__cuda_array_interface__") or isinstance(target, str):
        return False
    try:
        arr = np.asarray(target)
    except Exception:  # ragged: `as_tensor` says so
        return False
    return arr.dtype.kind in "OUS" and arr.ndim >= 1


def _as_array(target) -> np.ndarray:
    arr = target.detach().cpu().numpy() if isinstance(target, Tensor) else np.asarray(target)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"`target` must have shape (N,) or (N, 1) with class labels, got {arr.shape}")
    return arr


def _unique(arr: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.unique(arr)
    except TypeError as e:  # objects that do not compare (e.g. str next to int)
        raise TypeError(f"`{name}` mixes labels that cannot be sorted (e.g. strings and numbers): {e}") from None


def _show(values) -> str:
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return "[" + ", ".join(map(repr, values[:10])) + (", ..." if len(values) > 10 else "") + "]"


class Encoded(NamedTuple):
    """Class indices (int64) of an encoded target, and, for binary scores, whether the positive class is
    the first of the two sorted labels: then it is column 0 of (N, 2) scores."""
    labels: Tensor
    first_is_positive: bool = False


def _first_is_positive(values: np.ndarray, pos_label) -> bool | None:
    """Whether `pos_label` is the first (smaller) of the two sorted labels `values`; with fewer, as class
    indices when they and `pos_label` lie in {0, 1} (or {-1, 1}), else None (unknown)."""
    if len(values) == 2:
        return bool(values[0] == pos_label)
    if values.dtype.kind not in "OUS" and isinstance(pos_label, (numbers.Real, np.bool_)):
        seen = set(values.tolist()) | {pos_label}
        for first, second in ((0, 1), (-1, 1)):
            if seen <= {first, second}:
                return bool(pos_label == first)
    return None


def encode_target(target, *, num_columns: int, binary: bool, labels=None, pos_label=None,
                  implicit_positive: bool = False, one_class_any_column: bool = False, device=None) -> Encoded:
    """Class indices (int64) of `target` on `device`, as scikit-learn reads it.

    Binary scores: with `pos_label`, the positive examples are `target == pos_label`; `target` may hold at
    most two labels, and `pos_label` must be one of two. Without it, numbers must be {0, 1} or {-1, 1} and
    other labels (strings) need `pos_label`, unless `implicit_positive` (`roc_auc_score`'s rule: the greater
    of the two sorted labels is positive). The columns of (N, 2) scores are the two sorted labels, as
    scikit-learn's probability columns (`Encoded.first_is_positive`). Multiclass scores: `labels` lists the
    K classes in sorted order (as scikit-learn requires), one per score column; without it, the K distinct
    labels of `target`, sorted. A target with one label other than class indices leaves the column of
    `pos_label` unknown: an error for (N, 2) scores, unless `one_class_any_column` (the caller's result with
    one class does not depend on it). Every message shows the labels as given.
    """
    arr = _as_array(target)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"`target` must hold class labels, got {int(np.isnan(arr).sum())} NaN value(s)")
    if binary:
        if labels is not None:
            raise ValueError("`labels` gives the class order of multiclass (N, K > 2) scores; for binary scores "
                             "name the positive class with `pos_label`")
        values = _unique(arr, "target")
        if len(values) > 2:
            raise ValueError(f"binary scores need a target with two labels, got {len(values)}: {_show(values)}")
        if pos_label is not None:
            if len(values) == 2 and pos_label not in values.tolist():
                raise ValueError(f"`pos_label`={pos_label!r} is not a label of `target`, whose labels are "
                                 f"{_show(values)}")
            first = _first_is_positive(values, pos_label)
            if first is None and num_columns == 2 and len(arr) and not one_class_any_column:
                raise ValueError(f"`target` shows the one label {values.tolist()[0]!r} only, so which column of the "
                                 f"(N, 2) `preds` is that of `pos_label`={pos_label!r} is unknown (the columns are "
                                 "the two sorted labels): pass the positive class's scores, shape (N,)")
            return Encoded(_indices(arr == pos_label, device), bool(first))
        if arr.dtype.kind not in "OUS" and set(values.tolist()) <= {-1, 1}:
            return Encoded(_indices(arr == 1, device))
        if not implicit_positive:
            raise ValueError(f"`target` takes labels {_show(values)} and `pos_label` is not given: make the labels "
                             "{0, 1} or {-1, 1}, or pass pos_label")
        return Encoded(_indices(arr == values[-1] if len(values) == 2 else np.zeros(len(arr), bool), device))
    if pos_label is not None:
        raise ValueError(f"`pos_label` names the positive class of binary scores; these scores have {num_columns} "
                         "columns (multiclass): give the class order with `labels`")
    if labels is None:
        classes = _unique(arr, "target")
        if len(classes) != num_columns:
            raise ValueError(f"`target` has {len(classes)} distinct labels {_show(classes)} for {num_columns} score "
                             "columns; pass `labels` to name the class of each column")
    else:
        classes = _as_array(labels) if not isinstance(labels, (list, tuple)) else np.asarray(labels)
        if classes.ndim != 1:
            raise ValueError(f"`labels` must be a 1-d list of class labels, got shape {classes.shape}")
        unique = _unique(classes, "labels")
        if len(unique) != len(classes):
            raise ValueError(f"`labels` must be unique, got {_show(classes)}")
        if not np.array_equal(unique, classes):
            raise ValueError(f"`labels` must be sorted, as scikit-learn requires, got {_show(classes)}")
        if len(classes) != num_columns:
            raise ValueError(f"`labels` names {len(classes)} classes for {num_columns} score columns")
        unknown = np.setdiff1d(arr, classes)
        if len(unknown):
            raise ValueError(f"`target` holds labels not in `labels`: {_show(unknown)}")
    return Encoded(torch.from_numpy(np.searchsorted(classes, arr).astype(np.int64)).to(device))


def _indices(mask: np.ndarray, device) -> Tensor:
    return torch.from_numpy(mask.astype(np.int64)).to(device)
