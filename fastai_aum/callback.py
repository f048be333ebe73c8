"""Full-dataset AUROC in fastai: the `AUROC` metric (for `metrics=`) and `AUROCCallback` (for `cbs=`)."""
from __future__ import annotations

import math
import warnings

import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.learner import Metric, Recorder
from fastai.torch_core import to_detach
from fastcore.basics import noop
from torch import Tensor

from ._inputs import AUROCUndefinedWarning
from .classes import class_names, describe_positive, positive_index
from .functional import ROC, auroc, check_auroc_options, roc_curve
from .losses import AUMLossFlat
from .plotting import format_roc_axes, plot_roc

__all__ = ["AUROC", "AUROCCallback", "plot_roc", "format_roc_axes"]


class AUROC(Metric):
    """Exact AUROC over a whole validation pass, as `sklearn.metrics.roc_auc_score` computes it.

    It keeps each batch's raw outputs, detached and on their own device (no host-device sync per
    batch, no float32 sigmoid), gathers them across processes with fastai's `to_detach`, and
    computes `fastai_aum.functional.auroc` once at the end. The last pass's outputs stay, for `roc`
    and `plot`. An undefined AUROC (a class missing) is NaN, with one warning per message; a pass
    of one example (`learn.predict`) is NaN without one.

    `positive` names the positive class of a binary problem by its vocabulary value (default: the
    loss's positive class, else the second class). A single model output is read as the logit of the
    loss's positive class (`AUMLossFlat(positive=...)`), of the second class for other losses.
    """

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", positive=None):
        check_auroc_options(average, multi_class, max_fpr)
        self.average, self.multi_class, self.max_fpr, self._name = average, multi_class, max_fpr, name
        self.positive, self.classes = positive, None
        self._pos, self._output_pos = 1, 1  # the positive class, and the class a single output stands for
        self._ready = False  # set up for the Learner of this pass
        self._warned: set[str] = set()
        self.preds = self.targs = None  # the last pass, concatenated
        self.clear()

    @property
    def name(self) -> str:
        return self._name

    def reset(self) -> None:
        self.clear()
        self._ready = False

    def clear(self) -> None:
        """Forget the batches kept so far."""
        self._preds, self._targs, self._value = [], [], None

    def __getstate__(self) -> dict:  # `learn.export()` pickles metrics: leave the predictions out
        return {**self.__dict__, "_preds": [], "_targs": [], "preds": None, "targs": None, "_value": None}

    def setup(self, learn) -> None:
        """Find the positive class in `learn.dls`'s vocabulary, and which class a single output means."""
        self.classes = class_names(getattr(learn, "dls", None))
        loss = getattr(learn, "loss_func", None)
        if isinstance(loss, AUMLossFlat) and loss.vocab is None and self.classes is not None:
            loss.bind(self.classes)
        self._output_pos = loss.positive_index if isinstance(loss, AUMLossFlat) else 1
        positive = self.positive if self.positive is not None else getattr(loss, "positive", None)
        binary = self.classes is not None and len(self.classes) == 2
        self._pos = positive_index(self.classes, positive) if binary or self.positive is not None else 1
        self._ready = True

    @property
    def positive_class(self):
        """The positive class of a binary problem (its vocabulary value once the vocabulary is known)."""
        return self.classes[self._pos] if self.classes is not None and len(self.classes) == 2 else self._pos

    def accumulate(self, learn) -> None:
        if not self._ready:
            self.setup(learn)
        self.add(learn.pred, learn.y, learn)

    def add(self, pred: Tensor, targ: Tensor, learn=None) -> None:
        """Keep one batch of raw model outputs and targets."""
        detach = learn.to_detach if learn is not None else to_detach
        pred, targ = detach(pred, cpu=False), detach(targ, cpu=False)
        self._preds.append(pred.as_subclass(Tensor))
        self._targs.append(targ.as_subclass(Tensor))
        self._value = None

    @property
    def value(self) -> float | None:
        if self._value is None and self._preds:
            self.preds, self.targs = torch.cat(self._preds), torch.cat(self._targs)
            self._preds, self._targs = [self.preds], [self.targs]
            self._value = self._compute(self.preds, self.targs)
        return self._value

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
        binary = self.classes is not None and len(self.classes) == 2
        return f"{self.name} ({describe_positive(self.classes, self._pos)})" if binary else self.name

    def _compute(self, preds: Tensor, targs: Tensor) -> float:
        if len(targs) < 2:  # e.g. `learn.predict`'s single item: nothing to rank, nothing to warn about
            return math.nan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AUROCUndefinedWarning)
            value = auroc(*self._oriented(preds, targs), self.average, self.multi_class, self.max_fpr)
        for w in caught:
            if str(w.message) not in self._warned:
                self._warned.add(str(w.message))
                warnings.warn(f"{self._label()}: {w.message}", AUROCUndefinedWarning, stacklevel=2)
        return value.item() if value.ndim == 0 else value.tolist()

    @property
    def roc(self) -> ROC | list[ROC] | None:
        """ROC curve of the last pass: one `ROC` for a binary problem, a list (one per class) otherwise."""
        if self.preds is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)
            return roc_curve(*self._oriented(self.preds, self.targs))

    def plot(self, ax=None, labels=None, title: str | None = None):
        """Draw the last pass's ROC curve(s) with matplotlib and return the axes."""
        if self.preds is None:
            raise RuntimeError(f"{self.name}: no validation pass yet, nothing to plot")
        return plot_roc(self.roc, ax=ax, labels=labels, title=title or f"ROC curve, last pass ({self._label()})")


