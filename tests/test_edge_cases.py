"""Edge cases found in review: label dtypes, extreme score ranges, roc_curve's constants, sort paths."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fastai_aum.functional import aum, auroc, roc_curve
from oracles import brute_aum, brute_multiclass_aum, softmax64


def _multiclass(n=60, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1), torch.arange(n) % k


@pytest.mark.parametrize("convert", [lambda y: y.float(), lambda y: y.to(torch.uint8), lambda y: y.to(torch.uint32),
                                     lambda y: y.to(torch.int8), lambda y: y.numpy().astype(np.uint16)])
@pytest.mark.parametrize("multi_class", ["ovr", "ovo"])
def test_label_dtypes(convert, multi_class):
    p, y = _multiclass()
    expected = roc_auc_score(y.numpy(), p.numpy(), multi_class=multi_class)
    assert auroc(p, convert(y), multi_class=multi_class).item() == pytest.approx(expected, abs=1e-12)


def test_bool_target_with_two_columns_ovo_is_binary():
    z = torch.randn(40, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(40) % 2 == 1
    expected = roc_auc_score(y.numpy(), (z[:, 1] - z[:, 0]).numpy())
    assert auroc(z, y, multi_class="ovo").item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("offset,noise", [(1e6, 1e-6), (1e12, 1e-2), (1e15, 1.0)])
def test_aum_is_accurate_with_a_large_offset(offset, noise):
    rng = np.random.default_rng(0)
    s = offset + noise * rng.integers(0, 40, 300).astype(np.float64)
    y = rng.integers(0, 2, 300)
    expected = brute_aum(s, y, "count")
    assert expected > 0
    assert aum(torch.tensor(s), torch.tensor(y), "count").item() == pytest.approx(expected, rel=1e-9)


def test_aum_near_the_float64_maximum_is_finite():
    s = torch.linspace(1.7e308, 1.0e308, 12, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1])
    expected = brute_aum((s / 1e300).numpy(), y.numpy(), "count") * 1e300
    assert aum(s, y, "count").item() == pytest.approx(expected, rel=1e-9)


def test_integers_beyond_float64_precision_are_refused():
    with pytest.raises(ValueError, match=r"integers beyond 2\*\*53"):
        auroc(torch.tensor([2**53, 2**53 + 1, 2**53 + 2, 2**53 + 3]), torch.tensor([0, 1, 0, 1]))
    small = torch.tensor([3, 1, 2, 5])  # integers float64 holds exactly are fine
    assert auroc(small, torch.tensor([0, 1, 0, 1])).item() == roc_auc_score([0, 1, 0, 1], [3, 1, 2, 5])


def _integral(roc) -> float:
    """Integral over the constant of min(FPR, FNR), from roc_curve's intervals (the AUM definition)."""
    width = (roc.max_constant - roc.min_constant)[1:-1]  # the two infinite intervals have min = 0
    return float((width * torch.minimum(roc.fpr, roc.fnr)[1:-1]).sum())


def test_roc_curve_constants_are_aums_for_two_probability_columns():
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(50, 2, generator=g, dtype=torch.float64), 1)
    y = torch.randint(0, 2, (50,), generator=g)
    assert _integral(roc_curve(p, y)) == pytest.approx(aum(p, y).item(), rel=1e-12)
    assert _integral(roc_curve(p, y)) == pytest.approx(brute_aum((p[:, 1] - p[:, 0]).numpy(), y.numpy()), rel=1e-12)


def test_roc_curve_constants_are_aums_for_multiclass():
    z = torch.randn(45, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.arange(45) % 3
    per_class = [_integral(r) for r in roc_curve(z, y)]
    assert np.mean(per_class) == pytest.approx(aum(z, y, average="macro").item(), rel=1e-12)
    assert np.mean(per_class) == pytest.approx(brute_multiclass_aum(softmax64(z.numpy()), y.numpy(), average="macro"),
                                               rel=1e-12)


def test_roc_curve_warns_once_for_several_missing_classes():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(4))
    with pytest.warns(UserWarning) as record:
        roc_curve(z, torch.tensor([0, 0, 1, 1, 0, 1]))
    assert len(record) == 1 and "[2, 3]" in str(record[0].message)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_macro_aum_with_ties_matches_brute_force(dtype):
    rng = np.random.default_rng(5)
    for _ in range(20):
        n, k = int(rng.integers(4, 15)), int(rng.integers(3, 5))
        p = rng.integers(1, 4, (n, k)).astype(np.float64)
        p = p / p.sum(1, keepdims=True)
        p = torch.tensor(p, dtype=dtype).double().numpy()  # the values the package sees
        y = rng.integers(0, k, n)
        for average in ("micro", "macro"):
            got = aum(torch.tensor(p, dtype=dtype), torch.tensor(y), average=average).item()
            assert got == pytest.approx(brute_multiclass_aum(p, y, average=average), rel=1e-5, abs=1e-6)


def _softmax_keeping_ties(z: np.ndarray) -> np.ndarray:
    """float64 softmax whose normaliser sums the sorted exponentials, so that rows permuting the same
    logits give equal probabilities to equal logits (a plain softmax may differ in the last bit)."""
    shifted = z - z.max(1, keepdims=True)
    return np.exp(shifted - np.log(np.sort(np.exp(shifted), axis=1).sum(1, keepdims=True)))


@pytest.mark.parametrize("n", [4095, 4096, 5000, 32767, 32768, 40000])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multiclass_auroc_across_sort_paths(n, k, dtype):
    g = torch.Generator().manual_seed(n + k)
    z = torch.randint(-20, 20, (n, k), generator=g).to(dtype) / 4  # many ties, within and across rows
    y = torch.randint(0, k, (n,), generator=g)
    p = _softmax_keeping_ties(z.double().numpy())
    for average in ("macro", "weighted"):
        expected = roc_auc_score(y.numpy(), p, multi_class="ovr", average=average)
        assert auroc(z, y, average=average).item() == pytest.approx(expected, abs=1e-9)
