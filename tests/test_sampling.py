"""Stratified batches: with 2% positives and batches of 16, every training batch holds both classes."""
from __future__ import annotations

import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.torch_core import set_seed

from fastai_aum import aum_learner
from fastai_aum.datasets import tabular_dls
from fastai_aum.sampling import StratifiedShuffle, stratify_batches


def _rare_positives(n=2000, pos=0.02, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < pos if n_classes == 2 else rng.integers(0, n_classes, n)
    df = pd.DataFrame(rng.normal(size=(n, 3)) + np.asarray(y, float)[:, None], columns=list("abc"))
    df["label"] = np.where(y, "yes", "no") if n_classes == 2 else [f"c{k}" for k in y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tabular_dls(df, bs=16)


def _batches_with_every_class(dl, k=2):
    counts = [len(np.unique(b[-1].reshape(-1).numpy())) for b in dl]
    return sum(c == k for c in counts), len(counts)


def test_plain_batches_often_miss_the_positives():
    full, total = _batches_with_every_class(_rare_positives().train)
    assert full < total / 2  # so the test below can fail


def test_every_stratified_batch_has_both_classes():
    dls = stratify_batches(_rare_positives())
    for _ in range(3):  # every epoch
        full, total = _batches_with_every_class(dls.train)
        assert full == total and total == 1500 // 16


def test_every_class_in_every_batch_for_multiclass():
    dls = stratify_batches(_rare_positives(n_classes=5))
    full, total = _batches_with_every_class(dls.train, k=5)
    assert full == total


def test_shuffle_is_a_permutation_of_the_right_length_and_reproducible():
    labels = np.r_[np.ones(5), np.zeros(95)].astype(int)
    shuffle = StratifiedShuffle(labels, bs=10)
    random.seed(0)
    a = shuffle(range(100))
    random.seed(0)
    assert a == shuffle(range(100))
    assert len(a) == 100 and set(a) <= set(range(100))
    batches = np.asarray(a[:100]).reshape(10, 10)
    assert all(labels[b].sum() >= 1 for b in batches)  # 5 positives, 10 batches: drawn again


def test_aum_learner_stratify_leaves_no_one_class_batch():
    set_seed(0)
    plain = aum_learner(_rare_positives(), layers=[8])
    set_seed(0)
    strat = aum_learner(_rare_positives(), layers=[8], stratify=True)
    for learn in (plain, strat):
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.fit(1, 1e-2)
    assert plain.loss_func.one_class_batches > 30
    assert strat.loss_func.one_class_batches == 0


def test_text_dataloaders_are_refused():
    from fastai_aum.datasets import text_df, text_dls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = text_dls(text_df(n=80))
    with pytest.raises(TypeError, match="SortedDL"):
        stratify_batches(dls)


@pytest.mark.parametrize("labels, message", [
    (np.zeros(10, dtype=int), r"one entry per training example \(len\(dls.train_ds\) = 1500\), got 10"),
    (np.zeros(1501, dtype=int), r"one entry per training example .* got 1501"),
    (np.zeros((1500, 2), dtype=int), r"be 1-d, one class index per training example, got shape \(1500, 2\)"),
    (np.r_[np.zeros(1499), 0.5], r"integer class indices, got 1 non-integer value\(s\), e.g. 0.5"),
    (np.r_[np.zeros(1499), np.nan], r"integer class indices, got 1 non-integer value\(s\), e.g. nan"),
    (np.array(["no"] * 1500), r"integer class indices, got dtype <U2"),
    ([[0], [1, 1]] * 750, r"be a 1-d array of class indices, got list"),
])
def test_bad_labels_are_refused_up_front(labels, message):
    """Wrong labels used to be accepted and raise IndexError at the first epoch."""
    dls = _rare_positives()
    with pytest.raises(ValueError, match=rf"stratify_batches: `labels` must .*{message}"):
        stratify_batches(dls, labels=labels)


def test_given_labels_of_the_right_length_work():
    dls = _rare_positives()
    y = torch.as_tensor(dls.train_ds.ys.to_numpy().reshape(-1))
    for labels in (y, y.float(), y.numpy().tolist()):
        full, total = _batches_with_every_class(stratify_batches(_rare_positives(), labels=labels).train)
        assert full == total
