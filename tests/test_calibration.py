"""Platt scaling, isotonic calibration, Brier score and log loss against scikit-learn."""
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from fastai_aum.functional import (IsotonicCalibration, PlattScaling, brier_score, isotonic_calibration, log_loss,
                                   platt_scaling)


def _unpenalised():
    # C=inf is scikit-learn 1.8+'s spelling of penalty=None (deprecated there)
    return LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000)


def _overlapping(seed, n=None, ties=False):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(20, 300))
    y = rng.random(n) < rng.uniform(0.15, 0.85)
    y[:2] = [True, False]
    s = rng.normal(size=n) * rng.uniform(0.2, 5) + rng.uniform(0.3, 2) * y + rng.uniform(-3, 3)
    if ties:
        s = np.round(s * 2) / 2
    return s, y


def _close(a, b, rel):
    assert a == pytest.approx(b, rel=rel, abs=rel)


# ------------------------------------------------------------------------------------------ Platt ---

def test_platt_without_prior_correction_is_logistic_regression():
    for seed in range(8):
        s, y = _overlapping(seed)
        fit = platt_scaling(torch.tensor(s), torch.tensor(y), prior_correction=False)
        lr = _unpenalised().fit(s[:, None], y)
        _close(fit.slope, lr.coef_[0, 0], 1e-4)
        _close(fit.intercept, lr.intercept_[0], 1e-4)
        x = np.linspace(s.min() - 1, s.max() + 1, 50)
        np.testing.assert_allclose(fit(torch.tensor(x)).numpy(), lr.predict_proba(x[:, None])[:, 1], atol=1e-6)


def _smoothed_logistic_regression(s, y):
    n_pos, n_neg = y.sum(), (~y).sum()
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.r_[s, s][:, None]
    labels = np.r_[np.ones(len(s)), np.zeros(len(s))]
    return _unpenalised().fit(x, labels, sample_weight=np.r_[t, 1 - t])


def test_platt_with_prior_correction_fits_the_smoothed_targets():
    for seed in range(8):
        s, y = _overlapping(seed, ties=seed % 2 == 1)
        fit = platt_scaling(torch.tensor(s), torch.tensor(y))
        lr = _smoothed_logistic_regression(s, y)
        _close(fit.slope, lr.coef_[0, 0], 1e-4)
        _close(fit.intercept, lr.intercept_[0], 1e-4)
        # tighter than scikit-learn's solver: the likelihood is stationary at the fit
        n_pos, n_neg = y.sum(), (~y).sum()
        residual = 1 / (1 + np.exp(-(fit.slope * s + fit.intercept))) - np.where(y, (n_pos + 1) / (n_pos + 2),
                                                                                1 / (n_neg + 2))
        assert abs(residual.mean()) < 1e-10 and abs((residual * s).mean()) < 1e-10 * (1 + np.abs(s).max())


@pytest.mark.parametrize("gap", [0.0, 1.0, 1e3, 1e6])
def test_platt_with_prior_correction_is_finite_on_separated_data(gap):
    s = np.r_[np.arange(5.0), np.arange(5.0) + 4 + gap]
    y = np.r_[np.zeros(5, bool), np.ones(5, bool)]
    fit = platt_scaling(torch.tensor(s), torch.tensor(y))
    assert math.isfinite(fit.slope) and math.isfinite(fit.intercept) and fit.slope > 0
    p = fit(torch.tensor(s))
    assert bool(torch.isfinite(p).all()) and bool((p[6:] > 0.5).all()) and bool((p[:4] < 0.5).all())
    if gap <= 1:  # a well-conditioned comparison
        lr = _smoothed_logistic_regression(s, y)
        _close(fit.slope, lr.coef_[0, 0], 1e-4)
        _close(fit.intercept, lr.intercept_[0], 1e-4)


@pytest.mark.parametrize("scale", [1e-300, 1e-100, 1e100, 1e300])
@pytest.mark.parametrize("prior_correction", [True, False])
def test_platt_is_scale_equivariant(scale, prior_correction):
    s, y = _overlapping(11)
    unit = platt_scaling(torch.tensor(s), torch.tensor(y), prior_correction=prior_correction)
    scaled = platt_scaling(torch.tensor(s * scale), torch.tensor(y), prior_correction=prior_correction)
    _close(scaled.slope * scale, unit.slope, 1e-9)
    _close(scaled.intercept, unit.intercept, 1e-9)


