"""auroc_ci and auroc_test against a brute-force O(m * n) DeLong written here from the placement values' definition."""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from fastai_aum.functional import AUROCInterval, AUROCTest, AUROCUndefinedWarning, auroc, auroc_ci, auroc_test


# ------------------------------------------------------------------------------------- the oracle ---

def _normal_quantile(p):
    """Inverse standard normal CDF by bisection on math.erfc (independent of the package)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def delong(scores, y):
    """AUROCs (k,) and DeLong covariance (k, k) of k score vectors, straight from the definition.

    For positive x_i: V10_i = mean over negatives y_j of psi(x_i, y_j), psi = 1 if x > y, 1/2 if equal,
    0 else; for negative y_j: V01_j = mean over positives. S = S10 / m + S01 / n with S10, S01 the
    sample covariances (ddof=1) of the placement values across the k models.
    """
    y = np.asarray(y).astype(bool)
    v10, v01, aucs = [], [], []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
        aucs.append(psi.mean())
    m, n = int(y.sum()), int((~y).sum())
    s10 = np.atleast_2d(np.cov(np.stack(v10), ddof=1))
    s01 = np.atleast_2d(np.cov(np.stack(v01), ddof=1))
    return np.array(aucs), s10 / m + s01 / n


def oracle_ci(s, y, level):
    aucs, cov = delong([s], y)
    se = math.sqrt(cov[0, 0])
    z = _normal_quantile((1 + level) / 2)
    return aucs[0], min(max(aucs[0] - z * se, 0.0), 1.0), min(max(aucs[0] + z * se, 0.0), 1.0), se


def oracle_test(a, b, y):
    aucs, cov = delong([a, b], y)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    d = aucs[0] - aucs[1]
    if abs(var) < 1e-15:  # identical placement differences: pROC's convention for d == 0
        z = 0.0 if abs(d) < 1e-15 else math.copysign(math.inf, d)
    else:
        z = d / math.sqrt(var)
    return aucs[0], aucs[1], z, math.erfc(abs(z) / math.sqrt(2)), d, math.sqrt(max(var, 0.0))


def _problem(rng, n_min=4, n_max=60, top=None):
    """Random labels with at least 2 of each class and integer-valued scores with many ties."""
    while True:
        n = int(rng.integers(n_min, n_max + 1))
        y = rng.integers(0, 2, n)
        if 2 <= y.sum() <= n - 2:
            break
    top = top if top is not None else int(rng.integers(1, 8))
    return y, rng.integers(0, top + 1, n).astype(np.float64)


def _close(actual, expected, tol=1e-9):
    actual = float(actual)
    if math.isinf(expected):
        assert actual == expected
    else:
        assert abs(actual - expected) <= tol, (actual, expected)


# ------------------------------------------------------------------------------------ auroc_ci ---

def test_ci_matches_brute_force_delong():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        y, s = _problem(rng)
        level = [0.95, 0.9, 0.99, 0.5][seed % 4]
        res = auroc_ci(torch.tensor(s), torch.tensor(y), level=level)
        assert isinstance(res, AUROCInterval)
        assert all(v.dtype == torch.float64 and v.ndim == 0 for v in res)
        for actual, expected in zip(res, oracle_ci(s, y, level)):
            _close(actual, expected)
        assert abs(float(res.auroc) - roc_auc_score(y, s)) <= 1e-12
        assert float(res.auroc) == float(auroc(torch.tensor(s), torch.tensor(y)))


def test_ci_two_column_logits_and_one_column():
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        y, _ = _problem(rng)
        logits = rng.integers(-3, 4, (len(y), 2)).astype(np.float64)
        expected = oracle_ci(logits[:, 1] - logits[:, 0], y, 0.95)
        for preds in (torch.tensor(logits), torch.tensor(logits, dtype=torch.float32)):
            for actual, e in zip(auroc_ci(preds, torch.tensor(y)), expected):
                _close(actual, e)
        col = torch.tensor(logits[:, :1])
        for actual, e in zip(auroc_ci(col, torch.tensor(y)[:, None]), oracle_ci(logits[:, 0], y, 0.95)):
            _close(actual, e)


def test_ci_probability_matrix_ranked_by_p1():
    rng = np.random.default_rng(7)
    y, s = _problem(rng, 30, 60)
    p1 = s / 10  # ties kept
    probs = np.stack([1 - p1, p1], 1)
    for actual, e in zip(auroc_ci(torch.tensor(probs), torch.tensor(y)), oracle_ci(p1, y, 0.95)):
        _close(actual, e)


def test_ci_continuous_float32_scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = (rng.normal(size=500) + y).astype(np.float32)
    for actual, e in zip(auroc_ci(torch.tensor(s), torch.tensor(y)), oracle_ci(s.astype(np.float64), y, 0.95)):
        _close(actual, e)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=4, max_size=40), st.randoms())
def test_ci_permutation_invariant(pairs, rnd):
    s = np.array([p[0] for p in pairs], dtype=np.float64)
    y = np.array([p[1] for p in pairs])
    if not 2 <= y.sum() <= len(y) - 2:
        return
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = auroc_ci(torch.tensor(s), torch.tensor(y))
    b = auroc_ci(torch.tensor(s[order]), torch.tensor(y[order]))
    assert float(a.auroc) == float(b.auroc)
    for u, v in zip(a[1:], b[1:]):
        assert abs(float(u) - float(v)) <= 1e-12


def test_level_changes_width_as_the_normal_quantile():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 6, 200) + y
    widths = {}
    for level in (0.5, 0.8, 0.9, 0.95, 0.99):
        r = auroc_ci(torch.tensor(s), torch.tensor(y), level=level)
        assert 0 < float(r.low) < float(r.auroc) < float(r.high) < 1  # unclipped here
        widths[level] = float(r.high - r.low)
        assert abs(widths[level] - 2 * _normal_quantile((1 + level) / 2) * float(r.std_err)) <= 1e-12
    assert widths[0.5] < widths[0.8] < widths[0.9] < widths[0.95] < widths[0.99]
    assert abs(widths[0.95] / widths[0.9] - 1.959963984540054 / 1.6448536269514722) <= 1e-9


def test_interval_clipped_near_auroc_one():
    y = np.array([0] * 10 + [1] * 10)
    s = np.arange(20, dtype=np.float64)
    s[[9, 10]] = s[[10, 9]]  # one swapped pair: AUROC 0.99
    r = auroc_ci(torch.tensor(s), torch.tensor(y))
    assert float(r.auroc) == 0.99
    assert float(r.high) == 1.0 and float(r.low) < 0.99
    for actual, e in zip(r, oracle_ci(s, y, 0.95)):
        _close(actual, e)
    perfect = auroc_ci(torch.arange(20.0), torch.tensor(y))
    assert [float(v) for v in perfect] == [1.0, 1.0, 1.0, 0.0]
    worst = auroc_ci(-torch.arange(20.0), torch.tensor(y))
    assert [float(v) for v in worst] == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.2, True, "0.95", None, math.nan])
def test_bad_level(level):
    with pytest.raises(ValueError, match="`level`"):
        auroc_ci(torch.rand(10), torch.arange(10) % 2, level=level)


def test_ci_one_class_is_nan_with_one_warning():
    with pytest.warns(AUROCUndefinedWarning) as record:
        r = auroc_ci(torch.rand(6), torch.ones(6))
    assert len(record) == 1
    assert all(math.isnan(float(v)) for v in r)
    with pytest.warns(AUROCUndefinedWarning):
        r = auroc_ci(torch.rand(0), torch.ones(0))
    assert all(math.isnan(float(v)) for v in r)


@pytest.mark.parametrize("y", [[1, 0, 0, 0, 0], [0, 1, 1, 1, 1]])
def test_ci_single_positive_or_negative(y):
    s = np.array([3.0, 1.0, 3.0, 2.0, 0.0])
    with pytest.warns(AUROCUndefinedWarning, match="at least 2 positives and 2 negatives") as record:
        r = auroc_ci(torch.tensor(s), torch.tensor(y))
    assert len(record) == 1
    assert abs(float(r.auroc) - roc_auc_score(y, s)) <= 1e-12
    assert all(math.isnan(float(v)) for v in r[1:])


def test_ci_errors():
    with pytest.raises(ValueError, match="binary only"):
        auroc_ci(torch.rand(10, 3), torch.arange(10) % 3)
    with pytest.raises(ValueError, match="non-finite"):
        auroc_ci(torch.tensor([0.1, math.nan, 0.3, 0.4]), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        auroc_ci(torch.rand(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="same length"):
        auroc_ci(torch.rand(4), torch.tensor([0, 1, 1]))


def test_ci_does_not_squash_logits():
    # float32 sigmoid would map these distinct logits to the same probability 1.0
    s = torch.tensor([30.0, 31.0, 32.0, 33.0, 34.0, 35.0], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    for actual, e in zip(auroc_ci(s, y), oracle_ci(s.numpy(), y.numpy(), 0.95)):
        _close(actual, e)


# ---------------------------------------------------------------------------------- auroc_test ---

def test_test_matches_brute_force_delong():
    for seed in range(300):
        rng = np.random.default_rng(5000 + seed)
        y, a = _problem(rng)
        # correlated second model: the first one plus integer noise, sometimes unrelated
        b = a + rng.integers(-2, 3, len(y)) if seed % 3 else rng.integers(0, 4, len(y)).astype(np.float64)
        res = auroc_test(torch.tensor(a), torch.tensor(b), torch.tensor(y))
        assert isinstance(res, AUROCTest)
        assert all(v.dtype == torch.float64 and v.ndim == 0 for v in res)
        for actual, e in zip(res, oracle_test(a, b, y)):
            _close(actual, e)
        assert abs(float(res.auroc_a) - roc_auc_score(y, a)) <= 1e-12
        assert abs(float(res.auroc_b) - roc_auc_score(y, b)) <= 1e-12


def test_test_mixed_shapes_and_logits():
    for seed in range(60):
        rng = np.random.default_rng(9000 + seed)
        y, a = _problem(rng)
        logits = rng.integers(-3, 4, (len(y), 2)).astype(np.float64)
        res = auroc_test(torch.tensor(a)[:, None], torch.tensor(logits, dtype=torch.float32), torch.tensor(y))
        for actual, e in zip(res, oracle_test(a, logits[:, 1] - logits[:, 0], y)):
            _close(actual, e)


def test_test_continuous_against_tied_scores():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 400)
    a = (rng.normal(size=400) + y).astype(np.float32)  # no ties
    b = np.round(a.astype(np.float64) + rng.normal(size=400))  # many ties
    res = auroc_test(torch.tensor(a), torch.tensor(b), torch.tensor(y))
    for actual, e in zip(res, oracle_test(a.astype(np.float64), b, y)):
        _close(actual, e)


def test_identical_rankings_give_z_0_and_p_1():
    rng = np.random.default_rng(2)
    y, s = _problem(rng, 40, 60)
    for other in (s, 3 * s + 1, np.exp(s)):  # same ranking
        r = auroc_test(torch.tensor(s), torch.tensor(other), torch.tensor(y))
        assert float(r.z) == 0.0 and float(r.p_value) == 1.0
        assert float(r.auroc_a) == float(r.auroc_b)


def test_test_is_antisymmetric():
    rng = np.random.default_rng(4)
    y, a = _problem(rng, 50, 60)
    b = a + rng.integers(-2, 3, len(y))
    ab = auroc_test(torch.tensor(a), torch.tensor(b), torch.tensor(y))
    ba = auroc_test(torch.tensor(b), torch.tensor(a), torch.tensor(y))
    assert float(ab.z) == -float(ba.z) and float(ab.p_value) == float(ba.p_value)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 1)), min_size=4, max_size=40),
       st.randoms())
def test_test_permutation_invariant(rows, rnd):
    a = np.array([r[0] for r in rows], dtype=np.float64)
    b = np.array([r[1] for r in rows], dtype=np.float64)
    y = np.array([r[2] for r in rows])
    if not 2 <= y.sum() <= len(y) - 2:
        return
    order = list(range(len(y)))
    rnd.shuffle(order)
    u = auroc_test(torch.tensor(a), torch.tensor(b), torch.tensor(y))
    v = auroc_test(torch.tensor(a[order]), torch.tensor(b[order]), torch.tensor(y[order]))
    for x1, x2 in zip(u, v):
        x1, x2 = float(x1), float(x2)
        assert x1 == x2 or abs(x1 - x2) <= 1e-9 * max(1.0, abs(x1))
    for actual, e in zip(u, oracle_test(a, b, y)):
        _close(actual, e)


def test_test_lengths_must_match():
    with pytest.raises(ValueError, match=r"`preds_a` and `preds_b`.*5 and 6"):
        auroc_test(torch.rand(5), torch.rand(6), torch.arange(5) % 2)
    with pytest.raises(ValueError, match="`preds_b`"):
        auroc_test(torch.rand(5), torch.tensor([0.1, math.inf, 0.2, 0.3, 0.4]), torch.arange(5) % 2)
    with pytest.raises(ValueError, match="`preds_b`.*binary only"):
        auroc_test(torch.rand(6), torch.rand(6, 3), torch.arange(6) % 2)


def test_test_degenerate_cases_warn():
    with pytest.warns(AUROCUndefinedWarning) as record:
        r = auroc_test(torch.rand(6), torch.rand(6), torch.zeros(6))
    assert len(record) == 1 and all(math.isnan(float(v)) for v in r)
    y = [1, 0, 0, 0, 0]
    a, b = np.array([3.0, 1.0, 3.0, 2.0, 0.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    with pytest.warns(AUROCUndefinedWarning) as record:
        r = auroc_test(torch.tensor(a), torch.tensor(b), torch.tensor(y))
    assert len(record) == 1
    assert abs(float(r.auroc_a) - roc_auc_score(y, a)) <= 1e-12 and float(r.auroc_b) == 0.0
    assert math.isnan(float(r.z)) and math.isnan(float(r.p_value))


def test_no_warning_in_the_regular_case():
    rng = np.random.default_rng(8)
    y, a = _problem(rng, 30, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auroc_ci(torch.tensor(a), torch.tensor(y))
        auroc_test(torch.tensor(a), torch.tensor(a[::-1].copy()), torch.tensor(y))


@pytest.mark.parametrize("preds", [[], np.zeros(0), torch.zeros(0, 1), torch.zeros(0, 2)])
def test_empty_input_says_empty_as_auroc_does(preds):
    """No examples is not "one class": NaN everywhere with one warning that says the input is empty, as
    `auroc` says it."""
    with pytest.warns(AUROCUndefinedWarning, match="auroc: empty input"):
        assert math.isnan(float(auroc(preds, [])))
    with pytest.warns(AUROCUndefinedWarning, match=r"^auroc_ci: empty input, AUROC and its interval are undefined") \
            as record:
        r = auroc_ci(preds, [])
    assert len(record) == 1 and "one class" not in str(record[0].message)
    assert isinstance(r, AUROCInterval) and all(math.isnan(float(v)) for v in r)
    with pytest.warns(AUROCUndefinedWarning, match=r"^auroc_test: empty input, the AUROCs and the test are undefined") \
            as record:
        r = auroc_test(preds, preds, [])
    assert len(record) == 1 and "one class" not in str(record[0].message)
    assert isinstance(r, AUROCTest) and all(math.isnan(float(v)) for v in r)


@pytest.mark.parametrize("neg, pos", [("control", "case"), ("case", "control"), (1, 0), (-1, 1)])
def test_labels_by_name_match_brute_force_delong(neg, pos):
    """`target == pos_label` is positive (without it, the greater of two labels, as `auroc`); two columns
    are the sorted labels. Against the brute-force DeLong and scikit-learn on the 0/1 encoding."""
    for seed in range(40):
        rng = np.random.default_rng(5000 + seed)
        y, a = _problem(rng)
        b = rng.integers(0, 4, len(y)).astype(np.float64)
        t = np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y]
        res = auroc_ci(torch.tensor(a), t, pos_label=pos)
        for actual, expected in zip(res, oracle_ci(a, y, 0.95)):
            _close(actual, expected)
        assert abs(float(res.auroc) - roc_auc_score(t == pos, a)) <= 1e-12
        columns = np.stack([np.zeros_like(a), a], 1)
        columns = columns if neg < pos else columns[:, ::-1].copy()
        for actual, expected in zip(auroc_ci(columns, list(t), pos_label=pos), oracle_ci(a, y, 0.95)):
            _close(actual, expected)
        for actual, expected in zip(auroc_test(torch.tensor(a), b, t, pos_label=pos), oracle_test(a, b, y)):
            _close(actual, expected)
        if isinstance(neg, str) and neg < pos:  # without pos_label: the greater label is positive
            for actual, expected in zip(auroc_test(a, b, t), oracle_test(a, b, y)):
                _close(actual, expected)
