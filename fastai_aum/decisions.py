"""From ranking to decisions: tune a binary Learner's decision threshold and calibrate its probabilities
on validation outputs, so that `predict`, `get_preds`, `show_results`, `ClassificationInterpretation`
and exported Learners decide as tuned.

Importing it adds `Learner.tune_threshold` and `Learner.calibrate`, as fastai adds `lr_find`.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
from fastai.callback.tracker import SaveModelCallback
from fastai.imports import noop  # the one `learn.no_logging()` sets
from fastai.learner import Learner
from fastcore.basics import patch_to
from torch import Tensor

import torch.nn.functional as F
from fastai.learner import AvgMetric, Metric
from fastai.metrics import AccumMetric, ActivationType, accuracy, error_rate
from .training import TrainingFitCallback
from .reading import valid_classes
from .vocab import class_names, format_classes, is_multilabel
from .loss_decodes import BinaryDecisions, DecisionLoss
from .functional import best_threshold, brier_score, isotonic_calibration, log_loss, platt_scaling

__all__ = ["TunedThreshold", "Calibration", "tune_threshold", "calibrate", "DecisionThresholdCallback", "decision_loss",
           "DecisionMetric", "decided", "follow_decisions", "is_decision_metric"]

CALIBRATIONS = {"platt": platt_scaling, "isotonic": isotonic_calibration}


class TunedThreshold(NamedTuple):
    """What `tune_threshold` chose.

    Args:
        thresh: the cut on the probability of the positive class (what the loss's `decodes` compares).
        score_thresh: the same cut on the model's binary score, when the probabilities are its sigmoid
            (None after calibration).
        criterion: the criterion maximised (or 'cost', minimised).
        value: the criterion's value at the cut, on the outputs tuned on.
        tpr: the true positive rate there.
        fpr: the false positive rate there.
        pos_label: the positive class.
    """
    thresh: float
    score_thresh: float | None
    criterion: str
    value: float
    tpr: float
    fpr: float
    pos_label: object


class Calibration(NamedTuple):
    """What `calibrate` did, measured on the outputs it was fitted on.

    Args:
        method: 'platt' or 'isotonic'.
        brier_before, brier_after: the Brier score of the positive class's probability before and after.
        log_loss_before, log_loss_after: the log loss before and after.
    """
    method: str
    brier_before: float
    brier_after: float
    log_loss_before: float
    log_loss_after: float


def decision_loss(learn: Learner) -> BinaryDecisions:
    """The Learner's loss, able to decide with a threshold: `AUMLossFlat` as it is; another loss (e.g.
    `CrossEntropyLossFlat`) is wrapped in a `DecisionLoss` once, which computes the same loss."""
    loss = learn.loss_func
    multilabel = bool(getattr(loss, "multilabel", False)) or is_multilabel(learn.dls)
    if not isinstance(loss, BinaryDecisions):  # the AUROCCallback's positive class, if one was named
        pos_label = None if multilabel else getattr(getattr(getattr(learn, "auroc", None), "metric", None),
                                                     "pos_label", None)
        loss = learn.loss_func = DecisionLoss(loss, pos_label=pos_label, multilabel=multilabel)
    if multilabel:
        return loss
    classes = class_names(learn.dls)
    if classes is None or len(classes) != 2:
        raise ValueError(f"decision thresholds are for binary problems; these DataLoaders have "
                         f"{'no vocabulary' if classes is None else f'{len(classes)} classes'}")
    if loss.vocab is None:
        loss.bind(classes)
    follow_decisions(learn, loss.pos_index, "tune_threshold")
    return loss


def _identity(x):
    return x


def _outputs(learn: Learner, dl, bar: bool = False) -> tuple[Tensor, Tensor]:
    """Raw outputs and targets of `dl` (default: the validation set), leaving the Recorder's history of
    the last fit as it was (`get_preds` starts it afresh). Inside a fit the progress bar must stay:
    `no_bar` would detach the running ProgressCallback before its `after_fit`."""
    recorder = getattr(learn, "recorder", None)
    kept = {k: getattr(recorder, k) for k in ("lrs", "iters", "losses", "values") if hasattr(recorder, k)}
    try:
        with contextlib.nullcontext() if bar else learn.no_bar():
            preds, targs = learn.get_preds(dl=dl, act=_identity) if dl is not None else learn.get_preds(act=_identity)
    finally:
        for k, v in kept.items():
            setattr(recorder, k, v)
    if targs is None or len(targs) == 0:
        raise ValueError("tuning needs labelled outputs: the DataLoader gave no targets")
    return preds, targs if getattr(learn.loss_func, "multilabel", False) else targs.reshape(-1)


def _positive_probability(loss: BinaryDecisions, preds: Tensor) -> Tensor:
    probs = loss.activation(preds)
    return probs if probs.ndim == 1 else probs.select(loss.axis, loss.pos_index).reshape(-1)


def tune_threshold(learn: Learner, criterion: str = "balanced_accuracy", dl=None, *, cost_fp: float = 1.0,
                   cost_fn: float = 1.0, max_fpr: float | None = None, min_tpr: float | None = None,
                   outputs: tuple[Tensor, Tensor] | None = None) -> TunedThreshold | list[TunedThreshold]:
    """Set the loss's decision threshold to the one that maximises `criterion` on `dl`; also
    `learn.tune_threshold(...)`. Returns a `TunedThreshold`; on a multi-label Learner, one per label (each
    label's logit cut on its own, with the same criterion), in label order.

    The threshold is found on the binary score that AUROC ranks, in float64 (on the calibrated probability
    after `calibrate`), and `decodes` compares the same score, so every fastai decision path (`predict`,
    `get_preds(with_decoded=True)`, exported Learners) reproduces the best cut, however confident the model.

    Args:
        learn: a binary Learner; a loss other than `AUMLossFlat` is wrapped in a `DecisionLoss`.
        criterion, cost_fp, cost_fn, max_fpr, min_tpr: as in `fastai_aum.functional.best_threshold`.
        dl: the labelled DataLoader to tune on (default: the validation set).
        outputs: raw outputs and targets to tune on instead of running `dl`.
    """
    loss = decision_loss(learn)
    if loss.multilabel:
        return _tune_per_label(learn, loss, criterion, dl, outputs, dict(cost_fp=cost_fp, cost_fn=cost_fn,
                                                                          max_fpr=max_fpr, min_tpr=min_tpr))
    preds, targs = outputs if outputs is not None else _outputs(learn, dl)
    score = loss.score(preds.double())  # what AUROC ranks, in float64: no saturated probability ties it
    on = score if loss.calibration is None else loss.calibration(score)
    found = best_threshold(on, targs == loss.pos_index, criterion, cost_fp=cost_fp, cost_fn=cost_fn,
                           max_fpr=max_fpr, min_tpr=min_tpr)
    if loss.calibration is None:
        loss.set_score_threshold(float(found.threshold))
    else:
        loss.thresh = float(found.threshold)
    loss.tuning = dict(criterion=criterion, cost_fp=cost_fp, cost_fn=cost_fn, max_fpr=max_fpr, min_tpr=min_tpr)
    score_thresh = loss.score_thresh if loss.calibration is None else None
    return TunedThreshold(loss.thresh, score_thresh, criterion, float(found.value), float(found.tpr),
                          float(found.fpr), loss.positive_class)


def _tune_per_label(learn, loss: BinaryDecisions, criterion: str, dl, outputs, options: dict) -> list[TunedThreshold]:
    """Multi-label: one threshold per label, each the best cut of that label's float64 logit (`best_threshold`)."""
    preds, targs = outputs if outputs is not None else _outputs(learn, dl)
    preds, targs = preds.movedim(loss.axis, -1), targs.movedim(loss.axis, -1)
    labels = class_names(learn.dls) or list(range(preds.shape[-1]))
    found = [best_threshold(preds[:, j].double(), targs[:, j] != 0, criterion, **options) for j in range(preds.shape[-1])]
    loss.set_score_threshold([float(f.threshold) for f in found])
    loss.tuning = dict(criterion=criterion, **options)
    return [TunedThreshold(p, float(f.threshold), criterion, float(f.value), float(f.tpr), float(f.fpr), label)
            for p, f, label in zip(loss.thresh, found, labels)]


def calibrate(learn: Learner, method: str = "platt", dl=None, outputs: tuple[Tensor, Tensor] | None = None) -> Calibration:
    """Calibrate a binary Learner's probabilities: the loss's `activation`, and with it `get_preds` and
    `predict`, gives them afterwards; also `learn.calibrate(...)`. Returns a `Calibration` (Brier score
    and log loss before and after, on the same outputs). A threshold tuned before is tuned again,
    with the same criterion, on the new probabilities.

    Args:
        learn: a binary Learner; a loss other than `AUMLossFlat` is wrapped in a `DecisionLoss`.
        method: 'platt' (a logistic fit of the score) or 'isotonic'.
        dl: the labelled DataLoader to fit on (default: the validation set).
        outputs: raw outputs and targets to fit on instead of running `dl`.
    """
    if method not in CALIBRATIONS:
        raise ValueError(f"`method` must be one of {', '.join(map(repr, CALIBRATIONS))}, got {method!r}")
    loss = decision_loss(learn)
    if loss.multilabel:
        raise ValueError("calibrate is for binary Learners; this one is multi-label (tune_threshold tunes each label)")
    preds, targs = outputs if outputs is not None else _outputs(learn, dl)
    y = targs == loss.pos_index
    before = _positive_probability(loss, preds)
    loss.calibration = CALIBRATIONS[method](loss.score(preds), y)
    after = _positive_probability(loss, preds)
    if loss.tuning is not None:
        tune_threshold(learn, outputs=(preds, targs), **loss.tuning)
    return Calibration(method, float(brier_score(before, y)), float(brier_score(after, y)),
                       float(log_loss(before, y)), float(log_loss(after, y)))


patch_to(Learner)(tune_threshold)  # `learn.tune_threshold(...)`, as fastai adds `lr_find`
patch_to(Learner)(calibrate)


class DecisionThresholdCallback(TrainingFitCallback):
    """At the end of each training fit, calibrate (if asked) and tune the decision threshold on the
    validation set, after `SaveModelCallback` has loaded the best weights. The results are in
    `self.tuned` and `self.calibration` (the callback is `learn.decision_threshold`); `validate`,
    `get_preds` and `lr_find` tune nothing.

    Args:
        criterion: as in `tune_threshold`.
        calibrate: None, or a `calibrate` method ('platt', 'isotonic') to fit first.
        **kwargs: `tune_threshold`'s constraints (`cost_fp`, `cost_fn`, `max_fpr`, `min_tpr`).
    """
    order = SaveModelCallback.order + 1

    def __init__(self, criterion: str = "balanced_accuracy", calibrate: str | None = None, **kwargs):
        if calibrate is not None and calibrate not in CALIBRATIONS:
            raise ValueError(f"`calibrate` must be None or one of {', '.join(map(repr, CALIBRATIONS))}, got {calibrate!r}")
        # `best_threshold` on two points raises exactly what the real tuning would for these options, now
        best_threshold(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), criterion, **kwargs)
        self.criterion, self.method, self.kwargs = criterion, calibrate, kwargs
        self.tuned = self.calibration = None

    def before_training_fit(self) -> None:
        """Refuse, before the first training batch, a Learner that could not be tuned after its fit."""
        classes = class_names(self.learn.dls)
        if classes is None or len(classes) != 2:
            raise ValueError(f"DecisionThresholdCallback: decision thresholds are for binary problems; these DataLoaders "
                             f"have {'no vocabulary' if classes is None else f'{len(classes)} classes'}")
        found = valid_classes(self.learn.dls)  # stops at the second class: a few labels read, not the whole set
        if found is not None and len(found[0]) < 2:
            raise ValueError(f"DecisionThresholdCallback: the validation set ({found[1]} example(s)) holds one class "
                             f"only, {format_classes([classes[c] for c in found[0]])}, so no threshold can be "
                             "tuned on it: give the validation set both classes (e.g. a stratified split)")

    def after_fit(self) -> None:
        if not self.training_fit:  # `validate`, `get_preds` and `lr_find` are not tuned after
            return
        outputs = _outputs(self.learn, None, bar=True)
        if self.method is not None:
            self.calibration = self.learn.calibrate(self.method, outputs=outputs)
        self.tuned = self.learn.tune_threshold(self.criterion, outputs=outputs, **self.kwargs)


