"""Stratified batches: every training batch holds every class, so no batch's AUM is 0 for want of one."""
from __future__ import annotations

import random

import numpy as np
import torch

from .vocab import dataset_labels

__all__ = ["StratifiedShuffle", "stratify_batches", "train_labels"]


def train_labels(dls) -> torch.Tensor:
    """The class index of every training example, in dataset order, without loading the inputs."""
    return dataset_labels(dls, 0)


class StratifiedShuffle:
    """A `shuffle_fn` for a fastai DataLoader that gives every full batch the same class mix: each
    class gets its share of the `bs` slots, and at least one.

    A class with fewer examples than there are batches has its examples drawn again within the
    epoch, so rare positives are seen more often than once (their weight in the loss grows), and
    some examples of the common class wait for a later epoch; the epoch keeps its length. When there
    are more classes than slots, it shuffles plainly.

    Args:
        labels: the class index of each training example (1-d).
        bs: the batch size.
    """

    def __init__(self, labels, bs: int):
        self.labels, self.bs = np.asarray(labels).reshape(-1), int(bs)

    def __call__(self, idxs):
        rng = np.random.default_rng(random.getrandbits(64))  # follows fastai's set_seed
        idxs = np.asarray(list(idxs))
        n, bs = len(idxs), self.bs
        n_batches = n // bs
        y = self.labels[idxs]
        classes, counts = np.unique(y, return_counts=True)
        if n_batches == 0 or len(classes) > bs:
            return rng.permutation(idxs).tolist()
        share = bs * counts / n
        slots = np.maximum(1, np.floor(share)).astype(int)
        while slots.sum() < bs:
            slots[np.argmax(share - slots)] += 1
        while slots.sum() > bs:
            slots[np.argmax(np.where(slots > 1, slots - share, -np.inf))] -= 1
        batches, used = [], []
        for c, k in zip(classes, slots):
            pool = idxs[y == c]
            need = n_batches * k
            draws = np.concatenate([rng.permutation(pool) for _ in range(-(-need // len(pool)))])[:need]
            batches.append(draws.reshape(n_batches, k))
            used.append(draws)
        batches = rng.permuted(np.concatenate(batches, axis=1), axis=1)
        rest = rng.permutation(np.setdiff1d(idxs, np.concatenate(used)))[: n - n_batches * bs]
        if len(rest) < n - n_batches * bs:  # everything was drawn: top up the last partial batch at random
            rest = np.concatenate([rest, rng.choice(idxs, n - n_batches * bs - len(rest))])
        return np.concatenate([batches.reshape(-1), rest]).tolist()


def _check_labels(labels, n: int) -> np.ndarray:
    """`labels` as a 1-d integer array of the `n` training examples' classes, or a ValueError saying what is wrong."""
    try:
        y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    except Exception as e:  # ragged lists, CUDA arrays numpy cannot read
        raise ValueError(f"stratify_batches: `labels` must be a 1-d array of class indices, "
                         f"got {type(labels).__name__}") from e
    if y.ndim != 1:
        raise ValueError(f"stratify_batches: `labels` must be 1-d, one class index per training example, "
                         f"got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"stratify_batches: `labels` must have one entry per training example (len(dls.train_ds) "
                         f"= {n}), got {len(y)}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"stratify_batches: `labels` must hold integer class indices, got {int(bad.sum())} "
                             f"non-integer value(s), e.g. {y[bad][0]}")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biu":
        raise ValueError(f"stratify_batches: `labels` must hold integer class indices, got dtype {y.dtype}")
    return y


def stratify_batches(dls, labels=None):
    """Give `dls`'s training DataLoader stratified batches (`StratifiedShuffle`); returns `dls`.

    Use it when AUM trains on rare positives with small batches: a batch without a positive (or
    without a negative) has AUM 0 and teaches nothing, which `AUMLossFlat.one_class_batches` counts.
    Works for tabular and vision DataLoaders; text DataLoaders sort their batches by length, which
    would undo it.

    Args:
        dls: fastai DataLoaders (single-label).
        labels: the class index of each training example (1-d, of length `len(dls.train_ds)`); by
            default read from `dls`.
    """
    from fastai.tabular.core import TabDataLoader, TabWeightedDL
    from fastai.text.data import SortedDL
    train = dls.train
    if isinstance(train, SortedDL):
        raise TypeError("stratify_batches: text DataLoaders (SortedDL) order batches by length, which would undo "
                        "stratification; got a SortedDL")
    labels = train_labels(dls) if labels is None else _check_labels(labels, len(dls.train_ds))
    # fastai's default tabular loader draws its own sample and ignores `shuffle_fn`: use the plain one
    cls = TabDataLoader if isinstance(train, TabWeightedDL) else None
    dls.loaders[0] = train.new(cls=cls, shuffle=True, shuffle_fn=StratifiedShuffle(labels, train.bs))
    return dls
