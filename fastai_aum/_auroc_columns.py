"""Helpers of `fastai_aum.callback`: per-class (per-label) AUROC columns, multi-label ROC curves, and what
a pass reads (the DataLoaders' own data or not; the validation labels)."""
from __future__ import annotations

import warnings

from fastai.learner import Metric
from torch import Tensor

from ._inputs import AUROCUndefinedWarning
from .classes import dataset_labels
from .functional import ROC, roc_curve

__all__ = ["ClassAUROC", "class_column_names", "multilabel_roc", "reads_own_data", "valid_labels"]


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
