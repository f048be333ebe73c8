"""Full-dataset AUROC in fastai: the `AUROC` metric (for `metrics=`) and `AUROCCallback` (for `cbs=`)."""
from __future__ import annotations

import math
import warnings

import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Metric, Recorder
from fastai.torch_core import to_detach
from fastai.imports import noop  # the one `learn.no_logging()` sets (fastcore's is another function)
from torch import Tensor

from ._auroc_columns import (AveragePrecisionColumn, ClassAUROC, class_column_names, multilabel_pr, multilabel_roc,
                             reads_own_data, valid_labels)
from ._inputs import AUROCUndefinedWarning, check_choice
from .classes import class_names, describe_positive, format_classes, is_multilabel, positive_index
from .functional import PR, ROC, auroc, check_auroc_options, precision_recall_curve, roc_curve
from .losses import AUMLossFlat
from .plotting import format_roc_axes, plot_pr, plot_roc

__all__ = ["AUROC", "AUROCCallback", "plot_roc", "format_roc_axes"]

_ONE_CLASS = "<one class>"  # the key of the one-class warning, whatever the counts in it


class AUROC(Metric):
    """Exact AUROC over a whole validation pass, as `sklearn.metrics.roc_auc_score` computes it.

    It keeps each batch's raw outputs, detached and on their own device (no host-device sync per
    batch, no float32 sigmoid), gathers them across processes with fastai's `to_detach`, and
    computes `fastai_aum.functional.auroc` once at the end. The last labelled pass's outputs stay, for
    `roc` and `plot`. An undefined AUROC (a class missing, non-finite outputs) is NaN, with one
    warning per message; a single item from outside the DataLoaders (`learn.predict`) is NaN without one.

    `positive` names the positive class of a binary problem by its vocabulary value (default: the
    loss's positive class, else the second class). A single model output is read as the logit of the
    loss's positive class (`AUMLossFlat(positive=...)`), of the second class for other losses.
    `average=None` on multiclass data gives the per-class values in `per_class`; `value` is then
    their mean over the classes present (a number that trackers can monitor).

    Multi-label data (a `MultiCategoryBlock`, multi-hot targets) are ranked label by label on the raw
    outputs, averaged as `average` says ('macro' by default; None: per label in `per_class`); a label
    with one class in the pass is averaged out with a warning. `positive` does not apply there.
    """

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", positive=None):
        check_auroc_options(average, multi_class, max_fpr)
        self.average, self.multi_class, self.max_fpr, self._name = average, multi_class, max_fpr, name
        self.positive, self.classes, self.multilabel = positive, None, False
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
        if self.multilabel and self.positive is not None:
            raise ValueError(f"{self.name}: `positive`={self.positive!r} names the positive class of a binary problem, "
                             f"but the DataLoaders are multi-label ({len(self.classes or [])} labels, each its own "
                             "binary problem): leave `positive` out")
        self._check_options()
        if isinstance(loss, AUMLossFlat) and loss.vocab is None and self.classes is not None:
            loss.bind(self.classes)
        self._output_pos = loss.positive_index if isinstance(loss, AUMLossFlat) else 1
        positive = self.positive if self.positive is not None else getattr(loss, "positive", None)
        binary = self.classes is not None and len(self.classes) == 2
        self._pos = positive_index(self.classes, positive) if binary or self.positive is not None else 1
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
                       "AUROC is undefined (NaN)", _ONE_CLASS)
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


_ClassAUROC = ClassAUROC  # Learners exported before it moved to `_auroc_columns` load too


