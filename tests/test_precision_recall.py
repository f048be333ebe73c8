"""precision_recall_curve and average_precision against scikit-learn, on random inputs with ties."""
import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from sklearn.metrics import precision_recall_curve as sk_curve
from sklearn.preprocessing import label_binarize

from fastai_aum.functional import PR, AUROCUndefinedWarning, average_precision, precision_recall_curve

AVERAGES = ["macro", "weighted", "micro", None]


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own no-positive warning
        return fn(*args, **kwargs)


def _ours(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        return fn(*args, **kwargs)


def _softmax(z):
    """float64 softmax whose normaliser sums in sorted order, so that rows permuting the same logits
    give exactly equal probabilities to equal logits (ties stay ties, as the package keeps them)."""
    e = np.exp(z - z.max(1, keepdims=True))
    return e / np.sort(e, axis=1).sum(1, keepdims=True)


def _assert_curve(ours, precision, recall, thresholds, tol=1e-9):
    assert isinstance(ours, PR)
    assert ours.precision.dtype == torch.float64 and ours.recall.dtype == torch.float64
    assert ours.precision.shape == precision.shape and ours.thresholds.shape == thresholds.shape
    np.testing.assert_allclose(ours.precision.numpy(), precision, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.recall.numpy(), recall, rtol=0, atol=tol)
    np.testing.assert_allclose(ours.thresholds.double().numpy(), thresholds, rtol=tol, atol=0)


def _binary(rng, allow_one_class=False):
    n = int(rng.integers(1, 60))
    y = rng.integers(0, 2, n)
    if not allow_one_class and y.min() == y.max():
        y[0] = 1 - y[0]
        if n == 1:
            y = np.array([0, 1])
            n = 2
    return y, n


# ------------------------------------------------------------------------------------------ binary ---

def test_binary_matches_sklearn():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        y, n = _binary(rng, allow_one_class=seed % 10 == 0)
        top = int(rng.integers(1, 10))
        kind = seed % 4
        if kind == 0:  # (N,) integer-valued scores with ties
            s = rng.integers(0, top + 1, n).astype(np.float64)
            preds, score = torch.tensor(s), s
        elif kind == 1:  # (N, 1) float32
            s = (rng.integers(0, top + 1, n) / 4).astype(np.float32)
            preds, score = torch.tensor(s)[:, None], s.astype(np.float64)
        elif kind == 2:  # (N, 2) logits: the score is z1 - z0
            z = rng.integers(-top, top + 1, (n, 2)).astype(np.float32)
            preds, score = torch.tensor(z), z[:, 1].astype(np.float64) - z[:, 0].astype(np.float64)
        else:  # (N, 2) probabilities: ranked by p1
            p1 = rng.integers(0, top + 1, n) / top
            preds, score = torch.tensor(np.stack([1 - p1, p1], 1)), p1
        target = torch.tensor(y)
        ap = _ours(average_precision, preds, target)
        assert ap.dtype == torch.float64 and ap.ndim == 0
        assert abs(float(ap) - _sk(average_precision_score, y, score)) <= 1e-9
        _assert_curve(_ours(precision_recall_curve, preds, target), *_sk(sk_curve, y, score))


def test_continuous_scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    s = rng.normal(size=3000) + y
    assert abs(float(average_precision(torch.tensor(s), torch.tensor(y))) - average_precision_score(y, s)) <= 1e-9
    _assert_curve(precision_recall_curve(torch.tensor(s), torch.tensor(y)), *sk_curve(y, s))


def test_thresholds_keep_the_score_dtype_and_do_not_squash_logits():
    z = torch.tensor([30.0, 31.0, 32.0, 33.0], dtype=torch.float32)
    pr = precision_recall_curve(z, torch.tensor([0, 1, 0, 1]))
    assert pr.thresholds.dtype == torch.float32
    assert pr.thresholds.tolist() == [30.0, 31.0, 32.0, 33.0]
    np.testing.assert_allclose(pr.precision.numpy(), [0.5, 2 / 3, 0.5, 1.0, 1.0])


def test_no_positive_binary_is_zero_with_a_warning():
    y, s = np.zeros(5, dtype=int), np.array([0.1, 0.4, 0.4, 0.2, 0.9])
    with pytest.warns(AUROCUndefinedWarning) as record:
        ap = average_precision(torch.tensor(s), torch.tensor(y))
    assert len(record) == 1
    assert float(ap) == 0.0 == _sk(average_precision_score, y, s)
    with pytest.warns(AUROCUndefinedWarning) as record:
        pr = precision_recall_curve(torch.tensor(s), torch.tensor(y))
    assert len(record) == 1
    _assert_curve(pr, *_sk(sk_curve, y, s))
    assert pr.recall[:-1].eq(1).all()


def test_all_positive_binary_is_one_without_warning():
    y, s = np.ones(4, dtype=int), np.array([0.3, 0.1, 0.3, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(average_precision(torch.tensor(s), torch.tensor(y))) == 1.0 == average_precision_score(y, s)


@settings(max_examples=80)
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 1)), min_size=1, max_size=40), st.randoms())
def test_binary_permutation_invariant(pairs, rnd):
    s = np.array([p[0] for p in pairs], dtype=np.float64)
    y = np.array([p[1] for p in pairs])
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = _ours(precision_recall_curve, torch.tensor(s), torch.tensor(y))
    b = _ours(precision_recall_curve, torch.tensor(s[order]), torch.tensor(y[order]))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    ap_a = _ours(average_precision, torch.tensor(s), torch.tensor(y))
    ap_b = _ours(average_precision, torch.tensor(s[order]), torch.tensor(y[order]))
    assert abs(float(ap_a) - float(ap_b)) <= 1e-12


