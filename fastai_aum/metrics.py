"""The `AUROC` metric (for `metrics=`): exact full-dataset AUROC of a validation pass, with its
per-class (per-label) columns, the average precision column and the curves of the last pass."""
from __future__ import annotations

import math
import warnings

import torch
from fastai.learner import Metric
from fastai.torch_core import num_distrib, to_detach
from torch import Tensor

from .functional import PR, ROC, auroc, average_precision, check_auroc_options, precision_recall_curve, roc_curve
from .functional.chunked import auroc_ovr_chunked
from .functional.streaming import AUROCHistogram, check_bins
from .functional._inputs import AUROCUndefinedWarning, check_choice, count_non_finite
from .plotting import plot_pr, plot_roc
from .reading import Reading, check_reading_options, compact_labels, is_multi_hot, read_outputs, reads_own_data
from .vocab import format_classes

__all__ = ["AUROC", "AUROCBound", "ONE_CLASS", "AveragePrecisionColumn", "ClassAUROC", "PassOutputs",
           "StreamingAUROC", "class_column_names", "pass_auroc"]


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
            if is_multi_hot(preds, targs):
                return average_precision(preds, targs != 0).item()  # the mean over labels
            return average_precision(*self.parent.reading.oriented(preds, targs)).item()


def class_column_names(metric) -> list[str]:
    """`<name>_<class>` for each class (multiclass, one-vs-rest) or label (multi-label) of an
    `AUROC(average=None)` metric; none otherwise."""
    classes = metric.classes
    if metric.average is not None or classes is None:
        return []
    if metric.multilabel or (metric.multi_class == "ovr" and len(classes) > 2):
        return [f"{metric.name}_{c}" for c in classes]
    return []


ONE_CLASS = "<one class>"  # the key of the one-class warning, whatever the counts in it


class PassOutputs(Metric):
    """A metric that keeps a pass's raw outputs and targets, detached on their own device (no host-device
    sync per batch), gathered across processes by fastai's `to_detach`; `preds` and `targs` hold the last
    pass, concatenated, and stay after it (but are left out of pickles, so `learn.export()` carries none)."""

    cpu = False  # also for metrics pickled before the option

    def __init__(self, cpu: bool = False):
        self.cpu = cpu  # keep the outputs in CPU memory (a copy per batch) rather than on their device
        self._passed = False  # a pass has begun (so no outputs means: it had no labels)
        self.preds = self.targs = None
        self.clear()

    def clear(self) -> None:
        """Forget the batches kept so far."""
        self._preds, self._targs, self._value, self._per_class = [], [], None, None

    def reset(self) -> None:
        self.clear()
        self.preds = self.targs = None
        self._passed = True

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_preds": [], "_targs": [], "preds": None, "targs": None, "_value": None,
                "_per_class": None}

    def accumulate(self, learn) -> None:
        self.add(learn.pred, learn.y, learn)

    def add(self, pred: Tensor, targ: Tensor, learn=None) -> None:
        """Keep one batch of raw model outputs and targets."""
        self._preds.append(self._detached(pred, learn))
        self._targs.append(self._compact(self._detached(targ, learn)))
        self._value = None

    def _detached(self, x: Tensor, learn) -> Tensor:
        """`x` detached (on the CPU with `cpu`) and gathered across processes, by fastai's `to_detach` in a
        distributed run; outside one, what that does without its per-call dispatch (about 20 us a batch)."""
        # the class's attribute: an instance's `hasattr` goes through fastai's attribute forwarding (10 us)
        if isinstance(x, Tensor) and num_distrib() <= 1 and not hasattr(type(getattr(learn, "dl", None)), "to_detach"):
            x = x.detach()
            return (x.cpu() if self.cpu else x).as_subclass(Tensor)
        detach = learn.to_detach if learn is not None else to_detach
        return detach(x, cpu=self.cpu).as_subclass(Tensor)

    def _compact(self, targ: Tensor) -> Tensor:
        """The targets in the dtype they are kept in (here: as they come)."""
        return targ

    def _gather(self) -> None:
        if len(self._preds) > 1 or (self._preds and self.preds is not self._preds[0]):
            self.preds, self.targs = torch.cat(self._preds), torch.cat(self._targs)
            self._preds, self._targs = [self.preds], [self.targs]


