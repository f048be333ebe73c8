"""Scores as the functional API ranks them: the binary score of model outputs, tie-preserving
log-softmax, and one-hot class masks (pure torch)."""
from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import Inputs

__all__ = ["binary_score", "ranking_scores", "log_softmax", "one_hot", "positive_mask"]


def binary_score(preds: Tensor) -> Tensor:
    """The binary score of model outputs: the value itself for (N,) or (N, 1), `z1 - z0` for (N, 2).

    Args:
        preds: (N,), (N, 1) or (N, 2) model outputs.
    """
    if preds.ndim == 2 and preds.shape[1] == 2:
        return preds[:, 1] - preds[:, 0]
    return preds if preds.ndim == 1 else preds.reshape(preds.shape[0])


def ranking_scores(inp: Inputs) -> Tensor:
    """Scores to rank by for AUROC: never squashed through a float32 sigmoid or softmax."""
    s = inp.scores
    if inp.binary:
        if s.ndim == 1:
            return s  # sort in the input's own dtype; sums are float64 later
        if inp.probabilities:
            return s[:, 1].double()
        return s[:, 1].double() - s[:, 0].double()
    return s.double() if inp.probabilities else log_softmax(s.double())


def log_softmax(z: Tensor) -> Tensor:
    """Row-wise log_softmax whose normaliser is summed in sorted order: rows that permute the same
    logits then give exactly equal values to equal logits, so mathematical ties stay ties."""
    shifted = z - z.max(1, keepdim=True).values
    return shifted - shifted.sort(1).values.exp().sum(1, keepdim=True).log()


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(N, K) boolean matrix whose column k marks `labels == k`."""
    return labels[:, None] == torch.arange(num_classes, device=labels.device)


def positive_mask(labels: Tensor) -> Tensor:
    return labels if labels.dtype == torch.bool else labels == 1