class AUROCCallback(Callback):
    """Exact full-dataset AUROC in the progress table, for `cbs=`: adds an `AUROC` metric named
    `name` (and, with `train=True`, `train_<name>` over the epoch's training batches; with
    `average=None` on multiclass or multi-label data, a column `<name>_<class>` per class or label and
    their mean as `name`; with `average_precision=True`, an `average_precision` column computed from
    the same kept outputs), keeps the ROC and precision-recall curves of the last validation pass
    (`plot()`, `plot(kind='pr')`) and a per-epoch `history` DataFrame.

    `SaveModelCallback(monitor='auroc')` and `EarlyStoppingCallback(monitor='auroc')` work with it
    (higher is better). It also measures in `learn.validate()` and `learn.get_preds()`. Options are
    checked against the DataLoaders before any training. A validation set with one class makes
    AUROC NaN every epoch: a training fit then warns, or raises a ValueError before training when a
    tracker monitors the AUROC. Given to the Learner, its columns stay; given to one `fit`, they
    leave with it.
    """
    order = Recorder.order - 1  # the metric must be in place before the Recorder names its columns

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", train: bool = False, positive=None, average_precision: bool = False):
        self.metric = AUROC(average, multi_class, max_fpr, name, positive)
        self.train_metric = _TrainAUROC(average, multi_class, max_fpr, f"train_{name}", positive) if train else None
        self.ap_metric = AveragePrecisionColumn(self.metric) if average_precision else None
        self.class_metrics: list[ClassAUROC] = []
        self._history: list[dict] = []
        self._training = self._new_fit = self._announced = False

    def _own_metrics(self) -> list[Metric]:
        return [m for m in (self.metric, *self.class_metrics, self.ap_metric, self.train_metric) if m is not None]

    def _attach(self) -> None:
        for metric in self._own_metrics():
            if not any(m is metric for m in self.learn.metrics):
                self.learn.metrics.append(metric)

    def _detach(self, learn) -> None:
        mine = self._own_metrics()
        metrics = getattr(learn, "metrics", None) or []
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

    def _training_fit(self) -> bool:
        """A real training fit: not `validate`/`get_preds` (which hold the Learner's lock), not `lr_find`."""
        lock = getattr(self.learn, "lock", None)
        return not (hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds")
                    or (lock is not None and lock.locked()))

    def _check_validation_classes(self) -> None:
        """Warn, or raise when a tracker monitors this AUROC, if the validation set has fewer than two classes."""
        classes = self.metric.classes
        if self.metric.multilabel:  # each label's one-class case is the functional `auroc`'s warning
            return
        labels = valid_labels(self.dls) if classes is not None else None
        if not labels:
            return
        present = sorted(set(labels))
        if len(present) >= 2:
            return
        names = [classes[c] if 0 <= c < len(classes) else c for c in present]
        what = (f"{self.metric.name}: the validation set ({len(labels)} example(s)) holds one class only, "
                f"{format_classes(names)} of {format_classes(classes)}, so AUROC is undefined (NaN) every epoch")
        monitored = {m.name for m in (self.metric, *self.class_metrics)}
        trackers = [cb for cb in self.learn.cbs if isinstance(cb, TrackerCallback) and cb.monitor in monitored]
        if trackers:
            t = trackers[0]
            raise ValueError(f"{what}; {type(t).__name__}(monitor={t.monitor!r}) cannot track it (it would never "
                             "find a best epoch): give the validation set both classes (e.g. a stratified split) "
                             "or monitor 'valid_loss'")
        if _ONE_CLASS not in self.metric._warned:
            self.metric._warned.add(_ONE_CLASS)
            warnings.warn(f"{what}; SaveModelCallback or EarlyStoppingCallback with monitor={self.metric.name!r} "
                          "could not track it", AUROCUndefinedWarning, stacklevel=2)

    # fastai runs `validate` and `get_preds` as a fit of one epoch with no training, so a training
    # run is recognised by its `before_train`.
    def before_fit(self) -> None:
        for metric in (self.metric, self.train_metric):
            if metric is not None:
                metric.setup(self.learn)
        self._set_class_metrics()
        self._attach()
        if self._training_fit():
            self._check_validation_classes()
        if not self._announced and self.metric._binary() \
                and getattr(self.learn, "logger", noop) is not noop:  # silent under `learn.no_logging()`
            print(f"{self.metric.name}: {describe_positive(self.metric.classes, self.metric._pos)}")
            self._announced = True
        # `lr_find` trains too, but its "epochs" are no epochs: leave the history alone
        self._training, self._new_fit = False, not hasattr(self.learn, "lr_finder")

    def before_validate(self) -> None:
        self._attach()

    def before_train(self) -> None:
        if self._new_fit:
            self._history, self._new_fit = [], False
        self._training = not hasattr(self.learn, "lr_finder")
        if self.train_metric is not None:
            self.train_metric.clear()

    def after_batch(self) -> None:
        if self.training and self.train_metric is not None and len(self.yb):
            self.train_metric.add(self.pred, self.y, self.learn)

    def after_epoch(self) -> None:
        if not self._training:
            return
        row = {"epoch": self.epoch, self.metric.name: self.metric.value}
        row.update({c.name: c.value for c in self.class_metrics})
        if self.ap_metric is not None:
            row[self.ap_metric.name] = self.ap_metric.value
        if self.train_metric is not None:
            row[self.train_metric.name] = self.train_metric.value
        self._history.append(row)

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
    def history(self) -> pd.DataFrame:
        """One row per epoch of the last training run: the epoch and its AUROC (per class, and training
        AUROC, where asked for). `validate()` and `get_preds()` leave it alone."""
        columns = ["epoch", self.metric.name] + [c.name for c in self.class_metrics] \
            + ([self.ap_metric.name] if self.ap_metric is not None else []) \
            + ([self.train_metric.name] if self.train_metric is not None else [])
        return pd.DataFrame(self._history, columns=columns)

    @property
    def positive_class(self):
        """The positive class of a binary problem."""
        return self.metric.positive_class

    def plot(self, ax=None, title: str | None = None, kind: str = "roc"):
        """Draw the last validation pass's ROC (`kind='roc'`) or precision-recall (`'pr'`) curve(s), one
        per class (multiclass) or label (multi-label), named from the vocabulary; returns the axes."""
        vocab = class_names(getattr(self, "dls", None))
        labels = [str(v) for v in vocab] if vocab is not None and not isinstance(self.metric.roc, ROC) else None
        return self.metric.plot(ax=ax, labels=labels, title=title, kind=kind)
