"""`AUROCCallback` (for `cbs=`): full-dataset AUROC in the progress table, its history, curves and plots."""
from __future__ import annotations

import warnings

import pandas as pd
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Metric, Recorder
from fastai.imports import noop  # the one `learn.no_logging()` sets (fastcore's is another function)

from .decisions import follow_decisions
from .loss_decodes import BinaryDecisions
from .metrics import (AUROC, ONE_CLASS, AUROCBound, AveragePrecisionColumn, ClassAUROC, StreamingAUROC, _TrainAUROC,
                      _TrainStreamingAUROC, class_column_names)
from .reading import valid_classes
from .functional._inputs import AUROCUndefinedWarning
from .vocab import class_names, describe_positive, format_classes
from .functional import ROC
from .training import TrainingFitCallback



__all__ = ["AUROCCallback"]


class _LastPass:
    """What `AUROCCallback` read in the last validation pass, from its `metric`."""
    bound_metric = None  # the exact mode's (and that of callbacks pickled before `bins`)

    @property
    def value(self):
        """AUROC of the last validation pass (with `average=None` on multiclass data, the mean over the
        classes present; `per_class` has each)."""
        return self.metric.value

    @property
    def per_class(self) -> list[float] | None:
        """Per-class AUROC of the last validation pass (vocabulary order), with `average=None` on multiclass data."""
        return self.metric.per_class

    @property
    def roc(self) -> ROC | list[ROC] | None:
        """ROC curve(s) of the last validation pass; None after a pass without labels."""
        return self.metric.roc

    @property
    def bound(self) -> float | None:
        """With `bins`: the error bound of the last validation pass's streaming AUROC (the exact AUROC lies
        in [value - bound, value + bound]); None in the exact mode."""
        return self.metric.bound if self.bound_metric is not None else None

    @property
    def positive_class(self):
        """The positive class of a binary problem."""
        return self.metric.positive_class


class AUROCCallback(_LastPass, TrainingFitCallback):
    """Exact full-dataset AUROC in the progress table, for `cbs=`, with the curves of the last validation
    pass (`plot()`, `plot(kind='pr')`) and a per-epoch `history` DataFrame.

    It adds an `AUROC` metric, which also measures in `validate()` and `get_preds()`; `SaveModelCallback`
    and `EarlyStoppingCallback` can monitor it (higher is better). Options are checked against the
    DataLoaders before any training. A validation set with one class makes AUROC NaN every epoch: a
    training fit then warns, or raises a ValueError before training when a tracker monitors the AUROC.
    Given to the Learner, its columns stay; given to one `fit`, they leave with it.

    Args:
        average, multi_class, max_fpr, pos_label: `AUROC`'s options. With `average=None` on multiclass or
            multi-label data, each class (label) gets a column `<name>_<class>`, and `name` their mean.
        name: the column's name.
        train: add `train_<name>`, the AUROC of the epoch's training batches.
        average_precision: add an `average_precision` column, computed from the same kept outputs.
        bins: None (default) for the exact AUROC; a power of two (e.g. 2**20) for the streaming AUROC of a
            binary problem, in fixed memory (`StreamingAUROC`): it adds a column `<name>_bound`, and the exact
            AUROC lies within it of `<name>`. No curves, no `average_precision` then.
        cpu: keep the exact mode's outputs in CPU memory (copied each batch) rather than on the model's device.
    """
    order = Recorder.order - 1  # the metric must be in place before the Recorder names its columns

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", train: bool = False, pos_label=None, average_precision: bool = False,
                 bins: int | None = None, cpu: bool = False):
        self.metric, self.train_metric, self.bound_metric = _auroc_metrics(
            average, multi_class, max_fpr, name, train, pos_label, average_precision, bins, cpu)
        self.ap_metric = AveragePrecisionColumn(self.metric) if average_precision else None
        self.class_metrics: list[ClassAUROC] = []
        self._history: list[dict] = []
        self._announced = False

    def _own_metrics(self) -> list[Metric]:
        return [m for m in (self.metric, self.bound_metric, *self.class_metrics, self.ap_metric, self.train_metric)
                if m is not None]

    def _attach(self) -> None:
        self.learn.metrics += [m for m in self._own_metrics() if not any(m is x for x in self.learn.metrics)]

    def _detach(self, learn) -> None:
        mine, metrics = self._own_metrics(), getattr(learn, "metrics", None) or []
        if any(m is x for m in metrics for x in mine):
            learn.metrics = [m for m in metrics if not any(m is x for x in mine)]

    def __setattr__(self, name, value) -> None:
        # fastai sets `learn` to None when it removes a callback: at the end of `fit(cbs=...)` however
        # the fit ended (normally, cancelled or raising), or by `remove_cb`. Its columns leave with it.
        if name == "learn" and value is None and self.__dict__.get("learn") is not None:
            self._detach(self.__dict__["learn"])
        super().__setattr__(name, value)

    def _set_class_metrics(self) -> None:
        m = self.metric
        names = class_column_names(m)
        if [c.name for c in self.class_metrics] != names:
            if self.learn is not None:
                self._detach(self.learn)  # the old columns go; `_attach` puts the new ones in
            self.class_metrics = [ClassAUROC(m, k, n) for k, n in enumerate(names)]

    def before_fit(self) -> None:  # `validate` and `get_preds` too: they are fits of one epoch without training
        for metric in (self.metric, self.train_metric):
            if metric is not None:
                metric.setup(self.learn)
        self._set_class_metrics()
        self._attach()
        if self.metric.reading.binary and isinstance(self.learn.loss_func, BinaryDecisions):
            follow_decisions(self.learn, self.metric.reading.pos, self.metric.name)
        if not self._announced and self.metric.reading.binary \
                and getattr(self.learn, "logger", noop) is not noop:  # silent under `learn.no_logging()`
            print(f"{self.metric.name}: {describe_positive(self.metric.classes, self.metric.reading.pos)}")
            self._announced = True

    def before_training_fit(self) -> None:
        check_validation_classes(self.learn, self.metric, self.class_metrics)
        self._history = []

    def before_validate(self) -> None:
        self._attach()

    def before_train(self) -> None:
        if self.train_metric is not None:
            self.train_metric.clear()

    def after_batch(self) -> None:
        if self.training and self.train_metric is not None and len(self.yb):
            self.train_metric.add(self.pred, self.y, self.learn)

    def after_epoch(self) -> None:
        if not self.training_fit:  # `lr_find`'s "epochs" are no epochs: the history is left alone
            return
        self._history.append({"epoch": self.epoch, **{m.name: m.value for m in self._own_metrics()}})

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch of the last training run: the epoch and its AUROC (per class, and training
        AUROC, where asked for). `validate()` and `get_preds()` leave it alone."""
        return pd.DataFrame(self._history, columns=["epoch", *(m.name for m in self._own_metrics())])

    def plot(self, ax=None, title: str | None = None, kind: str = "roc"):
        """Draw the last validation pass's ROC (`kind='roc'`) or precision-recall (`'pr'`) curve(s), one
        per class (multiclass) or label (multi-label), named from the vocabulary; returns the axes."""
        vocab = class_names(getattr(self, "dls", None))
        labels = [str(v) for v in vocab] if vocab is not None and not isinstance(self.metric.roc, ROC) else None
        return self.metric.plot(ax=ax, labels=labels, title=title, kind=kind)


def _auroc_metrics(average, multi_class, max_fpr, name, train, pos_label, average_precision, bins, cpu):
    """The callback's AUROC metric, its training-batch twin (or None) and the bound column (or None)."""
    if bins is None:
        train_metric = _TrainAUROC(average, multi_class, max_fpr, f"train_{name}", pos_label, cpu) if train else None
        return AUROC(average, multi_class, max_fpr, name, pos_label, cpu), train_metric, None
    _check_streaming_options(bins, average, multi_class, max_fpr, average_precision)
    metric = StreamingAUROC(bins, name, pos_label)
    train_metric = _TrainStreamingAUROC(bins, f"train_{name}", pos_label) if train else None
    return metric, train_metric, AUROCBound(metric)