@settings(max_examples=80)
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 1)), min_size=1, max_size=40),
       st.floats(0.1, 10), st.floats(-100, 100))
def test_ap_invariant_under_increasing_transforms(pairs, scale, shift):
    s = np.array([p[0] for p in pairs], dtype=np.float64)
    y = torch.tensor([p[1] for p in pairs])
    base = float(_ours(average_precision, torch.tensor(s), y))
    for transformed in (scale * s ** 3 + shift, np.exp(s / 2), np.arctan(s)):
        assert float(_ours(average_precision, torch.tensor(transformed), y)) == base
    assert abs(base - _sk(average_precision_score, y.numpy(), s)) <= 1e-9


# -------------------------------------------------------------------------------------- multiclass ---

def _multiclass(rng):
    """Tied multiclass logits, their softmax probabilities and the one-hot labels scikit-learn scores."""
    n, k = int(rng.integers(1, 50)), int(rng.integers(3, 6))
    y = rng.integers(0, k, n)
    logits = rng.integers(-2, 3, (n, k)).astype(np.float64)
    return y, logits, k, _softmax(logits), label_binarize(y, classes=list(range(k)))


def test_multiclass_average_precision_matches_sklearn():
    for seed in range(200):
        rng = np.random.default_rng(10_000 + seed)
        y, logits, k, probs, onehot = _multiclass(rng)
        for average in AVERAGES:
            expected = _sk(average_precision_score, onehot, probs, average=average)
            for preds in (torch.tensor(logits), torch.tensor(probs), torch.tensor(logits, dtype=torch.float32)):
                ours = _ours(average_precision, preds, torch.tensor(y), average=average)
                assert ours.dtype == torch.float64
                np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-9)


def test_multiclass_curves_match_sklearn():
    for seed in range(100):
        rng = np.random.default_rng(20_000 + seed)
        y, logits, k, probs, onehot = _multiclass(rng)
        from_probs = _ours(precision_recall_curve, torch.tensor(probs), torch.tensor(y))
        from_logits = _ours(precision_recall_curve, torch.tensor(logits), torch.tensor(y))
        assert isinstance(from_probs, list) and len(from_probs) == len(from_logits) == k
        for c in range(k):
            expected = _sk(sk_curve, onehot[:, c], probs[:, c])
            _assert_curve(from_probs[c], *expected)
            # logits are ranked by log-softmax: thresholds are log-probabilities
            pr = from_logits[c]
            _assert_curve(PR(pr.precision, pr.recall, pr.thresholds.exp()), *expected)


def test_multiclass_missing_class_counts_as_zero_with_one_warning():
    y = np.array([0, 1, 0, 1, 1])
    logits = np.array([[2.0, 1, 0], [0, 1, 0], [1, 1, 1], [0, 2, 1], [1, 0, 0]])
    probs = _softmax(logits)
    onehot = label_binarize(y, classes=[0, 1, 2])
    for average in AVERAGES:
        with pytest.warns(AUROCUndefinedWarning, match=r"\[2\]") if average != "micro" else warnings.catch_warnings():
            ours = average_precision(torch.tensor(logits), torch.tensor(y), average=average)
        np.testing.assert_allclose(ours.numpy(), _sk(average_precision_score, onehot, probs, average=average),
                                   rtol=0, atol=1e-12)
    with pytest.warns(AUROCUndefinedWarning, match=r"class\(es\) \[2\]") as record:
        curves = precision_recall_curve(torch.tensor(logits), torch.tensor(y))
    assert len(record) == 1
    assert curves[2].recall[:-1].eq(1).all()


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.integers(-2, 2), st.integers(0, 2)),
                min_size=1, max_size=30), st.randoms())
def test_multiclass_permutation_invariant(rows, rnd):
    z = np.array([r[:3] for r in rows], dtype=np.float64)
    y = np.array([r[3] for r in rows])
    order = list(range(len(y)))
    rnd.shuffle(order)
    for average in AVERAGES:
        a = _ours(average_precision, torch.tensor(z), torch.tensor(y), average=average)
        b = _ours(average_precision, torch.tensor(z[order]), torch.tensor(y[order]), average=average)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ errors ---