def test_platt_of_constant_scores_is_the_base_rate():
    fit = platt_scaling(torch.zeros(4), torch.tensor([0, 1, 1, 1]), prior_correction=False)
    assert fit.slope == 0 and fit(torch.tensor([5.0])).item() == pytest.approx(0.75)


def test_platt_dtypes_and_shapes():
    fit = PlattScaling(2.0, -1.0)
    x = torch.tensor([0.0, 0.5, 1.0])
    assert fit(x).dtype == torch.float32 and fit(x.half()).dtype == torch.float32
    assert fit(x.double()).dtype == torch.float64 and fit(torch.tensor([0, 1])).dtype == torch.float64
    expected = torch.sigmoid(2 * x.double() - 1)
    torch.testing.assert_close(fit(x.double()), expected, rtol=0, atol=0)
    torch.testing.assert_close(fit(torch.stack([-x, x], 1)), torch.sigmoid(4 * x.double() - 1).float())
    assert fit(torch.tensor(0.5)).shape == ()
    assert fit([0.0, 0.5]).dtype == torch.float64  # Python floats are read as float64
    with pytest.raises(ValueError, match=r"`scores`.*\(2, 3\)"):
        fit(torch.zeros(2, 3))


# --------------------------------------------------------------------------------------- isotonic ---

def test_isotonic_matches_scikit_learn():
    for seed in range(10):
        s, y = _overlapping(seed, ties=seed % 2 == 0)
        iso = isotonic_calibration(torch.tensor(s), torch.tensor(y))
        ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
        assert bool((iso.x[1:] > iso.x[:-1]).all()) and bool((iso.y[1:] >= iso.y[:-1]).all())
        rng = np.random.default_rng(seed + 100)
        x = np.r_[rng.uniform(s.min() - 2, s.max() + 2, 200), s, s.min() - 10, s.max() + 10]
        np.testing.assert_allclose(iso(torch.tensor(x)).numpy(), ref.predict(x), rtol=0, atol=1e-9)


def test_isotonic_small_cases():
    iso = isotonic_calibration(torch.tensor([1.0, 1.0, 2.0, 3.0]), torch.tensor([0, 1, 0, 1]))
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit([1.0, 1.0, 2.0, 3.0], [0, 1, 0, 1])
    x = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
    np.testing.assert_allclose(iso(torch.tensor(x)).numpy(), ref.predict(x), atol=1e-12)
    one = isotonic_calibration(torch.zeros(3), torch.tensor([0, 1, 1]))  # a single breakpoint
    assert one(torch.tensor([-1.0, 0.0, 1.0])).tolist() == pytest.approx([2 / 3] * 3)
    assert one(torch.tensor(0.0)).shape == ()


def test_isotonic_dtypes():
    iso = isotonic_calibration(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0, 1, 1]))
    assert iso.x.dtype == iso.y.dtype == torch.float64
    assert iso(torch.tensor([0.5])).dtype == torch.float32
    assert iso(torch.tensor([0.5]).half()).dtype == torch.float32
    assert iso(torch.tensor([0.5]).double()).dtype == torch.float64


# ------------------------------------------------------------------------------ shared behaviour ---

def test_pickling_round_trip():
    s, y = _overlapping(3)
    s, y = torch.tensor(s), torch.tensor(y)
    for fit in (platt_scaling(s, y), isotonic_calibration(s, y)):
        back = pickle.loads(pickle.dumps(fit))
        assert type(back) is type(fit)
        x = torch.linspace(-5, 5, 30)
        torch.testing.assert_close(back(x), fit(x), rtol=0, atol=0)


def test_two_column_logits_equal_the_score_difference():
    s, y = _overlapping(5, ties=True)
    z0 = np.random.default_rng(0).integers(-3, 4, len(s)).astype(np.float64)
    logits, y_t = torch.tensor(np.stack([z0, z0 + s], 1)), torch.tensor(y)
    score = torch.tensor((z0 + s) - z0)
    assert platt_scaling(logits, y_t) == platt_scaling(score, y_t)
    assert platt_scaling(logits, y_t, prior_correction=False) == platt_scaling(score, y_t, prior_correction=False)
    a, b = isotonic_calibration(logits, y_t), isotonic_calibration(score[:, None], y_t.long())
    c = isotonic_calibration(score, y_t)
    assert torch.equal(a.x, c.x) and torch.equal(a.y, c.y) and torch.equal(b.x, c.x) and torch.equal(b.y, c.y)


