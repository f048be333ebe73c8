"""Hypothesis property tests of auroc and aum (deterministic: the suite's derandomized profile, tests/conftest.py)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from fastai_aum.functional import aum, aum_directional_derivatives, auroc
from oracles import brute_aum

NORMALIZE = st.sampled_from(["rate", "count"])


@st.composite
def binary_problems(draw, min_size=2, max_size=30, levels=6):
    """Scores on a grid of quarter-integers (heavy ties, exact arithmetic), labels, and a permutation."""
    n = draw(st.integers(min_size, max_size))
    scores = draw(st.lists(st.integers(-levels, levels), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    perm = draw(st.permutations(range(n)))
    return np.array(scores, dtype=np.float64) * 0.25, np.array(labels), np.array(perm)


def _both_classes(y):
    return 0 < y.sum() < len(y)


def _auroc(s, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(auroc(torch.as_tensor(s), torch.as_tensor(y), **kw))


def _aum(s, y, normalize="rate"):
    return float(aum(torch.as_tensor(s), torch.as_tensor(y), normalize=normalize))


# ---------------------------------------------------------------------------- permutation ---

@settings(max_examples=60)
@given(binary_problems(min_size=1), NORMALIZE)
def test_permutation_invariance(problem, normalize):
    s, y, perm = problem
    a, b = _auroc(s, y), _auroc(s[perm], y[perm])
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)
    assert _aum(s, y, normalize) == pytest.approx(_aum(s[perm], y[perm], normalize), abs=1e-9)
    d = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize).numpy()
    d_perm = aum_directional_derivatives(torch.from_numpy(s[perm]), torch.from_numpy(y[perm]),
                                         normalize=normalize).numpy()
    np.testing.assert_allclose(d_perm, d[perm], atol=1e-9)
    x, x_perm = torch.tensor(s, requires_grad=True), torch.tensor(s[perm], requires_grad=True)
    aum(x, torch.from_numpy(y), normalize=normalize).backward()
    aum(x_perm, torch.from_numpy(y[perm]), normalize=normalize).backward()
    np.testing.assert_allclose(x_perm.grad.numpy(), x.grad.numpy()[perm], atol=1e-9)


@settings(max_examples=25)
@given(st.integers(3, 5), st.integers(4, 25), st.randoms(use_true_random=False), st.sampled_from(["micro", "macro"]))
def test_permutation_invariance_multiclass(k, n, rnd, average):
    rng = np.random.default_rng(rnd.getrandbits(32))
    z = rng.integers(-3, 4, (n, k)).astype(np.float64)
    y = rng.integers(0, k, n)
    perm = rng.permutation(n)
    a = _aum(z, y) if average == "micro" else float(aum(torch.from_numpy(z), torch.from_numpy(y), average="macro"))
    b = float(aum(torch.from_numpy(z[perm]), torch.from_numpy(y[perm]), average=average))
    assert a == pytest.approx(b, abs=1e-9)
    for avg in ("macro", "micro"):
        ra, rb = _auroc(z, y, average=avg), _auroc(z[perm], y[perm], average=avg)
        assert (math.isnan(ra) and math.isnan(rb)) or ra == pytest.approx(rb, abs=1e-12)


# -------------------------------------------------------------------------- AUROC transforms ---

TRANSFORMS = {
    "exp": np.exp,
    "cube": lambda x: x ** 3,
    "affine": lambda x: 3.0 * x - 7.5,
    "affine_small": lambda x: 0.125 * x + 1000.0,
    "arctan": np.arctan,
}


@settings(max_examples=60)
@given(binary_problems(max_size=40), st.sampled_from(sorted(TRANSFORMS)))
def test_auroc_invariant_under_increasing_transforms(problem, name):
    s, y, _ = problem
    assume(_both_classes(y))
    t = TRANSFORMS[name](s)
    # the transform kept the ranking exactly (strictly increasing on this grid, no rounding collisions)
    assert np.array_equal(np.argsort(t, kind="stable"), np.argsort(s, kind="stable"))
    assert len(np.unique(t)) == len(np.unique(s))
    expected = roc_auc_score(y, s)
    assert _auroc(s, y) == pytest.approx(expected, abs=1e-12)
    assert _auroc(t, y) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40)
@given(binary_problems(max_size=40))
def test_auroc_reversed_scores(problem):
    s, y, _ = problem
    assume(_both_classes(y))
    assert _auroc(-s, y) == pytest.approx(1 - _auroc(s, y), abs=1e-12)


# ------------------------------------------------------------------------------- AUM facts ---

@settings(max_examples=60)
@given(binary_problems(), NORMALIZE, st.floats(0.01, 100.0), st.floats(-1000.0, 1000.0))
def test_aum_scaling_and_shift(problem, normalize, a, c):
    s, y, _ = problem
    base = _aum(s, y, normalize)
    assert base >= 0
    assert base == pytest.approx(brute_aum(s, y, normalize), abs=1e-9)
    assert _aum(a * s, y, normalize) == pytest.approx(a * base, rel=1e-9, abs=1e-9)
    assert _aum(s + c, y, normalize) == pytest.approx(base, rel=1e-9, abs=1e-9)


@settings(max_examples=40)
@given(binary_problems(), NORMALIZE)
def test_aum_zero_iff_no_overlap(problem, normalize):
    """AUM is 0 when the scores separate the classes (or all are equal), and > 0 when a negative
    scores strictly above a positive."""
    s, y, _ = problem
    value = _aum(s, y, normalize)
    assert value >= 0
    if not _both_classes(y):
        assert value == 0
        return
    if s[y == 1].min() >= s[y == 0].max() or len(np.unique(s)) == 1:
        assert value == 0
    if s[y == 0].max() > s[y == 1].min():
        assert value > 0


@settings(max_examples=40)
@given(binary_problems(min_size=2, max_size=25), NORMALIZE)
def test_derivative_identities(problem, normalize):
    """Gradient = mean of left and right; away from ties, shift invariance makes the partials sum to 0
    and positive homogeneity (Euler) makes sum_i s_i * dAUM/ds_i equal AUM."""
    s, y, _ = problem
    d = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize).numpy()
    assert np.isfinite(d).all()
    x = torch.tensor(s, requires_grad=True)
    aum(x, torch.from_numpy(y), normalize=normalize).backward()
    np.testing.assert_allclose(x.grad.numpy(), d.mean(1), atol=1e-12)
    if len(np.unique(s)) == len(s):
        np.testing.assert_array_equal(d[:, 0], d[:, 1])
        assert d[:, 0].sum() == pytest.approx(0, abs=1e-9)
        assert float(s @ d[:, 0]) == pytest.approx(brute_aum(s, y, normalize), abs=1e-9)


# ------------------------------------------------------------------------------- gradcheck ---

@st.composite
def distinct_problems(draw, min_size=2, max_size=15):
    """Scores a random permutation of integers times a spacing, plus jitter far below the spacing."""
    n = draw(st.integers(min_size, max_size))
    perm = draw(st.permutations(range(n)))
    spacing = draw(st.floats(0.1, 10.0))
    jitter = draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    scores = (np.array(perm, dtype=np.float64) + np.array(jitter)) * spacing
    return scores, np.array(labels)


@settings(max_examples=40)
@given(distinct_problems(), NORMALIZE)
def test_gradcheck_away_from_ties(problem, normalize):
    s, y = problem
    x = torch.tensor(s, requires_grad=True)
    target = torch.from_numpy(y)
    assert torch.autograd.gradcheck(lambda t: aum(t, target, normalize=normalize), (x,), eps=1e-6, atol=1e-6)
    # and (N, 2) logits, whose score is z1 - z0
    z = torch.tensor(np.stack([np.zeros_like(s), s], axis=1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: aum(t, target, normalize=normalize), (z,), eps=1e-6, atol=1e-6)
