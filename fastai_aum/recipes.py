"""Learner-level recipes against AUM's missing margin: a cross-entropy warm start, and a small last layer at the start.

AUM's gradient is 0 once a batch is ranked perfectly, so training stops at the first direction that
separates it. `WarmStartCallback` lets cross-entropy find a direction first and AUM fine-tune it;
`LastLayerScaleCallback` starts the outputs near 0, where every score ties and AUM's tie gradient
(not the initial weights) picks the direction. The loss-level recipes are `AUMLossFlat(margin=...)`
and `AUMLossFlat(ce_weight=...)`.
"""
from __future__ import annotations

import numbers
import warnings

import torch
from fastai.callback.core import Callback
from torch import nn

from ._inputs import check_non_negative

__all__ = ["WarmStartCallback", "LastLayerScaleCallback", "last_layer"]


class WarmStartCallback(Callback):
    """Train the first `epochs` epochs of every fit with cross-entropy, the rest with AUM.

    The Learner's loss must be `AUMLossFlat`: its `cross_entropy_only` switch is on for the first `epochs`
    epochs (their training and validation losses are cross-entropy) and off afterwards, however the fit ends.
    The cross-entropy is that of the same outputs (see `AUMLossFlat`), so one model serves both phases."""
    order = -10  # before anything that computes or reads the loss

    def __init__(self, epochs: int):
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"WarmStartCallback: `epochs` must be an integer >= 0, got {epochs!r}")
        self.epochs, self.aum_loss = int(epochs), None

    def before_fit(self) -> None:
        loss = self.learn.loss_func
        if not hasattr(loss, "cross_entropy_only"):
            raise TypeError(f"WarmStartCallback: the Learner's loss must be AUMLossFlat (whose cross-entropy trains "
                            f"the first epochs), got {type(loss).__name__}")
        self.aum_loss = loss
        if self.epochs >= self.n_epoch and self.training_fit():
            warnings.warn(f"WarmStartCallback: the warm start ({self.epochs} epochs) covers the whole fit of "
                          f"{self.n_epoch} epochs, so AUM never trains", UserWarning, stacklevel=2)

    def training_fit(self) -> bool:
        return not getattr(self.learn, "lr_finder", None)

    def before_epoch(self) -> None:
        self.aum_loss.cross_entropy_only = self.epoch < self.epochs

    def after_fit(self) -> None:
        self._switch_off()

    def after_cancel_fit(self) -> None:
        self._switch_off()

    def _switch_off(self) -> None:
        if self.aum_loss is not None:
            self.aum_loss.cross_entropy_only = False

    def __setattr__(self, name, value) -> None:
        # fastai sets `learn` to None when it removes a callback: at the end of `fit(cbs=...)` however the
        # fit ended (normally, cancelled or raising). The loss then goes back to AUM.
        if name == "learn" and value is None and self.__dict__.get("learn") is not None:
            self._switch_off()
        super().__setattr__(name, value)


def last_layer(model: nn.Module) -> nn.Module:
    """The model's last module with a weight matrix (Linear or convolution): the one that makes its outputs."""
    found = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
             and m.weight.ndim >= 2]
    if not found:
        raise ValueError(f"last_layer: {type(model).__name__} has no layer with a weight matrix")
    return found[-1]


class LastLayerScaleCallback(Callback):
    """Multiply the last layer's weights and bias by `scale` (0 zeroes them) before the Learner's first fit.

    The outputs start near 0 (all tied at `scale=0`), so AUM's tie gradient, rather than the random
    initial weights, picks the first direction. Later fits keep the trained weights."""
    order = -10

    def __init__(self, scale: float = 0.0):
        self.scale, self.done = check_non_negative("scale", scale), False

    def before_fit(self) -> None:
        if self.done:
            return
        layer = last_layer(self.learn.model)
        with torch.no_grad():
            for p in (layer.weight, getattr(layer, "bias", None)):
                if isinstance(p, torch.Tensor):
                    p.mul_(self.scale)
        self.done = True