def _check_streaming_options(bins, average, multi_class, max_fpr, average_precision) -> None:
    """Refuse options that the streaming AUROC (binary, no kept outputs) cannot honour."""
    asked = {k: v for k, v, default in (("average", average, "macro"), ("multi_class", multi_class, "ovr"),
                                         ("max_fpr", max_fpr, None), ("average_precision", average_precision, False))
             if v != default}
    if asked:
        raise ValueError(f"AUROCCallback: `bins`={bins!r} (the streaming AUROC of a binary problem, from a histogram) "
                         f"cannot honour {', '.join(f'{k}={v!r}' for k, v in asked.items())}: these need the exact "
                         "AUROC's kept outputs; leave `bins` out")


def check_validation_classes(learn, metric: AUROC, class_metrics: list[ClassAUROC]) -> None:
    """Warn, or raise when a tracker monitors `metric`, if the validation set has fewer than two classes."""
    classes = metric.classes
    if metric.multilabel:  # each label's one-class case is the functional `auroc`'s warning
        return
    found = valid_classes(learn.dls) if classes is not None else None
    if found is None or not found[1]:
        return
    present, n = found
    if len(present) >= 2:
        return
    names = [classes[c] if 0 <= c < len(classes) else c for c in present]
    what = (f"{metric.name}: the validation set ({n} example(s)) holds one class only, "
            f"{format_classes(names)} of {format_classes(classes)}, so AUROC is undefined (NaN) every epoch")
    monitored = {m.name for m in (metric, *class_metrics)}
    trackers = [cb for cb in learn.cbs if isinstance(cb, TrackerCallback) and cb.monitor in monitored]
    if trackers:
        t = trackers[0]
        raise ValueError(f"{what}; {type(t).__name__}(monitor={t.monitor!r}) cannot track it (it would never "
                         "find a best epoch): give the validation set both classes (e.g. a stratified split) "
                         "or monitor 'valid_loss'")
    if ONE_CLASS not in metric._warned:
        metric._warned.add(ONE_CLASS)
        warnings.warn(f"{what}; SaveModelCallback or EarlyStoppingCallback with monitor={metric.name!r} "
                      "could not track it", AUROCUndefinedWarning, stacklevel=2)
