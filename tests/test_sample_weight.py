"""`sample_weight` against scikit-learn (float64, 1e-9): `auroc` (binary, ovr, max_fpr), `roc_curve`,
`average_precision`, and weighted AUM against a weighted brute-force oracle."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import aum, aum_directional_derivatives, auroc, average_precision, roc_curve
from oracles import brute_aum, brute_directional_derivatives, brute_multilabel_aum

TOL = 1e-9


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def _binary(n, seed, levels=5):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, n).astype(np.float64) - 2
    y = (rng.random(n) < 0.4).astype(np.int64)
    w = rng.integers(0, 4, n) * rng.choice([0.5, 1.0, 1.7], n)  # about a quarter are zero
    y[:2], w[:2] = [0, 1], [1.0, 2.0]  # both classes with weight
    return s, y, w


@pytest.mark.parametrize("n", [2, 5, 30, 1000, 40_000])
@pytest.mark.parametrize("max_fpr", [None, 0.25, 1.0])
def test_binary_auroc_with_zero_weights(n, max_fpr):
    for seed in range(10):
        s, y, w = _binary(n, seed)
        got = _quiet(auroc, torch.from_numpy(s), torch.from_numpy(y), max_fpr=max_fpr, sample_weight=w)
        assert got.dtype == torch.float64 and got.shape == ()
        assert float(got) == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr, sample_weight=w), abs=TOL)


def test_integer_weights_equal_repetition_and_ones_change_nothing():
    s, y, w = _binary(200, 3)
    w = w.round().astype(np.int64)
    rep = np.repeat(np.arange(200), w)
    ts, ty = torch.from_numpy(s), torch.from_numpy(y)
    assert float(auroc(ts, ty, sample_weight=w)) == pytest.approx(float(auroc(ts[rep], ty[rep])), abs=1e-12)
    assert float(auroc(ts, ty, sample_weight=np.ones(200))) == pytest.approx(float(auroc(ts, ty)), abs=1e-12)


def test_two_column_logits_and_weight_shapes():
    s, y, w = _binary(100, 4)
    z = np.stack([np.zeros(100), s], 1)
    ref = roc_auc_score(y, s, sample_weight=w)
    for weight in (w, list(w), torch.from_numpy(w).float(), torch.from_numpy(w)[:, None]):
        got = auroc(torch.from_numpy(z), torch.from_numpy(y), sample_weight=weight)
        assert float(got) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
@pytest.mark.parametrize("probabilities", [True, False])
def test_ovr_matches_sklearn(average, probabilities):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n, k = 120, 4
        z = rng.normal(size=(n, k))  # logits: untied (numpy's softmax would tie or untie tied logits at random)
        c = rng.integers(1, 4, (n, k)).astype(np.float64)
        p = c / c.sum(1, keepdims=True) if probabilities else np.exp(z) / np.exp(z).sum(1, keepdims=True)
        y = rng.permutation(np.concatenate([np.arange(k), np.arange(k), rng.integers(0, k, n - 2 * k)]))
        w = rng.integers(0, 3, n).astype(np.float64)
        w[np.unique(y, return_index=True)[1]] = 1.0  # every class keeps some weight
        got = _quiet(auroc, torch.from_numpy(p if probabilities else z), torch.from_numpy(y), average=average,
                     sample_weight=w)
        ref = roc_auc_score(y, p, multi_class="ovr", average=average, sample_weight=w)
        np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)


def test_ovo_refuses_weights_as_sklearn():
    with pytest.raises(ValueError, match=r"`sample_weight` is not supported with multi_class='ovo'"):
        auroc(torch.rand(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), multi_class="ovo", sample_weight=np.ones(6))


def test_a_class_whose_weight_is_all_zero_is_undefined():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    with pytest.warns(AUROCUndefinedWarning, match="only one class present with non-zero weight"):
        assert math.isnan(float(auroc(s, torch.tensor([0, 0, 1, 1]), sample_weight=[1, 1, 0, 0])))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.warns(AUROCUndefinedWarning, match=r"class\(es\) \[2\]"):
        got = auroc(torch.rand(6, 3), y, average=None, sample_weight=[1, 1, 0, 1, 1, 0])
    assert math.isnan(float(got[2]))


@pytest.mark.parametrize("bad, match", [([1, 1, -1, 1], r"finite and >= 0, got 1 other value\(s\), e.g. -1"),
                                        ([1, math.nan, 1, 1], r"finite and >= 0.*nan"),
                                        ([1, 1, 1], r"`sample_weight` must have shape \(4,\).*got \(3,\)"),
                                        (np.ones((4, 2)), r"`sample_weight` must have shape \(4,\)"),
                                        (["a", "b", "c", "d"], r"`sample_weight` must be a tensor or array-like")])
def test_bad_weights(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        auroc(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=bad)
    with pytest.raises((ValueError, TypeError), match=match):
        roc_curve(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=bad)


def test_roc_curve_matches_sklearn_and_drops_zero_weights():
    for seed in range(10):
        s, y, w = _binary(60, seed)
        fpr, tpr, thr = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
        roc = _quiet(roc_curve, torch.from_numpy(s), torch.from_numpy(y), sample_weight=w)
        np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
        np.testing.assert_array_equal(-roc.max_constant.numpy()[:-1], thr[1:])  # score > -c: the constant is -threshold
        assert float(torch.trapezoid(roc.tpr, roc.fpr)) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=TOL)


def test_roc_curve_multiclass_weighted():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 40)
    y = np.concatenate([[0, 1, 2], rng.integers(0, 3, 37)])
    w = rng.integers(1, 4, 40).astype(np.float64)
    curves = roc_curve(torch.from_numpy(p), torch.from_numpy(y), sample_weight=w)
    for k, c in enumerate(curves):
        fpr, tpr, _ = sk_roc_curve(y == k, p[:, k], sample_weight=w, drop_intermediate=False)
        np.testing.assert_allclose(c.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(c.tpr.numpy(), tpr, atol=TOL, rtol=0)


def test_roc_curve_all_zero_weights():
    with pytest.raises(ValueError, match=r"`sample_weight` is 0 for every example"):
        roc_curve(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=[0, 0, 0, 0])


# ------------------------------------------------------------------------------------- AUM ---

@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("n", [2, 3, 9, 25])
def test_weighted_aum_and_derivatives_match_brute_force(normalize, n):
    for seed in range(8):
        s, y, w = _binary(n, seed, levels=3)  # heavy ties
        ts = torch.tensor(s, requires_grad=True)
        value = aum(ts, torch.from_numpy(y), normalize, sample_weight=w)
        value.backward()
        brute = brute_directional_derivatives(s, y, normalize, weights=w)
        assert float(value.detach()) == pytest.approx(brute_aum(s, y, normalize, w), abs=1e-9)
        got = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize, sample_weight=w)
        np.testing.assert_allclose(got.numpy(), brute, atol=1e-6)
        np.testing.assert_allclose(ts.grad.numpy(), brute.mean(1), atol=1e-6)
        assert np.all(ts.grad.numpy()[w == 0] == 0)  # a weightless example has no say


def test_weighted_aum_with_unit_and_integer_weights():
    rng = np.random.default_rng(1)
    s, y = rng.integers(-3, 4, 300).astype(np.float64), (rng.random(300) < 0.3).astype(np.int64)
    ts, ty = torch.from_numpy(s), torch.from_numpy(y)
    for normalize in ("rate", "count"):
        assert float(aum(ts, ty, normalize, sample_weight=np.ones(300))) == pytest.approx(float(aum(ts, ty, normalize)),
                                                                                          abs=1e-12)
    w = rng.integers(0, 4, 300)
    rep = np.repeat(np.arange(300), w)
    repeated = float(aum(ts[rep], ty[rep], "count"))
    assert float(aum(ts, ty, "count", sample_weight=w)) == pytest.approx(repeated, abs=1e-9)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_weighted_multiclass_aum_matches_brute_force(average):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        p = rng.dirichlet(np.ones(3), 15)
        y = np.concatenate([[0, 1, 2], rng.integers(0, 3, 12)])
        w = rng.integers(0, 3, 15).astype(np.float64)
        onehot = np.eye(3, dtype=np.int64)[y]
        got = aum(torch.from_numpy(p), torch.from_numpy(y), average=average, sample_weight=w)
        assert float(got) == pytest.approx(brute_multilabel_aum(p, onehot, "rate", average, w), abs=1e-9)


def test_weighted_aum_under_torch_func_and_bad_weights():
    s, y, w = _binary(20, 0)
    g = torch.func.grad(lambda x: aum(x, torch.from_numpy(y), sample_weight=w))(torch.from_numpy(s))
    ts = torch.tensor(s, requires_grad=True)
    aum(ts, torch.from_numpy(y), sample_weight=w).backward()
    assert torch.equal(g, ts.grad)
    with pytest.raises(ValueError, match=r"`sample_weight` must be finite and >= 0"):
        aum(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=[1, -2, 1, 1])


# ------------------------------------------------------------------------------ average precision ---

@pytest.mark.parametrize("n", [3, 40, 2000])
def test_binary_average_precision_with_zero_weights(n):
    for seed in range(10):
        s, y, w = _binary(n, seed)
        w[0] = 0.0  # the top score may be weightless too
        s[0] = 10.0
        got = _quiet(average_precision, torch.from_numpy(s), torch.from_numpy(y), sample_weight=w)
        assert float(got) == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=TOL)


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
def test_multiclass_average_precision_weighted(average):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        c = rng.integers(1, 4, (80, 3)).astype(np.float64)
        p = c / c.sum(1, keepdims=True)
        y = np.concatenate([[0, 1, 2], rng.integers(0, 3, 77)])
        w = rng.integers(0, 3, 80).astype(np.float64)
        w[:3] = 1
        got = _quiet(average_precision, torch.from_numpy(p), torch.from_numpy(y), average=average, sample_weight=w)
        ref = average_precision_score(np.eye(3)[y], p, average=average, sample_weight=w)
        np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)


# ---------------------------------------------------------------------------- the weights' scale ---

SCALES = [1e-300, 1e-200, 1e-160, 1.0, 1e154, 1e200, 1e300]


@pytest.mark.parametrize("scale", SCALES)
def test_weighted_auroc_equals_sklearn_at_every_weight_scale(scale):
    """AUROC weighs each pair by the product of two weights: from about 1e154 (or below 1e-160) that product
    overflows (or underflows) float64 unless the weights are rescaled first; scikit-learn's rates do not.
    Binary: scikit-learn's value at the same scale. One-vs-rest and multi-label: its value at unit scale
    (its own 'weighted' average of the columns is 0 for weights below about 1e-150)."""
    for seed in range(4):
        s, y, unit = _binary(300, seed)
        w = unit * scale
        for max_fpr in (None, 0.3):
            got = _quiet(auroc, torch.from_numpy(s), torch.from_numpy(y), max_fpr=max_fpr, sample_weight=w)
            assert float(got) == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr, sample_weight=w), abs=TOL)
        fpr, tpr, _ = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
        roc = _quiet(roc_curve, torch.from_numpy(s), torch.from_numpy(y), sample_weight=w)
        np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
        assert float(_quiet(average_precision, s, y, sample_weight=w)) == pytest.approx(
            average_precision_score(y, s, sample_weight=w), abs=TOL)
        rng = np.random.default_rng(seed)  # one-vs-rest and multi-label columns share the weights
        p = rng.dirichlet(np.ones(3), 300)
        k = np.concatenate([[0, 1, 2], rng.integers(0, 3, 297)])
        for average in ("macro", "weighted", "micro", None):
            got = _quiet(auroc, torch.from_numpy(p), torch.from_numpy(k), average=average, sample_weight=w)
            ref = roc_auc_score(k, p, multi_class="ovr", average=average, sample_weight=unit)
            np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)
        hot = np.eye(3, dtype=np.int64)[k]
        hot[::7, 0] = 1
        for average in ("macro", "weighted", "micro", "samples", None):
            got = _quiet(auroc, torch.from_numpy(p), torch.from_numpy(hot), average=average, sample_weight=w)
            ref = roc_auc_score(hot, p, average=average, sample_weight=unit)
            np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans(), st.integers(0, 5)), min_size=2, max_size=40),
       st.integers(-1070, 1020))
def test_weights_scaled_by_a_power_of_two_give_the_same_bits(rows, k):
    """Rescaling by a power of two is exact, so AUROC, the ROC curve and AP do not move by one bit."""
    s = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    y = torch.tensor([r[1] for r in rows])
    w = torch.tensor([float(r[2]) for r in rows], dtype=torch.float64)
    assume(bool((w * y).sum() > 0) and bool((w * ~y).sum() > 0))
    scaled = w * 2.0 ** k
    assume(bool((scaled[w > 0] / 2.0 ** k == w[w > 0]).all()))  # no weight under- or overflows
    assert torch.equal(auroc(s, y, sample_weight=w), auroc(s, y, sample_weight=scaled))
    assert torch.equal(average_precision(s, y, sample_weight=w), average_precision(s, y, sample_weight=scaled))
    a, b = roc_curve(s, y, sample_weight=w), roc_curve(s, y, sample_weight=scaled)
    assert torch.equal(a.fpr, b.fpr) and torch.equal(a.tpr, b.tpr)
