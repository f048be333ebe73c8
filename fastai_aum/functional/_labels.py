"""Class labels that are not 0..K-1: string and object labels, `labels=` and `pos_label`, mapped to class
indices as scikit-learn maps them (numpy; only called when such labels or options are given)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["needs_encoding", "encode_target"]


def needs_encoding(target) -> bool:
    """Whether `target` holds labels other than numbers (strings, objects): cheap for tensors."""
    if isinstance(target, Tensor) or hasattr(target, "__cuda_array_interface__") or isinstance(target, str):
        return False
    try:
        arr = np.asarray(target)
    except Exception:  # ragged: `_as_tensor` says so
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


def encode_target(target, *, num_columns: int, binary: bool, labels=None, pos_label=None,
                  implicit_positive: bool = False, device=None) -> Tensor:
    """Class indices (int64) of `target` on `device`, as scikit-learn reads it.

    Binary scores: with `pos_label`, the positive examples are `target == pos_label` (a value absent from
    a two-valued target is an error); without it, numbers must be {0, 1} or {-1, 1} and other labels
    (strings) need `pos_label`, unless `implicit_positive` (`roc_auc_score`'s rule: the greater of the
    two sorted labels is positive). Multiclass scores: `labels` lists the K classes in sorted order (as
    scikit-learn requires), one per score column; without it, the K distinct labels of `target`, sorted.
    """
    arr = _as_array(target)
    if binary:
        if labels is not None:
            raise ValueError("`labels` gives the class order of multiclass (N, K > 2) scores; for binary scores "
                             "name the positive class with `pos_label`")
        values = _unique(arr, "target")
        if pos_label is not None:
            if len(values) == 2 and pos_label not in values.tolist():
                raise ValueError(f"`pos_label`={pos_label!r} is not a label of `target`, whose labels are "
                                 f"{_show(values)}")
            return torch.from_numpy((arr == pos_label).astype(np.int64)).to(device)
        if arr.dtype.kind not in "OUS" and set(values.tolist()) <= {-1, 1}:
            return torch.from_numpy((arr == 1).astype(np.int64)).to(device)
        if not implicit_positive:
            raise ValueError(f"`target` takes labels {_show(values)} and `pos_label` is not given: make the labels "
                             "{0, 1} or {-1, 1}, or pass pos_label")
        if len(values) > 2:
            raise ValueError(f"binary scores need a target with two labels, got {len(values)}: {_show(values)}")
        return torch.from_numpy((arr == values[-1]).astype(np.int64) if len(values) == 2
                                else np.zeros(len(arr), dtype=np.int64)).to(device)
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
    return torch.from_numpy(np.searchsorted(classes, arr).astype(np.int64)).to(device)