# --- fastai's decision metrics computed on the loss's decisions -------------------------------------------


def is_decision_metric(metric) -> bool:
    """Whether `metric` scores the argmax of the outputs: `accuracy`, `error_rate` and fastai's
    scikit-learn metrics for single-label classification (`F1Score`, `Precision`, `Recall`,
    `BalancedAccuracy`, `MatthewsCorrCoef`, `CohenKappa`, `FBeta`, `Jaccard`)."""
    if metric in (accuracy, error_rate):
        return True
    if isinstance(metric, AvgMetric):
        return metric.func in (accuracy, error_rate)
    return (isinstance(metric, AccumMetric) and metric.dim_argmax is not None and metric.thresh is None
            and metric.activation == ActivationType.No)


class _Decided:
    """A view of the Learner whose `pred` is the one-hot of the loss's decisions."""

    def __init__(self, learn, pred):
        self._learn, self.pred = learn, pred

    def __getattr__(self, name):
        return getattr(self._learn, name)


class DecisionMetric(Metric):
    """A fastai decision metric computed on the loss's decisions (`activation`, then `decodes`, as
    `predict` decides), under the metric's own name. Wrap with `decided`.

    Args:
        metric: a decision metric (`is_decision_metric`), a Metric or a function of (preds, targs).
        pos_index: the positive class's index, given to binary scikit-learn metrics as `pos_label`.
    """

    def __init__(self, metric, pos_index: int | None = None):
        self.metric = metric if isinstance(metric, Metric) else AvgMetric(metric)
        kwargs = getattr(self.metric, "kwargs", None)
        if pos_index is not None and isinstance(kwargs, dict) and kwargs.get("average") == "binary":
            kwargs["pos_label"] = pos_index  # F1Score and friends score the named positive class

    @property
    def name(self) -> str:
        return self.metric.name

    def reset(self) -> None:
        self.metric.reset()

    def accumulate(self, learn) -> None:
        loss = learn.loss_func
        pred = learn.pred
        decisions = loss.decodes(loss.activation(pred)).long()
        n_classes = max(2, pred.shape[-1] if pred.ndim > 1 else 1)
        one_hot = F.one_hot(decisions.reshape(-1), n_classes).to(torch.float32)
        self.metric.accumulate(_Decided(learn, one_hot))

    @property
    def value(self):
        return self.metric.value


def decided(metric, pos_index: int | None = None):
    """`metric` computed on the loss's decisions (`DecisionMetric`) if it is a decision metric
    (`is_decision_metric`), else `metric` itself.

    Args:
        metric: a fastai metric (`accuracy`, `F1Score()`, ...).
        pos_index: the positive class's index, given to binary scikit-learn metrics as `pos_label`.
    """
    if isinstance(metric, DecisionMetric) or not is_decision_metric(metric):
        return metric
    return DecisionMetric(metric, pos_index)


def follow_decisions(learn, pos_index: int, who: str) -> list[str]:
    """Make the Learner's fastai decision metrics score the loss's decisions (`decided`), so that they
    follow its threshold; says so in one line and returns the names of the metrics it wrapped."""
    metrics = list(getattr(learn, "metrics", None) or [])
    adapted = [decided(m, pos_index) for m in metrics]
    wrapped = [a.name for m, a in zip(metrics, adapted) if a is not m]
    if wrapped:
        learn.metrics = adapted
        if getattr(learn, "logger", noop) is not noop:  # silent under `learn.no_logging()`
            print(f"{who}: {', '.join(wrapped)} now score the Learner's own decisions, at its threshold "
                  "(fastai_aum.decided)")
    return wrapped
