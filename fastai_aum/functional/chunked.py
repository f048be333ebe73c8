"""Multiclass one-vs-rest AUROC a few class columns at a time, in bounded memory (pure torch).

`auroc(preds, target, multi_class='ovr')` ranks all K columns at once: a float64 log-softmax of the
(N, K) logits, its transposed copy and a sort of it, several times the outputs' own size. Here the
log-softmax's normaliser is computed once per row (in row chunks), and each chunk of columns is
scored, ranked and counted on its own, so the temporaries are a few (N, columns) float64 arrays.
The values are the same: each score is the same float64 expression (`_scores.log_softmax`: the
logit minus the row's maximum, minus the log of the exponentials summed in sorted order), and each
column's AUROC the same binary computation.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._inputs import AUROCUndefinedWarning, prepare, warn_undefined
from .multilabel import auroc_columns

__all__ = ["auroc_ovr_chunked", "log_normaliser"]

CHUNK_ELEMENTS = 2 ** 20  # float64 values per temporary: 8 MiB


def log_normaliser(z: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """Per row of float (N, K) logits: the maximum and the log of the shifted exponentials summed in sorted
    order, in float64, `rows` rows at a time; `_scores.log_softmax(z.double())` is `z - max - log_norm`."""
    top = torch.empty(len(z), dtype=torch.float64, device=z.device)
    log_norm = torch.empty_like(top)
    for start in range(0, len(z), rows):
        block = z[start:start + rows].double()
        top[start:start + rows] = block.max(1).values
        shifted = block - top[start:start + rows, None]
        log_norm[start:start + rows] = shifted.sort(1).values.exp().sum(1).log()
    return top, log_norm


def auroc_ovr_chunked(preds, target, average: str | None = "macro", columns: int | None = None) -> Tensor:
    """`auroc(preds, target, average, multi_class='ovr')` for (N, K > 2) logits or probabilities and N class
    labels, computed `columns` class columns at a time (default: as many as keep a temporary at 8 MiB).

    Args:
        preds: (N, K) logits (ranked by log-softmax) or probabilities (ranked as they are), K > 2.
        target: N class labels in [0, K).
        average: 'macro', 'weighted' or None (per class); 'micro' pools every column and is `auroc`'s.
    """
    if average not in ("macro", "weighted", None):
        raise ValueError(f"`average` must be 'macro', 'weighted' or None for the chunked one-vs-rest AUROC, "
                         f"got {average!r} (use `auroc` for 'micro')")
    inp = prepare(preds, target, allow_empty=True, multilabel=True, implicit_positive=True, one_class_any_column=True)
    if inp.binary or inp.multilabel or inp.scores.ndim != 2:
        raise ValueError(f"`preds` must be (N, K > 2) multiclass scores, got shape {tuple(inp.scores.shape)}")
    s, labels, k = inp.scores, inp.labels, inp.num_classes
    n = len(labels)
    if n == 0:
        warn_undefined("auroc: empty input, AUROC is undefined (NaN)")
        nan = torch.full((k,) if average is None else (), float("nan"), dtype=torch.float64, device=s.device)
        return nan
    width = columns or max(1, CHUNK_ELEMENTS // n)
    probabilities = inp.probabilities
    top, log_norm = (None, None) if probabilities else log_normaliser(s, max(1, CHUNK_ELEMENTS // k))
    values = []
    for start in range(0, k, width):
        cols = torch.arange(start, min(start + width, k), device=s.device)
        block = s[:, start:start + width].double()
        if not probabilities:
            block = (block - top[:, None]) - log_norm[:, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)  # one warning below names every class
            values.append(auroc_columns(block, labels[:, None] == cols, None))
        del block
    values = torch.cat(values)
    support = torch.bincount(labels, minlength=k)
    defined = (support > 0) & (support < n)
    if not bool(defined.all()):
        missing = (~defined).nonzero().flatten().tolist()
        how = "set to NaN" if average is None else f"{average} average over the {int(defined.sum())} others"
        warn_undefined(f"auroc: class(es) {missing} have no positive or no negative example in `target`; {how}")
    if average is None:
        return values
    if not bool(defined.any()):
        return values.new_tensor(float("nan"))
    weights = (support.double() if average == "weighted" else torch.ones_like(values)) * defined
    return (values.nan_to_num() * weights).sum() / weights.sum()