class AUROC(PassOutputs):
    """Exact AUROC over a whole validation pass, as `sklearn.metrics.roc_auc_score` computes it.

    It keeps the pass's raw outputs (`PassOutputs`: no float32 sigmoid) and computes
    `fastai_aum.functional.auroc` once, at the end; the last labelled pass stays for `roc`, `pr` and
    `plot`. An undefined AUROC (a class missing, non-finite outputs) is NaN, with one warning per
    message; `learn.predict`'s single item is NaN without one. A single output is read as the logit of
    the loss's positive class (`AUMLossFlat(pos_label=...)`), of the second class for other losses.
    Multi-label outputs are ranked label by label; a label with one class is averaged out with a warning.

    Args:
        average: 'macro' (default), 'weighted', 'micro', or None: per class (label) in `per_class`, and
            `value` their mean over the classes present (a number that trackers can monitor).
        multi_class: 'ovr' (default) or 'ovo', as in scikit-learn.
        max_fpr: partial AUROC up to this false positive rate, standardised as scikit-learn's (binary only).
        name: the column's name.
        pos_label: the positive class of a binary problem, by its vocabulary value (default: the loss's
            positive class, else the second class); not for multi-label data.
        cpu: keep the pass's outputs in CPU memory (copied each batch) rather than on the model's device.
    """

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", pos_label=None, cpu: bool = False):
        check_auroc_options(average, multi_class, max_fpr)
        self.average, self.multi_class, self.max_fpr, self._name = average, multi_class, max_fpr, name
        self.pos_label, self.reading = pos_label, Reading()
        self._ready = False  # set up for the Learner of this pass
        self._own_data = True  # this pass reads the DataLoaders' own data (not e.g. `predict`'s item)
        self._warned: set[str] = set()
        super().__init__(cpu)

    @property
    def name(self) -> str:
        return self._name

    @property
    def classes(self) -> list | None:
        return self.reading.classes

    @property
    def multilabel(self) -> bool:
        return self.reading.multilabel

    @property
    def positive_class(self):
        """The positive class of a binary problem (its vocabulary value once the vocabulary is known)."""
        return self.reading.positive_class

    def reset(self) -> None:
        super().reset()
        self._ready = False

    def setup(self, learn) -> None:
        """Read `learn`'s vocabulary and positive class (`read_outputs`), and check the options against them."""
        self.reading = read_outputs(learn, self.pos_label, self.name)
        check_reading_options(self.reading, self.name, self.multi_class, self.average, self.max_fpr)
        self._ready = True

    def accumulate(self, learn) -> None:
        if not self._ready:
            self.setup(learn)
            self._own_data = reads_own_data(learn)
        super().accumulate(learn)

    def _compact(self, targ: Tensor) -> Tensor:  # one-byte labels
        return compact_labels(self.reading, targ)

    @property
    def value(self) -> float | None:
        if self._value is None and self._preds:
            self._gather()
            self._value, self._per_class = pass_auroc(self, self.preds, self.targs)
        return self._value

    @property
    def per_class(self) -> list[float] | None:
        """Per-class (per-label) AUROC of the last pass (vocabulary order) with `average=None` on multiclass
        or multi-label data, else None."""
        _ = self.value
        return self._per_class

    def warn(self, message: str, key: str | None = None) -> None:
        """Warn `message` once (per `key`, default the message itself) for this metric."""
        key = message if key is None else key
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{self.reading.label(self.name)}: {message}", AUROCUndefinedWarning, stacklevel=3)

    @property
    def roc(self) -> ROC | list[ROC] | None:
        """ROC curve of the last pass: one `ROC` for a binary problem, a list (one per class or label)
        otherwise; None before any pass and after a pass without labels."""
        return self._curves(roc_curve)

    @property
    def pr(self) -> PR | list[PR] | None:
        """Precision-recall curve(s) of the last pass, like `roc`."""
        return self._curves(precision_recall_curve)

    def _curves(self, curve):
        self._gather()
        if self.preds is None:
            return None
        args = (self.preds, self.targs != 0) if is_multi_hot(self.preds, self.targs) \
            else self.reading.oriented(self.preds, self.targs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)
            return curve(*args)

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
        return draw(curve, ax=ax, labels=labels, title=title or f"{what}, last pass ({self.reading.label(self.name)})")


