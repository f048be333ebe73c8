"""The `AUROC` metric (for `metrics=`): exact full-dataset AUROC of a validation pass, with its
per-class (per-label) columns, the average precision column and the curves of the last pass."""
from __future__ import annotations

import math
import warnings

import torch
from fastai.learner import Metric
from fastai.torch_core import to_detach
from torch import Tensor

from .functional import PR, ROC, auroc, average_precision, check_auroc_options, precision_recall_curve, roc_curve
from .functional._inputs import AUROCUndefinedWarning, check_choice
from .losses import AUMLossFlat
from .plotting import plot_pr, plot_roc
from .vocab import class_names, dataset_labels, describe_positive, format_classes, is_multilabel, pos_label_index

__all__ = ["AUROC", "ONE_CLASS", "AveragePrecisionColumn", "ClassAUROC", "class_column_names", "multilabel_roc", "multilabel_pr",
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
                return average_precision(preds, targs != 0).item()  # the mean over labels
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
        return roc_curve(preds, targs != 0)


def multilabel_pr(preds: Tensor, targs: Tensor) -> list[PR]:
    """One precision-recall curve per label of (N, L) scores and a multi-hot (N, L) target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        return precision_recall_curve(preds, targs != 0)


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


ONE_CLASS = "<one class>"  # the key of the one-class warning, whatever the counts in it


class AUROC(Metric):
    """Exact AUROC over a whole validation pass, as `sklearn.metrics.roc_auc_score` computes it.

    It keeps each batch's raw outputs, detached and on their own device (no host-device sync per
    batch, no float32 sigmoid), gathers them across processes with fastai's `to_detach`, and
    computes `fastai_aum.functional.auroc` once at the end. The last labelled pass's outputs stay, for
    `roc` and `plot`. An undefined AUROC (a class missing, non-finite outputs) is NaN, with one
    warning per message; a single item from outside the DataLoaders (`learn.predict`) is NaN without one.

    `pos_label` names the positive class of a binary problem by its vocabulary value (default: the
    loss's positive class, else the second class). A single model output is read as the logit of the
    loss's positive class (`AUMLossFlat(pos_label=...)`), of the second class for other losses.
    `average=None` on multiclass data gives the per-class values in `per_class`; `value` is then
    their mean over the classes present (a number that trackers can monitor).

    Multi-label data (a `MultiCategoryBlock`, multi-hot targets) are ranked label by label on the raw
    outputs, averaged as `average` says ('macro' by default; None: per label in `per_class`); a label
    with one class in the pass is averaged out with a warning. `pos_label` does not apply there.
    """

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", pos_label=None):
        check_auroc_options(average, multi_class, max_fpr)
        self.average, self.multi_class, self.max_fpr, self._name = average, multi_class, max_fpr, name
        self.pos_label, self.classes, self.multilabel = pos_label, None, False
        self._pos, self._output_pos = 1, 1  # the positive class, and the class a single output stands for
        self._ready = False  # set up for the Learner of this pass
        self._passed = False  # a pass has begun (so no outputs means: it had no labels)
        self._own_data = True  # this pass reads the DataLoaders' own data (not e.g. `predict`'s item)
        self._warned: set[str] = set()
        self.preds = self.targs = None  # the last pass, concatenated
        self.clear()

    @property
    def name(self) -> str:
        return self._name

    def reset(self) -> None:
        self.clear()
        self.preds = self.targs = None
        self._ready, self._passed = False, True

    def clear(self) -> None:
        """Forget the batches kept so far."""
        self._preds, self._targs, self._value, self._per_class = [], [], None, None

    def __getstate__(self) -> dict:  # `learn.export()` pickles metrics: leave the predictions out
        return {**self.__dict__, "_preds": [], "_targs": [], "preds": None, "targs": None, "_value": None,
                "_per_class": None}

    def __setstate__(self, state: dict) -> None:  # metrics pickled before these attributes existed load too
        self.__dict__.update({"_passed": False, "_own_data": True, "_per_class": None, "multilabel": False, **state})

    def setup(self, learn) -> None:
        """Find the positive class in `learn.dls`'s vocabulary, and which class a single output means;
        check the options against the number of classes."""
        self.classes = class_names(getattr(learn, "dls", None))
        loss = getattr(learn, "loss_func", None)
        self.multilabel = bool(getattr(loss, "multilabel", False)) or is_multilabel(getattr(learn, "dls", None))
        if self.multilabel and self.pos_label is not None:
            raise ValueError(f"{self.name}: `pos_label`={self.pos_label!r} names the positive class of a binary problem, "
                             f"but the DataLoaders are multi-label ({len(self.classes or [])} labels, each its own "
                             "binary problem): leave `pos_label` out")
        self._check_options()
        if isinstance(loss, AUMLossFlat) and loss.vocab is None and self.classes is not None:
            loss.bind(self.classes)
        self._output_pos = loss.pos_index if isinstance(loss, AUMLossFlat) else 1
        pos_label = self.pos_label if self.pos_label is not None else getattr(loss, "pos_label", None)
        binary = self.classes is not None and len(self.classes) == 2
        self._pos = pos_label_index(self.classes, pos_label) if binary or self.pos_label is not None else 1
        self._ready = True

    def _check_options(self) -> None:
        k = len(self.classes) if self.classes is not None else 0
        if k <= 2 or self.multilabel:
            return
        if self.max_fpr is not None:
            raise ValueError(f"{self.name}: `max_fpr`={self.max_fpr!r} (partial AUROC) is defined for binary problems "
                             f"only, but the DataLoaders have {k} classes: {format_classes(self.classes)}")
        if self.multi_class == "ovo" and self.average not in ("macro", "weighted"):
            raise ValueError(f"{self.name}: with multi_class='ovo', `average` must be 'macro' or 'weighted' (as in "
                             f"scikit-learn), got {self.average!r}; use multi_class='ovr' for {self.average!r}")

    @property
    def positive_class(self):
        """The positive class of a binary problem (its vocabulary value once the vocabulary is known)."""
        return self.classes[self._pos] if self._binary() else self._pos

    def _binary(self) -> bool:
        return self.classes is not None and len(self.classes) == 2 and not self.multilabel

    def _multi_hot(self, preds: Tensor, targs: Tensor) -> bool:
        """Whether `targs` is a multi-hot (N, L) matrix of the shape of `preds` (L > 1)."""
        return targs.ndim == 2 and targs.shape == preds.shape and targs.shape[1] > 1

    def accumulate(self, learn) -> None:
        if not self._ready:
            self.setup(learn)
            self._own_data = reads_own_data(learn)
        self.add(learn.pred, learn.y, learn)

    def add(self, pred: Tensor, targ: Tensor, learn=None) -> None:
        """Keep one batch of raw model outputs and targets."""
        detach = learn.to_detach if learn is not None else to_detach
        pred, targ = detach(pred, cpu=False), detach(targ, cpu=False)
        self._preds.append(pred.as_subclass(Tensor))
        self._targs.append(targ.as_subclass(Tensor))
        self._value = None

    def _gather(self) -> None:
        if len(self._preds) > 1 or (self._preds and self.preds is not self._preds[0]):
            self.preds, self.targs = torch.cat(self._preds), torch.cat(self._targs)
            self._preds, self._targs = [self.preds], [self.targs]

    @property
    def value(self) -> float | None:
        if self._value is None and self._preds:
            self._gather()
            self._value = self._compute(self.preds, self.targs)
        return self._value

    @property
    def per_class(self) -> list[float] | None:
        """Per-class (per-label) AUROC of the last pass (vocabulary order) with `average=None` on multiclass
        or multi-label data, else None."""
        _ = self.value
        return self._per_class

    def _oriented(self, preds: Tensor, targs: Tensor) -> tuple[Tensor, Tensor]:
        """Binary outputs and labels with the positive class as label 1 and as the larger score."""
        targs = targs.reshape(-1)
        one_output = preds.ndim == 1 or preds.shape[-1] == 1
        if not one_output and preds.shape[-1] != 2:
            return preds, targs
        if one_output and self._output_pos != self._pos:
            preds = -preds  # the logit of the other class
        elif not one_output and self._pos == 0:
            preds = preds.flip(-1)
        return preds, (1 - targs if self._pos == 0 else targs)

    def _label(self) -> str:
        return f"{self.name} ({describe_positive(self.classes, self._pos)})" if self._binary() else self.name

    def _warn(self, message: str, key: str | None = None) -> None:
        key = message if key is None else key
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{self._label()}: {message}", AUROCUndefinedWarning, stacklevel=3)

    def _compute(self, preds: Tensor, targs: Tensor) -> float:
        multi_hot = self._multi_hot(preds, targs)
        per_class = self.average is None and preds.ndim == 2 and (
            multi_hot or (self.multi_class == "ovr" and preds.shape[-1] > 2))
        self._per_class = [math.nan] * preds.shape[-1] if per_class else None
        bad = int((~torch.isfinite(preds)).sum()) if preds.is_floating_point() else 0
        if bad:
            self._warn(f"{bad} of {preds.numel()} model outputs are not finite (NaN or inf); AUROC is NaN")
            return math.nan
        if len(targs) < 2 and not self._own_data:  # `learn.predict`'s single item: nothing to rank or warn about
            return math.nan
        # multi-hot: a label with one class is the functional `auroc`'s warning (its values are always {0, 1})
        present = [0, 1] if multi_hot else torch.unique(targs.reshape(-1)).tolist()
        if len(present) < 2:  # one class, or a single example
            names = [self.classes[int(c)] if self.classes is not None and 0 <= c < len(self.classes) else c
                     for c in present]
            self._warn(f"only one class ({format_classes(names)}) in the labels of this pass of {len(targs)} example(s); "
                       "AUROC is undefined (NaN)", ONE_CLASS)
            return math.nan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AUROCUndefinedWarning)
            args = (preds, targs) if multi_hot else self._oriented(preds, targs)
            value = auroc(*args, self.average, self.multi_class, self.max_fpr)
        for w in caught:
            self._warn(str(w.message))
        if value.ndim == 0:
            return value.item()
        self._per_class = value.tolist()  # the scalar: the mean over the classes with a defined AUROC
        defined = value[~value.isnan()]
        return defined.mean().item() if len(defined) else math.nan

    @property
    def roc(self) -> ROC | list[ROC] | None:
        """ROC curve of the last pass: one `ROC` for a binary problem, a list (one per class or label)
        otherwise; None before any pass and after a pass without labels."""
        return self._curves(roc_curve, multilabel_roc)

    @property
    def pr(self) -> PR | list[PR] | None:
        """Precision-recall curve(s) of the last pass, like `roc`."""
        return self._curves(precision_recall_curve, multilabel_pr)

    def _curves(self, curve, multilabel_curve):
        self._gather()
        if self.preds is None:
            return None
        if self._multi_hot(self.preds, self.targs):
            return multilabel_curve(self.preds, self.targs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)
            return curve(*self._oriented(self.preds, self.targs))

    def plot(self, ax=None, labels=None, title: str | None = None, kind: str = "roc"):
        """Draw the last pass's ROC (`kind='roc'`) or precision-recall (`'pr'`) curve(s); returns the axes."""
        check_choice("kind", kind, ("roc", "pr"))
        curve = self.roc if kind == "roc" else self.pr
        if curve is None and self._passed:
            raise RuntimeError(f"{self.name}: the last pass had no labels (e.g. `get_preds` on an unlabelled test set), "
                               "so there is no curve to plot; run `learn.validate()` for the validation set's")
        if curve is None:
            raise RuntimeError(f"{self.name}: no validation pass yet, nothing to plot")
        what, draw = ("ROC curve", plot_roc) if kind == "roc" else ("precision-recall curve", plot_pr)
        return draw(curve, ax=ax, labels=labels, title=title or f"{what}, last pass ({self._label()})")


class _TrainAUROC(AUROC):
    """AUROC over the training batches of an epoch, fed by `AUROCCallback`; the Recorder's resets
    and accumulations, which happen during validation, must not touch it."""

    def reset(self) -> None:
        pass

    def accumulate(self, learn) -> None:
        pass