def test_errors_are_clear():
    for fn in (average_precision, precision_recall_curve):
        with pytest.raises(ValueError, match="non-finite"):
            fn(torch.tensor([0.1, math.nan, 0.3]), torch.tensor([0, 1, 1]))
        with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}"):
            fn(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 2]))
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            fn(torch.rand(4, 3), torch.tensor([0, 1, 3, 1]))
        with pytest.raises(ValueError, match="empty"):
            fn(torch.rand(0), torch.zeros(0))
        with pytest.raises(ValueError, match="same length"):
            fn(torch.rand(3), torch.tensor([0, 1]))
        with pytest.raises(TypeError, match="`preds`"):
            fn(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="`average`.*'samples'"):
        average_precision(torch.rand(4, 3), torch.tensor([0, 1, 2, 1]), average="samples")


def test_python_lists_and_numpy_inputs():
    s, y = [0.2, 0.8, 0.5, 0.5, 0.1], [0, 1, 1, 0, 0]
    assert abs(float(average_precision(s, y)) - average_precision_score(y, s)) <= 1e-12
    _assert_curve(precision_recall_curve(np.array(s), np.array(y)), *sk_curve(y, s))


# ------------------------------------------------------------------ sample weights and labels ---

def _weights(rng, n):
    w = rng.integers(0, 4, n) * rng.choice([0.5, 1.0, 1.7], n)  # about a quarter are zero
    w[:2] = [1.0, 2.0][:n]
    return w


def test_binary_curve_with_sample_weight_matches_sklearn():
    """As scikit-learn: weighted counts, and examples of weight 0 dropped first (their scores are no thresholds)."""
    for seed in range(150):
        rng = np.random.default_rng(30_000 + seed)
        y, n = _binary(rng)
        y[:2] = [0, 1]
        s = rng.integers(-3, 4, n) * 0.5 if seed % 2 else rng.normal(size=n)
        w = _weights(rng, n)
        expected = _sk(sk_curve, y, s, sample_weight=w)
        for weight in (w, list(w), torch.tensor(w, dtype=torch.float32) if seed % 3 == 0 else torch.tensor(w)):
            if isinstance(weight, Tensor) and weight.dtype == torch.float32:
                expected = _sk(sk_curve, y, s, sample_weight=weight.double().numpy())
            _assert_curve(_ours(precision_recall_curve, torch.tensor(s), torch.tensor(y), sample_weight=weight),
                          *expected)
        ones = _ours(precision_recall_curve, torch.tensor(s), torch.tensor(y), sample_weight=np.ones(n))
        _assert_curve(ones, *_sk(sk_curve, y, s))


def test_curves_per_class_and_label_with_sample_weight_match_sklearn():
    for seed in range(40):
        rng = np.random.default_rng(40_000 + seed)
        y, logits, k, probs, onehot = _multiclass(rng)
        w = _weights(rng, len(y))
        curves = _ours(precision_recall_curve, torch.tensor(probs), torch.tensor(y), sample_weight=w)
        hot = (rng.random(probs.shape) < 0.5).astype(np.int64)
        label_curves = _ours(precision_recall_curve, torch.tensor(probs), torch.tensor(hot), sample_weight=w)
        for c in range(k):
            _assert_curve(curves[c], *_sk(sk_curve, onehot[:, c], probs[:, c], sample_weight=w))
            _assert_curve(label_curves[c], *_sk(sk_curve, hot[:, c], probs[:, c], sample_weight=w))


@pytest.mark.parametrize("neg, pos", [("ham", "spam"), ("spam", "ham"), (1, 0), (-1.5, 2.5)])
def test_curve_with_pos_label_matches_sklearn(neg, pos):
    for seed in range(30):
        rng = np.random.default_rng(50_000 + seed)
        y, n = _binary(rng)
        t = np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y]
        s = rng.integers(-3, 4, n) * 0.5
        w = _weights(rng, n)
        ref_t, ref_pos = (t, pos) if not isinstance(pos, float) else (t == pos, True)  # scikit-learn: float labels
        _assert_curve(_ours(precision_recall_curve, s, t, pos_label=pos), *_sk(sk_curve, ref_t, s, pos_label=ref_pos))
        _assert_curve(_ours(precision_recall_curve, s, list(t), pos_label=pos, sample_weight=w),
                      *_sk(sk_curve, ref_t, s, pos_label=ref_pos, sample_weight=w))


def test_curve_weight_errors_and_warnings():
    with pytest.raises(ValueError, match=r"`sample_weight` is 0 for every example: there is no precision-recall curve"):
        precision_recall_curve(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=[0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"`sample_weight` must be finite and >= 0"):
        precision_recall_curve(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=[1, -1, 1, 1])
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape \(4,\)"):
        precision_recall_curve(torch.rand(4), torch.tensor([0, 1, 0, 1]), sample_weight=[1, 1, 1])
    s, y = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 1, 0, 1])
    with pytest.warns(AUROCUndefinedWarning, match="no positive example with non-zero weight") as record:
        pr = precision_recall_curve(s, y, sample_weight=[1, 0, 1, 0])
    assert len(record) == 1
    _assert_curve(pr, *_sk(sk_curve, y.numpy(), s.numpy(), sample_weight=[1, 0, 1, 0]))
