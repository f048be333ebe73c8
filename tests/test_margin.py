"""`aum(..., margin=m)`: AUM of the scores with every positive held back by m, against the brute force of
AUM's definition on the shifted scores (tests/oracles.py); its zero set, its tie gradient, its properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastai_aum.functional import aum, aum_directional_derivatives
from fastai_aum.functional.aum_loss import _aum
from oracles import brute_aum, brute_directional_derivatives, brute_multiclass_aum, brute_multilabel_aum, softmax64


def _binary(n: int, seed: int, ties: bool = False):
    g = np.random.default_rng(seed)
    s = g.normal(size=n)
    if ties:
        s = np.round(s * 2) / 2
    y = np.r_[0, 1, g.integers(0, 2, n - 2)]
    return s, y


@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.25, 1.0, 3.0])
def test_binary_margin_is_aum_of_shifted_scores(normalize, ties, margin):
    for seed in range(5):
        s, y = _binary(30, seed, ties)
        got = aum(torch.tensor(s), torch.tensor(y), normalize, margin=margin).item()
        assert got == pytest.approx(brute_aum(s - margin * y, y, normalize), abs=1e-12)


@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_binary_margin_directional_derivatives_and_gradient(normalize, margin):
    for seed in range(4):
        s, y = _binary(25, seed, ties=seed % 2 == 1)
        shifted = s - margin * y
        expected = brute_directional_derivatives(shifted, y, normalize)
        got = aum_directional_derivatives(torch.tensor(s), torch.tensor(y), normalize, margin=margin).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-7)
        x = torch.tensor(s, requires_grad=True)
        aum(x, torch.tensor(y), normalize, margin=margin).backward()
        np.testing.assert_allclose(x.grad.numpy(), expected.mean(1), atol=1e-7)


def test_two_output_margin_shifts_the_score_z1_minus_z0():
    g = torch.Generator().manual_seed(3)
    z, y = torch.randn(40, 2, generator=g, dtype=torch.float64), torch.randint(0, 2, (40,), generator=g)
    s = (z[:, 1] - z[:, 0]).numpy()
    assert aum(z, y, margin=0.7).item() == pytest.approx(brute_aum(s - 0.7 * y.numpy(), y.numpy()), abs=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_margin(weighted):
    s, y = _binary(30, 7, ties=True)
    w = np.random.default_rng(7).uniform(0, 3, 30) if weighted else np.ones(30)
    got = aum(torch.tensor(s), torch.tensor(y), margin=0.5, sample_weight=torch.tensor(w)).item()
    assert got == pytest.approx(brute_aum(s - 0.5 * y, y, "rate", w), abs=1e-12)
    d = aum_directional_derivatives(torch.tensor(s), torch.tensor(y), margin=0.5, sample_weight=torch.tensor(w))
    np.testing.assert_allclose(d.numpy(), brute_directional_derivatives(s - 0.5 * y, y, "rate", weights=w), atol=1e-7)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("margin", [0.1, 0.5, 0.9])
def test_multiclass_margin_shifts_each_class_probability(average, margin):
    g = np.random.default_rng(0)
    z, y = g.normal(size=(40, 4)) * 2, np.r_[np.arange(4), g.integers(0, 4, 36)]
    onehot = y[:, None] == np.arange(4)
    expected = brute_multiclass_aum(softmax64(z) - margin * onehot, y, average=average)
    got = aum(torch.tensor(z), torch.tensor(y), average=average, margin=margin).item()
    assert got == pytest.approx(expected, abs=1e-10)
    # probabilities in (found out, or said by the loss's private entry), the same shift
    p = torch.tensor(softmax64(z))
    assert aum(p, torch.tensor(y), average=average, margin=margin).item() == pytest.approx(expected, abs=1e-10)
    got = _aum(p, torch.tensor(y), average=average, margin=margin, probabilities=True).item()
    assert got == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_multilabel_margin_shifts_each_label_logit(average):
    g = np.random.default_rng(1)
    s, y = g.normal(size=(30, 3)), g.integers(0, 2, (30, 3))
    got = aum(torch.tensor(s), torch.tensor(y), average=average, margin=0.8).item()
    assert got == pytest.approx(brute_multilabel_aum(s - 0.8 * y, y, average=average), abs=1e-10)


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_margin_aum_is_zero_only_when_every_positive_beats_every_negative_by_the_margin(margin):
    neg = np.array([-1.0, 0.0, 0.25])  # dyadic numbers: the shifts below are exact
    for gap in [margin - 0.25, margin - 2**-20, margin, margin + 0.5]:
        pos = neg.max() + gap + np.array([0.0, 0.375])  # the closest positive beats the best negative by `gap`
        s, y = np.r_[neg, pos], np.r_[0, 0, 0, 1, 1]
        value = aum(torch.tensor(s), torch.tensor(y), margin=margin).item()
        if gap >= margin:
            assert value == 0
        else:
            assert value > 0
        assert aum(torch.tensor(s), torch.tensor(y)).item() == 0  # without the margin: already perfect


def test_margin_keeps_the_no_stall_tie_gradient():
    """Scores whose shifted values all tie (the positives exactly `margin` above): the gradient is the mean
    of the one-sided derivatives, not zero, so training moves on."""
    y = np.array([0, 1, 0, 1, 1, 0])
    s = torch.tensor(1.5 * y, dtype=torch.float64, requires_grad=True)
    aum(s, torch.tensor(y), margin=1.5).backward()
    expected = brute_directional_derivatives(np.zeros(6), y).mean(1)
    np.testing.assert_allclose(s.grad.numpy(), expected, atol=1e-9)
    assert (s.grad[torch.tensor(y) == 1] < 0).all() and (s.grad[torch.tensor(y) == 0] > 0).all()


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, True, "1", None, [1.0]])
def test_bad_margin_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="`margin` must be a finite number >= 0"):
        aum(torch.randn(4), torch.tensor([0, 1, 0, 1]), margin=bad)
    with pytest.raises(ValueError, match="`margin`"):
        aum_directional_derivatives(torch.randn(4), torch.tensor([0, 1, 0, 1]), margin=bad)


def test_margin_as_a_tensor_is_accepted():
    s, y = torch.randn(10, dtype=torch.float64), torch.tensor([0, 1] * 5)
    assert aum(s, y, margin=torch.tensor(0.5)).item() == aum(s, y, margin=0.5).item()


@settings(max_examples=60)
@given(st.lists(st.tuples(st.floats(-5, 5), st.integers(0, 1)), min_size=2, max_size=30),
       st.floats(0.0, 3.0), st.floats(0.1, 10.0), st.randoms(use_true_random=False))
def test_margin_properties(pairs, margin, c, rnd):
    """Scale equivariance (AUM(c s; c m) = c AUM(s; m)) and invariance to permuting the examples."""
    s = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    y = torch.tensor([p[1] for p in pairs])
    value = aum(s, y, margin=margin).item()
    assert aum(c * s, y, margin=c * margin).item() == pytest.approx(c * value, rel=1e-9, abs=1e-9)
    perm = list(range(len(pairs)))
    rnd.shuffle(perm)
    assert aum(s[perm], y[perm], margin=margin).item() == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert value >= aum(s, y).item() - 1e-12  # holding positives back never improves the ranking


def test_margin_gradient_matches_finite_differences_away_from_ties():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(20, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1] * 10)
    x = s.clone().requires_grad_(True)
    aum(x, y, margin=0.3).backward()
    h = 1e-7
    for i in range(20):
        e = torch.zeros(20, dtype=torch.float64)
        e[i] = h
        fd = (aum(s + e, y, margin=0.3) - aum(s - e, y, margin=0.3)).item() / (2 * h)
        assert x.grad[i].item() == pytest.approx(fd, abs=1e-6)