@pytest.mark.cuda
def test_calls_on_cuda():
    s, y = _overlapping(4)
    x = torch.linspace(-5, 5, 30)
    s, y = torch.tensor(s), torch.tensor(y)
    for fit in (platt_scaling(s, y), isotonic_calibration(s, y)):
        out = fit(x.cuda())
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fit(x))
    cpu, gpu = platt_scaling(s, y), platt_scaling(s.cuda(), y.cuda())
    assert gpu.slope == pytest.approx(cpu.slope, rel=1e-9)


# ------------------------------------------------------------------------------------ proper scores ---

def test_brier_and_log_loss_match_scikit_learn():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = 100
        y = rng.random(n) < 0.4
        p = rng.uniform(0, 1, n)
        p[:3] = [0.0, 1.0, 0.5]
        b = brier_score(torch.tensor(p), torch.tensor(y))
        assert b.dtype == torch.float64 and b.ndim == 0
        assert float(b) == pytest.approx(brier_score_loss(y, p), abs=1e-9)
        inner = np.clip(p, 1e-3, 1 - 1e-3)  # scikit-learn clips at its own eps: compare away from 0 and 1
        ll = log_loss(torch.tensor(inner), torch.tensor(y))
        assert ll.dtype == torch.float64 and ll.ndim == 0
        assert float(ll) == pytest.approx(sk_log_loss(y, inner, labels=[0, 1]), abs=1e-9)
        rows = torch.tensor(np.stack([1 - inner, inner], 1))
        assert float(log_loss(rows, torch.tensor(y))) == pytest.approx(float(ll), abs=1e-12)
        assert float(brier_score(torch.tensor(p, dtype=torch.float32)[:, None], torch.tensor(y).long())) == \
            pytest.approx(brier_score_loss(y, p.astype(np.float32)), abs=1e-7)


def test_log_loss_clips_with_eps():
    y = torch.tensor([1, 0])
    p = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for eps in (1e-15, 1e-3):  # both examples get p = eps for their own class, 1 - eps as float64 rounds it
        expected = -(math.log(eps) + math.log(1 - (1 - eps))) / 2
        assert float(log_loss(p, y, eps=eps)) == pytest.approx(expected, rel=1e-12)
    assert 0 <= float(log_loss(torch.tensor([1.0, 0.0]), y)) < 1e-14


# --------------------------------------------------------------------------- labels by name ---

LABEL_PAIRS = [("benign", "malignant"), ("malignant", "benign"), (1, 0), (7, 3)]  # (negative, positive)


def _named(y, neg, pos):
    return np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y.astype(np.int64)]


@pytest.mark.parametrize("neg, pos", LABEL_PAIRS)
def test_calibration_with_pos_label_matches_scikit_learn(neg, pos):
    """Platt and isotonic fits of `target == pos_label`; (N, 2) scores' columns are the sorted labels."""
    for seed in range(4):
        s, y = _overlapping(seed, ties=seed % 2 == 1)
        t = _named(y, neg, pos)
        fit = platt_scaling(s, t, pos_label=pos)
        lr = _smoothed_logistic_regression(s, t == pos)
        _close(fit.slope, lr.coef_[0, 0], 1e-4)
        _close(fit.intercept, lr.intercept_[0], 1e-4)
        lr = _unpenalised().fit(s[:, None], t == pos)
        fit = platt_scaling(s, list(t), pos_label=pos, prior_correction=False)
        _close(fit.slope, lr.coef_[0, 0], 1e-4)
        _close(fit.intercept, lr.intercept_[0], 1e-4)
        iso = isotonic_calibration(s, t, pos_label=pos)
        ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, t == pos)
        x = np.r_[s, s.min() - 1, s.max() + 1, (s[:-1] + s[1:]) / 2]
        np.testing.assert_allclose(iso(x).numpy(), ref.predict(x), rtol=0, atol=1e-9)
        columns = np.stack([np.zeros_like(s), s], 1)  # [negative, positive]: score s
        columns = columns if neg < pos else columns[:, ::-1].copy()
        assert platt_scaling(columns, t, pos_label=pos) == platt_scaling(s, t, pos_label=pos)
        iso2 = isotonic_calibration(columns, t, pos_label=pos)
        assert torch.equal(iso2.x, iso.x) and torch.equal(iso2.y, iso.y)


