"""fastai's decision metrics (`accuracy`, `F1Score`, `Precision`, ...) computed on the loss's decisions.

fastai's classification metrics take the argmax of the raw outputs: for a model with one output
that is always class 0, and for a model trained with a ranking loss such as AUM, whose bias is
arbitrary, it ignores the tuned threshold. `decided(metric)` feeds them the classes the loss's
`decodes` chooses (the same as `predict` and `ClassificationInterpretation`) instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.learner import AvgMetric, Metric
from fastai.metrics import AccumMetric, ActivationType, accuracy, error_rate

__all__ = ["DecisionMetric", "decided", "is_decision_metric"]


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
    """A fastai decision metric computed on the loss's decisions (`activation`, then `decodes`,
    as `predict` decides), under the metric's own name. Wrap with `decided`."""

    def __init__(self, metric, positive_index: int | None = None):
        self.metric = metric if isinstance(metric, Metric) else AvgMetric(metric)
        kwargs = getattr(self.metric, "kwargs", None)
        if positive_index is not None and isinstance(kwargs, dict) and kwargs.get("average") == "binary":
            kwargs["pos_label"] = positive_index  # F1Score and friends score the named positive class

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


def decided(metric, positive_index: int | None = None):
    """`metric` computed on the loss's decisions if it is a decision metric (`is_decision_metric`),
    else `metric` itself. `positive_index` sets `pos_label` of binary scikit-learn metrics."""
    if isinstance(metric, DecisionMetric) or not is_decision_metric(metric):
        return metric
    return DecisionMetric(metric, positive_index)
