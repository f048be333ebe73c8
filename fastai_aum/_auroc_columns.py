"""Helpers of `fastai_aum.callback`: per-class (per-label) AUROC columns, the average precision column,
multi-label ROC and precision-recall curves, and what a pass reads (the DataLoaders' own data or not;
the validation labels)."""
from __future__ import annotations

import math
import warnings

import torch
from fastai.learner import Metric
from torch import Tensor

from ._inputs import AUROCUndefinedWarning
from .classes import dataset_labels
from .functional import PR, ROC, average_precision, precision_recall_curve, roc_curve

__all__ = ["AveragePrecisionColumn", "ClassAUROC", "class_column_names", "multilabel_roc", "multilabel_pr",
           "reads_own_data", "valid_labels"]


class ClassAUROC(Metric):
    """One class's (or label's) AUROC from an `AUROC(average=None)` metric, for a column of its own."""

    def __init__(self, parent, index: int, name: str):
        self.parent, self.index, self._name = parent, index, name

    @property
    def name(self) -> str:
        return self._name

    @property
    def value(self) -> float | None:
        per_class = self.parent.per_class
        return per_class[self.index] if per_class is not None and self.index < len(per_class) else None


class AveragePrecisionColumn(Metric):
    """Average precision (scikit-learn's `average_precision_score`) of the outputs an `AUROC` metric
    keeps, for a column of its own: no second copy of the outputs. Binary: of the positive class;
    multiclass: one-vs-rest, macro; multi-label: the mean over labels. NaN for non-finite outputs."""

    def __init__(self, parent, name: str = "average_precision"):
        self.parent, self._name = parent, name
        self._for, self._value = None, None  # the outputs the cached value belongs to

    @property
    def name(self) -> str:
        return self._name

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_for": None, "_value": None}

    @property
    def value(self) -> float | None:
        parent = self.parent
        parent._gather()
        preds, targs = parent.preds, parent.targs
        if preds is None or targs is None or len(targs) < 2:
            return None
        if self._for is not preds:
            self._for, self._value = preds, self._compute(preds, targs)
        return self._value

    def _compute(self, preds: Tensor, targs: Tensor) -> float:
        if preds.is_floating_point() and not bool(torch.isfinite(preds).all()):
            return math.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)  # the AUROC column warns about the same pass
            if self.parent._multi_hot(preds, targs):
                return torch.stack([average_precision(preds[:, k], (targs[:, k] != 0).long())
                                    for k in range(preds.shape[1])]).mean().item()
            return average_precision(*self.parent._oriented(preds, targs)).item()


def class_column_names(metric) -> list[str]:
    """`<name>_<class>` for each class (multiclass, one-vs-rest) or label (multi-label) of an
    `AUROC(average=None)` metric; none otherwise."""
    classes = metric.classes
    if metric.average is not None or classes is None:
        return []
    if metric.multilabel or (metric.multi_class == "ovr" and len(classes) > 2):
        return [f"{metric.name}_{c}" for c in classes]
    return []


def multilabel_roc(preds: Tensor, targs: Tensor) -> list[ROC]:
    """One binary ROC curve per label of (N, L) scores and a multi-hot (N, L) target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        return [roc_curve(preds[:, k], (targs[:, k] != 0).long()) for k in range(preds.shape[1])]


def multilabel_pr(preds: Tensor, targs: Tensor) -> list[PR]:
    """One precision-recall curve per label of (N, L) scores and a multi-hot (N, L) target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        return [precision_recall_curve(preds[:, k], (targs[:, k] != 0).long()) for k in range(preds.shape[1])]


def reads_own_data(learn) -> bool:
    """Whether the pass reads one of the DataLoaders' datasets (not a test set, such as `predict`'s item)."""
    ds = getattr(getattr(learn, "dl", None), "dataset", None)
    loaders = getattr(getattr(learn, "dls", None), "loaders", None)
    if ds is None or loaders is None:
        return True
    return any(ds is getattr(dl, "dataset", None) for dl in loaders)


def valid_labels(dls) -> list | None:
    """The class index of every validation example, without loading the inputs; None if they cannot be read."""
    try:
        return dataset_labels(dls, 1).tolist()
    except Exception:  # DataLoaders of another kind: the check is skipped, the NaN still warns
        return None