def pass_auroc(metric: AUROC, preds: Tensor, targs: Tensor) -> tuple[float, list[float] | None]:
    """The AUROC of one pass's outputs under `metric`'s options and reading, and its per-class values
    (None unless `average=None` on multiclass or multi-label outputs); NaN where undefined, with the
    metric's warning."""
    multi_hot = is_multi_hot(preds, targs)
    per_class = metric.average is None and preds.ndim == 2 and (
        multi_hot or (metric.multi_class == "ovr" and preds.shape[-1] > 2))
    nan_per_class = [math.nan] * preds.shape[-1] if per_class else None
    bad = count_non_finite(preds)
    if bad:
        metric.warn(f"{bad} of {preds.numel()} model outputs are not finite (NaN or inf); AUROC is NaN")
        return math.nan, nan_per_class
    if len(targs) < 2 and not metric._own_data:  # `learn.predict`'s single item: nothing to rank or warn about
        return math.nan, nan_per_class
    # multi-hot: a label with one class is the functional `auroc`'s warning (its values are always {0, 1})
    present = [] if not len(targs) else None if multi_hot else _one_value(targs.reshape(-1))
    if present is not None:  # one class, or a single example
        classes = metric.classes
        names = [classes[int(c)] if classes is not None and 0 <= c < len(classes) else c for c in present]
        metric.warn(f"only one class ({format_classes(names)}) in the labels of this pass of {len(targs)} example(s); "
                    "AUROC is undefined (NaN)", ONE_CLASS)
        return math.nan, nan_per_class
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AUROCUndefinedWarning)
        args = (preds, targs) if multi_hot else metric.reading.oriented(preds, targs)
        if not multi_hot and preds.ndim == 2 and preds.shape[1] > 2 and metric.multi_class == "ovr" \
                and metric.average != "micro":  # a few class columns at a time: bounded temporaries
            value = auroc_ovr_chunked(*args, metric.average)
        else:
            value = auroc(*args, metric.average, metric.multi_class, metric.max_fpr)
    for w in caught:
        metric.warn(str(w.message))
    if value.ndim == 0:
        return value.item(), None
    defined = value[~value.isnan()]  # the scalar: the mean over the classes with a defined AUROC
    return (defined.mean().item() if len(defined) else math.nan), value.tolist()


def _one_value(labels: Tensor) -> list | None:
    """`[label]` if every label is the same, else None: an aminmax, not the sort that `unique` is."""
    lo, hi = torch.aminmax(labels.view(torch.uint8) if labels.dtype == torch.bool else labels)
    return [labels[0].item()] if lo == hi else None


