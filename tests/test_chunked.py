"""One-vs-rest AUROC a few class columns at a time (`functional.chunked`, used by the `AUROC` metric for
multiclass outputs): the same values as `auroc` to the last bit, = scikit-learn, and its bad input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from fastai_aum.functional import AUROCUndefinedWarning, auroc
from fastai_aum.functional.chunked import auroc_ovr_chunked, log_normaliser
from fastai_aum.functional._scores import log_softmax


def _logits(n, k, seed=0, decimals=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g) + torch.nn.functional.one_hot(y, k) * 0.7
    return (z if decimals is None else torch.round(z, decimals=decimals)), y  # ties within and across columns


def _sk(z, y, average):
    p = torch.softmax(z.double(), 1).numpy()
    k = z.shape[1]
    if average is None:
        return roc_auc_score(label_binarize(y.numpy(), classes=list(range(k))), p, average=None)
    return roc_auc_score(y.numpy(), p, multi_class="ovr", average=average, labels=list(range(k)))


def _same(a, b) -> bool:
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("n, k, columns", [(1500, 3, 1), (2000, 7, 2), (1000, 30, 7), (600, 12, None), (50, 40, 64)])
@pytest.mark.parametrize("average", ["macro", "weighted", None])
def test_equals_auroc_bit_for_bit_with_ties_and_missing_classes(n, k, columns, average):
    z, y = _logits(n, k, seed=n + k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)  # (50, 40): classes missing, as auroc warns
        assert _same(auroc_ovr_chunked(z, y, average, columns), auroc(z, y, average))


@pytest.mark.parametrize("n, k, columns", [(1500, 3, 1), (2000, 7, 2), (1000, 30, 7)])
@pytest.mark.parametrize("average", ["macro", "weighted", None])
def test_equals_sklearn(n, k, columns, average):
    """Untied logits: scikit-learn ranks float64 softmax probabilities, which may tie or untie rows that
    the log-softmax does not (the bit-for-bit test above covers ties against `auroc`)."""
    z, y = _logits(n, k, seed=n + k, decimals=None)
    np.testing.assert_allclose(auroc_ovr_chunked(z, y, average, columns).numpy(), _sk(z, y, average), rtol=0, atol=1e-9)


def test_probabilities_are_ranked_as_they_are():
    z, y = _logits(800, 6, seed=3, decimals=None)
    p = torch.softmax(z.double(), 1)
    got = auroc_ovr_chunked(p, y, "macro", columns=4)
    assert torch.equal(got, auroc(p, y))
    assert got.item() == pytest.approx(roc_auc_score(y.numpy(), p.numpy(), multi_class="ovr"), abs=1e-12)


def test_the_row_normaliser_in_row_chunks_is_log_softmax_s():
    z, _ = _logits(1000, 9, seed=5, decimals=None)
    top, log_norm = log_normaliser(z, rows=77)
    assert torch.equal((z.double() - top[:, None]) - log_norm[:, None], log_softmax(z.double()))


def test_a_missing_class_warns_once_naming_it_as_auroc_does():
    z, y = _logits(900, 5, seed=6)
    y[y == 3] = 1
    with warnings.catch_warnings(record=True) as mine:
        warnings.simplefilter("always")
        got = auroc_ovr_chunked(z, y, None, columns=2)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        want = auroc(z, y, None)
    assert [str(w.message) for w in mine] == [str(w.message) for w in theirs]
    assert len(mine) == 1 and "[3]" in str(mine[0].message) and issubclass(mine[0].category, AUROCUndefinedWarning)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())
    macro = auroc_ovr_chunked(z, y, "macro", columns=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(macro, auroc(z, y))


def test_bad_input():
    z, y = _logits(20, 4)
    with pytest.raises(ValueError, match="'micro'"):
        auroc_ovr_chunked(z, y, "micro")
    with pytest.raises(ValueError, match="multiclass"):
        auroc_ovr_chunked(torch.randn(20, 2), torch.randint(0, 2, (20,)))
    with pytest.raises(ValueError, match="multiclass"):
        auroc_ovr_chunked(torch.randn(20, 4), torch.randint(0, 2, (20, 4)))
    z[3, 1] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        auroc_ovr_chunked(z, y)
    with pytest.raises(ValueError, match="labels"):
        auroc_ovr_chunked(torch.randn(20, 4), torch.full((20,), 4))
    with pytest.warns(AUROCUndefinedWarning, match="empty"):
        assert math.isnan(auroc_ovr_chunked(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
