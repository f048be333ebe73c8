"""How a Learner's outputs and labels are read for ranking: the vocabulary, multi-label or not, the
positive class, and which class a single output stands for."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .losses import AUMLossFlat
from .vocab import class_names, dataset_labels, describe_positive, format_classes, is_multilabel, pos_label_index

__all__ = ["Reading", "check_reading_options", "compact_labels", "is_multi_hot", "read_outputs", "reads_own_data", "valid_classes",
           "valid_labels"]


@dataclass(frozen=True)
class Reading:
    """How one Learner's outputs are read: its `classes` (None if unknown), whether they are `multilabel`,
    the positive class `pos` of a binary problem, and `output_pos`, the class a single output is the logit of."""
    classes: list | None = None
    multilabel: bool = False
    pos: int = 1
    output_pos: int = 1

    @property
    def binary(self) -> bool:
        return self.classes is not None and len(self.classes) == 2 and not self.multilabel

    @property
    def positive_class(self):
        """The positive class's vocabulary value once the vocabulary is known, else its index."""
        return self.classes[self.pos] if self.binary else self.pos

    def label(self, name: str) -> str:
        """`name`, with the positive class of a binary problem: for warnings and titles."""
        return f"{name} ({describe_positive(self.classes, self.pos)})" if self.binary else name

    def oriented(self, preds: Tensor, targs: Tensor) -> tuple[Tensor, Tensor]:
        """Binary outputs and labels with the positive class as label 1 and as the larger score; other
        outputs as they are (labels flattened)."""
        targs = targs.reshape(-1)
        one_output = preds.ndim == 1 or preds.shape[-1] == 1
        if not one_output and preds.shape[-1] != 2:
            return preds, targs
        if one_output and self.output_pos != self.pos:
            preds = -preds  # the logit of the other class
        elif not one_output and self.pos == 0:
            preds = preds.flip(-1)
        return preds, (1 - targs if self.pos == 0 else targs)


def read_outputs(learn, pos_label=None, name: str = "auroc") -> Reading:
    """How `learn`'s outputs are read: the vocabulary and multi-label from its DataLoaders (or its loss),
    the positive class `pos_label` (default: the loss's positive class, else the second class). An
    `AUMLossFlat` is bound to them: the DataLoaders' vocabulary if it has none, and multi-label or not."""
    dls = getattr(learn, "dls", None)
    classes = class_names(dls)
    loss = getattr(learn, "loss_func", None)
    multilabel = bool(getattr(loss, "multilabel", False)) or is_multilabel(dls)
    if multilabel and pos_label is not None:
        raise ValueError(f"{name}: `pos_label`={pos_label!r} names the positive class of a binary problem, "
                         f"but the DataLoaders are multi-label ({len(classes or [])} labels, each its own "
                         "binary problem): leave `pos_label` out")
    if isinstance(loss, AUMLossFlat) and classes is not None:  # the loss learns the vocabulary and multi-label here
        loss.bind(loss.vocab if loss.vocab is not None else classes, multilabel=multilabel)
    output_pos = loss.pos_index if isinstance(loss, AUMLossFlat) else 1
    named = pos_label if pos_label is not None else getattr(loss, "pos_label", None)
    binary = classes is not None and len(classes) == 2
    pos = pos_label_index(classes, named) if binary or pos_label is not None else 1
    return Reading(classes, multilabel, pos, output_pos)


def check_reading_options(reading: Reading, name: str, multi_class: str, average, max_fpr) -> None:
    """Refuse AUROC options that the Learner's number of classes does not allow."""
    if average == "samples" and not reading.multilabel:
        raise ValueError(f"{name}: average='samples' (each example's AUROC across its labels, averaged) is for "
                         "multi-label data, but the DataLoaders are single-label; use 'macro', 'weighted' or 'micro'")
    k = len(reading.classes) if reading.classes is not None else 0
    if k <= 2 or reading.multilabel:
        return
    if max_fpr is not None:
        raise ValueError(f"{name}: `max_fpr`={max_fpr!r} (partial AUROC) is defined for binary problems "
                         f"only, but the DataLoaders have {k} classes: {format_classes(reading.classes)}")
    if multi_class == "ovo" and average not in ("macro", "weighted"):
        raise ValueError(f"{name}: with multi_class='ovo', `average` must be 'macro' or 'weighted' (as in "
                         f"scikit-learn), got {average!r}; use multi_class='ovr' for {average!r}")


def compact_labels(reading: Reading, targ: Tensor) -> Tensor:
    """Labels as an AUROC keeps them: class indices in one byte when the vocabulary has at most 256
    classes, multi-hot targets as booleans; anything else (no vocabulary) as it is."""
    if reading.classes is None or targ.is_complex():
        return targ
    if reading.multilabel:
        return targ != 0 if targ.ndim == 2 else targ
    return targ.to(torch.uint8) if len(reading.classes) <= 256 and not targ.is_floating_point() else targ


def is_multi_hot(preds: Tensor, targs: Tensor) -> bool:
    """Whether `targs` is a multi-hot (N, L) matrix of the shape of `preds` (L > 1)."""
    return targs.ndim == 2 and targs.shape == preds.shape and targs.shape[1] > 1


def reads_own_data(learn) -> bool:
    """Whether the pass reads one of the DataLoaders' datasets (not a test set, such as `predict`'s item)."""
    ds = getattr(getattr(learn, "dl", None), "dataset", None)
    loaders = getattr(getattr(learn, "dls", None), "loaders", None)
    if ds is None or loaders is None:
        return True
    return any(ds is getattr(dl, "dataset", None) for dl in loaders)


def valid_classes(dls, enough: int = 2) -> tuple[list, int] | None:
    """The distinct class indices found in the validation set (sorted) and its number of examples; None if
    they cannot be read. Labels are read one example at a time from both ends inwards (a validation set in
    class order meets its second class at once), and the reading stops at `enough` distinct classes: a
    fit pays for a few examples, not one pass of the label pipeline over all of them."""
    try:
        ds = dls[1].dataset
        if hasattr(ds, "ys"):  # TabularPandas: one vectorised read of the label column
            return sorted(set(dataset_labels(dls, 1).tolist())), len(ds)
        labels = ds.tls[dls.n_inp]
        n, found = len(labels), set()
        for k in range(n):
            found.update(torch.as_tensor(labels[k // 2 if k % 2 == 0 else n - 1 - k // 2]).reshape(-1).tolist())
            if len(found) >= enough:
                break
        return sorted(found), n
    except Exception:  # DataLoaders of another kind: the check is skipped, the NaN still warns
        return None


def valid_labels(dls) -> list | None:
    """The class index of every validation example, without loading the inputs; None if they cannot be read."""
    try:
        return dataset_labels(dls, 1).tolist()
    except Exception:  # DataLoaders of another kind: the check is skipped, the NaN still warns
        return None