class StreamingAUROC(AUROC):
    """Binary AUROC of a validation pass from a fixed-memory histogram of `bins` float32 score bins
    (`functional.streaming`): 16 bytes per bin, nothing per row, so any number of rows fits; the
    exact AUROC lies within `bound` of `value`. Each batch is gathered across processes by fastai's
    `to_detach` (one float32 score and one byte per row, dropped after counting), so every rank
    counts the whole pass. Non-finite outputs make the value NaN with one warning naming their count.
    No outputs are kept: no `roc`, `pr` or plot.

    Args:
        bins: a power of two from 2 to 2**28, e.g. 2**20 (16 MiB).
        name, pos_label: as `AUROC`'s.
    """

    def __init__(self, bins: int = 2 ** 20, name: str = "auroc", pos_label=None):
        self.bins, self.hist = check_bins(bins), None
        super().__init__(name=name, pos_label=pos_label)

    def clear(self) -> None:
        super().clear()
        self._bad, self._bound = 0, None  # non-finite outputs of this pass (a device tensor once counted)
        if self.hist is not None:
            self.hist.reset()

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "hist": None, "_bad": 0}

    def setup(self, learn) -> None:
        super().setup(learn)
        r = self.reading
        if r.multilabel or (r.classes is not None and len(r.classes) != 2):
            what = "multi-label" if r.multilabel else f"{len(r.classes)} classes"
            raise ValueError(f"{self.name}: `bins`={self.bins} (the streaming AUROC) is for binary problems, but the "
                             f"DataLoaders are {what}; leave `bins` out for the exact AUROC")

    def add(self, pred: Tensor, targ: Tensor, learn=None) -> None:
        """Count one batch of raw model outputs and targets."""
        pred = pred.detach().as_subclass(Tensor)
        if pred.ndim > 2 or (pred.ndim == 2 and pred.shape[1] > 2):
            raise ValueError(f"{self.name}: the streaming AUROC (`bins`) needs one or two outputs per row, got "
                             f"outputs of shape {tuple(pred.shape)}")
        pred, targ = self.reading.oriented(pred, targ.detach().as_subclass(Tensor))
        score = pred.float() if pred.ndim == 1 or pred.shape[1] == 1 else (pred[:, 1].double() - pred[:, 0]).float()
        score, targ = self._detached(score.reshape(-1), learn), self._detached((targ != 0).to(torch.uint8), learn)
        if self.hist is None:
            self.hist = AUROCHistogram(self.bins, device=score.device)
        finite = torch.isfinite(score)
        self._bad = self._bad + (~finite).sum()
        self.hist.update(score, targ, weight=finite, validate=False)
        self._value = None
        self._preds.append(None)  # a batch was counted (`value` is computed once per pass)

    def _gather(self) -> None:
        pass

    @property
    def value(self) -> float | None:
        if self._value is None and self._preds:
            self._value, self._bound = self._compute()
        return self._value

    @property
    def bound(self) -> float | None:
        """The error bound of the last pass: the exact AUROC lies in [value - bound, value + bound]."""
        return self._bound if self.value is not None else None

    def _compute(self) -> tuple[float, float]:
        bad, (neg, pos) = int(self._bad), self.hist.count
        if bad:
            self.warn(f"{bad} of {bad + neg + pos} model outputs are not finite (NaN or inf); AUROC is NaN")
            return math.nan, math.nan
        if neg == 0 or pos == 0:
            if neg + pos < 2 and not self._own_data:
                return math.nan, math.nan
            self.warn(f"only one class in the labels of this pass of {neg + pos} example(s); AUROC is undefined (NaN)",
                      ONE_CLASS)
            return math.nan, math.nan
        value, bound = self.hist.compute()
        return value.item(), bound.item()

    def _curves(self, curve):
        return None

    def plot(self, ax=None, labels=None, title: str | None = None, kind: str = "roc"):
        raise RuntimeError(f"{self.name}: the streaming AUROC (`bins`={self.bins}) keeps no outputs, so there is no "
                           "curve to plot; leave `bins` out (the exact AUROC) for curves")


class AUROCBound(Metric):
    """The error bound of a `StreamingAUROC`, for a column of its own (`<name>_bound`)."""

    def __init__(self, parent: StreamingAUROC):
        self.parent = parent

    @property
    def name(self) -> str:
        return f"{self.parent.name}_bound"

    @property
    def value(self) -> float | None:
        return self.parent.bound


class _TrainOnly:
    """A metric fed by `AUROCCallback` over the training batches of an epoch; the Recorder's resets
    and accumulations, which happen during validation, must not touch it."""

    def reset(self) -> None:
        pass

    def accumulate(self, learn) -> None:
        pass


class _TrainAUROC(_TrainOnly, AUROC):
    """AUROC over the training batches of an epoch."""


class _TrainStreamingAUROC(_TrainOnly, StreamingAUROC):
    """Streaming AUROC over the training batches of an epoch."""


