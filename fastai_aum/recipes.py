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

from .functional._inputs import check_non_negative

__all__ = ["WarmStartCallback", "LastLayerScaleCallback", "last_layer", "check_epochs"]


class WarmStartCallback(Callback):
    """Train the first `epochs` epochs of every fit with cross-entropy, the rest with AUM.

    The Learner's loss must be `AUMLossFlat`: its `cross_entropy_only` switch is on for the training and
    validation of the first `epochs` epochs of a fit (their recorded losses are cross-entropy) and off
    otherwise: in later epochs, in `validate`, `get_preds` and `predict`, in `lr_find` (whose curve is
    AUM's), and however a fit ends. The cross-entropy is that of the same outputs (see `AUMLossFlat`), so one
    model serves both phases. `fine_tune` makes two fits, and each starts warm."""
    order = -10  # before anything that computes or reads the loss

    def __init__(self, epochs: int):
        self.epochs, self.aum_loss, self.trained = check_epochs("epochs", epochs), None, False

    def phase(self, epoch: int) -> int:
        """0 for an epoch of the cross-entropy phase, 1 for one of AUM's."""
        return int(epoch >= self.epochs)

    def before_fit(self) -> None:  # also the start of `validate` and `get_preds`
        loss = self.learn.loss_func
        if not hasattr(loss, "cross_entropy_only"):
            raise TypeError(f"WarmStartCallback: the Learner's loss must be AUMLossFlat (whose cross-entropy trains "
                            f"the first epochs), got {type(loss).__name__}")
        self.aum_loss, self.trained = loss, False

    def before_train(self) -> None:
        lr_find = getattr(self.learn, "lr_finder", None) is not None
        if self.epoch == 0 and not lr_find and self.epochs >= self.n_epoch:
            warnings.warn(f"WarmStartCallback: the warm start ({self.epochs} epochs) covers the whole fit of "
                          f"{self.n_epoch} epochs, so AUM never trains", UserWarning, stacklevel=2)
        self.trained = True
        self.aum_loss.cross_entropy_only = self.epoch < self.epochs and not lr_find

    def before_validate(self) -> None:
        if not self.trained:  # `validate` or `get_preds`, not the validation of a training epoch
            self._switch_off()

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


def check_epochs(name: str, value) -> int:
    """`value` as an int, or a ValueError naming the argument unless it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0 (a number of epochs), got {value!r}")
    return int(value)


def last_layer(model: nn.Module) -> nn.Module:
    """The model's last registered module with a weight matrix (Linear or convolution): the output layer of
    fastai's tabular, vision and text models. A model that registers its output layer before its body needs
    `LastLayerScaleCallback(layer=...)`."""
    found = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
             and m.weight.ndim >= 2]
    if not found:
        raise ValueError(f"last_layer: {type(model).__name__} has no layer with a weight matrix")
    return found[-1]


class LastLayerScaleCallback(Callback):
    """Multiply the last layer's weights and bias by `scale` (0 zeroes them) when this Learner first trains.

    The outputs start near 0 (all tied at `scale=0`), so AUM's tie gradient, rather than the random
    initial weights, picks the first direction. It acts once, at the first training epoch of a fit (not
    in `lr_find`, `validate`, `get_preds` or `predict`); later fits keep the trained weights. Do not give
    it to a Learner whose trained weights you load: they would be scaled at its first fit. `layer` is the
    module to scale (default: `last_layer(model)`)."""
    order = -10

    def __init__(self, scale: float = 0.0, layer: nn.Module | None = None):
        self.scale, self.layer, self.done = check_non_negative("scale", scale), layer, False

    def before_train(self) -> None:
        if self.done or getattr(self.learn, "lr_finder", None) is not None:
            return
        layer = self.layer if self.layer is not None else last_layer(self.learn.model)
        with torch.no_grad():
            for p in (layer.weight, getattr(layer, "bias", None)):
                if isinstance(p, torch.Tensor):
                    p.mul_(self.scale)
        self.done = True