class _TrainAUROC(AUROC):
    """AUROC over the training batches of an epoch, fed by `AUROCCallback`; the Recorder's resets
    and accumulations, which happen during validation, must not touch it."""

    def reset(self) -> None:
        pass

    def accumulate(self, learn) -> None:
        pass


class AUROCCallback(Callback):
    """Exact full-dataset AUROC in the progress table, for `cbs=`: adds an `AUROC` metric named
    `name` (and, with `train=True`, `train_<name>` over the epoch's training batches), keeps the ROC
    curve of the last validation pass (`plot()`) and a per-epoch `history` DataFrame.

    `SaveModelCallback(monitor='auroc')` and `EarlyStoppingCallback(monitor='auroc')` work with it
    (higher is better). It also measures in `learn.validate()` and `learn.get_preds()`.
    """
    order = Recorder.order - 1  # the metric must be in place before the Recorder names its columns

    def __init__(self, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
                 name: str = "auroc", train: bool = False, positive=None):
        self.metric = AUROC(average, multi_class, max_fpr, name, positive)
        self.train_metric = _TrainAUROC(average, multi_class, max_fpr, f"train_{name}", positive) if train else None
        self._history: list[dict] = []
        self._training = self._new_fit = self._announced = False

    def _attach(self) -> None:
        for metric in (self.metric, self.train_metric):
            if metric is not None and not any(m is metric for m in self.learn.metrics):
                self.learn.metrics.append(metric)

    # fastai runs `validate` and `get_preds` as a fit of one epoch with no training, so a training
    # run is recognised by its `before_train`.
    def before_fit(self) -> None:
        for metric in (self.metric, self.train_metric):
            if metric is not None:
                metric.setup(self.learn)
        self._attach()
        if not self._announced and self.metric.classes is not None and len(self.metric.classes) == 2 \
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
        if self.train_metric is not None:
            row[self.train_metric.name] = self.train_metric.value
        self._history.append(row)

    @property
    def value(self):
        """AUROC of the last validation pass."""
        return self.metric.value

    @property
    def roc(self) -> ROC | list[ROC] | None:
        """ROC curve(s) of the last validation pass."""
        return self.metric.roc

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch of the last training run: the epoch and its AUROC (and training AUROC).
        `validate()` and `get_preds()` leave it alone."""
        columns = ["epoch", self.metric.name] + ([self.train_metric.name] if self.train_metric is not None else [])
        return pd.DataFrame(self._history, columns=columns)

    @property
    def positive_class(self):
        """The positive class of a binary problem."""
        return self.metric.positive_class

    def plot(self, ax=None, title: str | None = None):
        """Draw the last validation pass's ROC curve(s), one per class for multiclass; returns the axes."""
        vocab = class_names(getattr(self, "dls", None))
        labels = [str(v) for v in vocab] if vocab is not None and not isinstance(self.metric.roc, ROC) else None
        return self.metric.plot(ax=ax, labels=labels, title=title)
