"""A Learner-level recipe against AUM's missing margin: a small last layer at the start.

AUM's gradient is 0 once a batch is ranked perfectly, so training stops at the first direction that
separates it. `LastLayerScaleCallback` starts the outputs near 0, where every score ties and AUM's tie gradient
(not the initial weights) picks the direction. The loss-level recipes are `AUMLossFlat(margin=...)`
and `AUMLossFlat(ce_weight=...)`.
"""
from __future__ import annotations


import torch
from torch import nn

from .functional._inputs import check_non_negative
from .training import TrainingFitCallback

__all__ = ["LastLayerScaleCallback", "last_layer"]


def last_layer(model: nn.Module) -> nn.Module:
    """The model's last registered module with a weight matrix (Linear or convolution): the output layer of
    fastai's tabular, vision and text models. A model that registers its output layer before its body needs
    `LastLayerScaleCallback(layer=...)`."""
    found = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
             and m.weight.ndim >= 2]
    if not found:
        raise ValueError(f"last_layer: {type(model).__name__} has no layer with a weight matrix")
    return found[-1]


class LastLayerScaleCallback(TrainingFitCallback):
    """Multiply the last layer's weights and bias by `scale` (0 zeroes them) when this Learner first trains.

    The outputs start near 0 (all tied at `scale=0`), so AUM's tie gradient, rather than the random
    initial weights, picks the first direction. It acts once, at the first training epoch of a fit (not
    in `lr_find`, `validate`, `get_preds` or `predict`); later fits keep the trained weights. Do not give
    it to a Learner whose trained weights you load: they would be scaled at its first fit. Each layer is
    scaled once, so the callback may be reused for another Learner.

    Args:
        scale: the factor (>= 0).
        layer: the module to scale (default: `last_layer(learn.model)`).
    """
    order = -10

    def __init__(self, scale: float = 0.0, layer: nn.Module | None = None):
        self.scale, self.layer = check_non_negative("scale", scale), layer

    def before_training_fit(self) -> None:
        layer = self.layer if self.layer is not None else last_layer(self.learn.model)
        if getattr(layer, _SCALED, False):  # a later fit of the same model keeps its trained weights
            return
        with torch.no_grad():
            for p in (layer.weight, getattr(layer, "bias", None)):
                if isinstance(p, torch.Tensor):
                    p.mul_(self.scale)
        setattr(layer, _SCALED, True)


_SCALED = "_fastai_aum_last_layer_scaled"  # marks the layer itself, so that each model is scaled once