@pytest.mark.parametrize("neg, pos", LABEL_PAIRS)
def test_brier_and_log_loss_with_labels_match_scikit_learn(neg, pos):
    """`brier_score_loss(pos_label=...)`; probability rows (N, 2), one column per sorted label, as
    scikit-learn's; `log_loss` takes the greater label as positive without `pos_label`, as scikit-learn."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        y = rng.random(80) < 0.4
        y[:2] = [True, False]
        t = _named(y, neg, pos)
        p = rng.uniform(1e-3, 1 - 1e-3, 80)  # of the positive class
        rows = np.stack([1 - p, p], 1)
        rows = rows if neg < pos else rows[:, ::-1].copy()  # columns: the sorted labels
        assert float(brier_score(p, t, pos_label=pos)) == pytest.approx(brier_score_loss(t, p, pos_label=pos), abs=1e-9)
        assert float(brier_score(rows, t, pos_label=pos)) == pytest.approx(brier_score_loss(t, rows), abs=1e-9)
        assert float(log_loss(p, t, pos_label=pos)) == pytest.approx(sk_log_loss(t == pos, p), abs=1e-9)
        assert float(log_loss(rows, t, pos_label=pos)) == pytest.approx(sk_log_loss(t, rows), abs=1e-9)
        if isinstance(neg, str):  # two strings: the greater is positive, as scikit-learn reads them
            greater = max(neg, pos)
            assert float(log_loss(rows, t)) == pytest.approx(sk_log_loss(t, rows), abs=1e-9)
            q = rows[:, 1]  # the probability of the greater label
            assert float(log_loss(q, t)) == pytest.approx(sk_log_loss(t == greater, q), abs=1e-9)
            with pytest.raises(ValueError, match=r"`target` takes labels .* and `pos_label` is not given"):
                brier_score(p, t)


# ------------------------------------------------------------------------------------------ errors ---

separated = (torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([0, 0, 1, 1]))


@pytest.mark.parametrize("call, pattern", [
    (lambda: platt_scaling(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])), r"`preds`.*\(5, 3\)"),
    (lambda: isotonic_calibration(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])), r"`preds`.*\(5, 3\)"),
    (lambda: platt_scaling(torch.randn(4), torch.ones(4)), "platt_scaling needs both classes in `target`"),
    (lambda: isotonic_calibration(torch.randn(4), torch.zeros(4)), "both classes in `target`"),
    (lambda: platt_scaling(torch.randn(0), torch.zeros(0)), "`preds` and `target` are empty"),
    (lambda: isotonic_calibration(torch.randn(0), torch.zeros(0)), "`preds` and `target` are empty"),
    (lambda: platt_scaling(torch.tensor([0.0, math.inf]), torch.tensor([0, 1])), "`preds`.*non-finite"),
    (lambda: platt_scaling(*separated, prior_correction=False), "`preds` separate.*prior_correction=True"),
    (lambda: platt_scaling(torch.tensor([3.0, 2.0, 2.0, 0.0]), torch.tensor([0, 0, 1, 1]), prior_correction=False),
     "`preds` separate"),
    (lambda: platt_scaling(*separated, max_iter=0), "`max_iter`"),
    (lambda: platt_scaling(*separated, tol=-1.0), "`tol`"),
    (lambda: brier_score(torch.rand(5, 3), torch.tensor([0, 1, 2, 0, 1])), r"`probs`.*\(5, 3\)"),
    (lambda: brier_score(torch.tensor([0.5, 1.5]), torch.tensor([0, 1])), "`probs`.*probabilities in \\[0, 1\\]"),
    (lambda: log_loss(torch.tensor([0.5, math.nan]), torch.tensor([0, 1])), "`probs`.*non-finite"),
    (lambda: log_loss(torch.rand(0), torch.zeros(0)), "`probs` and `target` are empty"),
    (lambda: log_loss(torch.rand(2), torch.tensor([0, 1]), eps=0.7), "`eps`"),
    (lambda: log_loss(torch.rand(2), torch.tensor([0, 3])), "`target`"),
])
def test_errors_name_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_calibrators_are_named_tuples():
    assert PlattScaling._fields == ("slope", "intercept") and IsotonicCalibration._fields == ("x", "y")
