"""best_threshold against a brute-force oracle written here (numpy, independent of the package)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastai_aum.functional import BestThreshold, best_threshold

CRITERIA = ["youden", "balanced_accuracy", "f1", "accuracy", "cost", "tpr", "tnr"]
COSTS = [0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 0.0]
NEEDED = {"tpr": "max_fpr", "tnr": "min_tpr"}  # the constraint each of these criteria requires


def _constrained(criterion, value=0.5):
    """The options a criterion needs: a false-positive budget for 'tpr', a TPR floor for 'tnr'."""
    return {NEEDED[criterion]: value} if criterion in NEEDED else {}


# ------------------------------------------------------------------------------------- the oracle ---

def _value(criterion, tp, fp, fn, tn, cost_fp, cost_fn):
    """The criterion from confusion counts, as the brief defines it (larger is better except cost)."""
    p, n = tp + fn, fp + tn
    if criterion == "youden":
        return tp / p - fp / n
    if criterion == "balanced_accuracy":
        return (tp / p + tn / n) / 2
    if criterion == "f1":
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    if criterion == "accuracy":
        return (tp + tn) / (p + n)
    if criterion == "cost":
        return (cost_fp * fp + cost_fn * fn) / (p + n)
    if criterion == "tpr":
        return tp / p
    if criterion == "tnr":
        return tn / n
    raise AssertionError(criterion)


def _counts(s, y, predicted):
    tp = int(np.sum(predicted & y))
    fp = int(np.sum(predicted & ~y))
    return tp, fp, int(y.sum()) - tp, int((~y).sum()) - fp


def brute_force(s, y, criterion, cost_fp=1.0, cost_fn=1.0, max_fpr=None, min_tpr=None):
    """Every candidate `score > v` (v each distinct score, and -inf): (best value, number of predicted
    positives of each optimal cut), or None when no cut satisfies the constraints."""
    sign = -1 if criterion == "cost" else 1
    cuts = []
    for v in list(np.unique(s)) + [-np.inf]:
        predicted = s > v
        tp, fp, fn, tn = _counts(s, y, predicted)
        if max_fpr is not None and fp / (fp + tn) > max_fpr:
            continue
        if min_tpr is not None and tp / (tp + fn) < min_tpr:
            continue
        cuts.append((sign * _value(criterion, tp, fp, fn, tn, cost_fp, cost_fn), int(predicted.sum())))
    if not cuts:
        return None
    best = max(c[0] for c in cuts)
    return sign * best, {k for val, k in cuts if val >= best - 1e-12}


def _random_case(rng):
    n = int(rng.integers(2, 41))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[rng.integers(n)] = True
    y[(np.flatnonzero(y)[0] + 1 + int(rng.integers(n - 1))) % n] = False  # both classes, always
    kind = rng.integers(3)
    if kind == 0:
        s = rng.integers(-3, 4, n).astype(np.float64)  # many ties
    elif kind == 1:
        s = rng.integers(-20, 21, n) * 0.25
    else:
        s = rng.normal(size=n)
    return s, y


def _random_options(rng, criterion):
    opts = {}
    if criterion == "cost":
        opts["cost_fp"], opts["cost_fn"] = (float(c) for c in rng.choice(COSTS[:-1], 2))
        if rng.random() < 0.2:
            opts["cost_fp" if rng.random() < 0.5 else "cost_fn"] = 0.0
    which = rng.integers(4)
    rates = [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.8, 1.0]
    if which in (1, 3):
        opts["max_fpr"] = float(rng.choice(rates)) if rng.random() < 0.7 else float(rng.random())
    if which in (2, 3):
        opts["min_tpr"] = float(rng.choice(rates)) if rng.random() < 0.7 else float(rng.random())
    return opts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_matches_brute_force(criterion, dtype):
    rng = np.random.default_rng(CRITERIA.index(criterion) * 10 + (dtype == torch.float64))
    checked = infeasible = 0
    for _ in range(250):
        s, y = _random_case(rng)
        opts = _random_options(rng, criterion)
        s_t = torch.tensor(s, dtype=dtype)
        if criterion in NEEDED and NEEDED[criterion] not in opts:  # required: without it, an error
            with pytest.raises(ValueError, match=rf"criterion '{criterion}' needs `{NEEDED[criterion]}`"):
                best_threshold(s_t, torch.tensor(y), criterion, **opts)
            opts[NEEDED[criterion]] = 1.0 if criterion == "tpr" else 0.0  # no constraint, said explicitly
        s = s_t.double().numpy()  # the values the package sees
        expected = brute_force(s, y, criterion, **opts)
        if expected is None:
            with pytest.raises(ValueError, match="`max_fpr`.*`min_tpr`"):
                best_threshold(s_t, torch.tensor(y), criterion, **opts)
            infeasible += 1
            continue
        best, optimal_sizes = expected
        r = best_threshold(s_t, torch.tensor(y), criterion, **opts)
        assert isinstance(r, BestThreshold)
        assert r.threshold.dtype == dtype and r.threshold.ndim == 0
        for t in (r.value, r.tpr, r.fpr):
            assert t.dtype == torch.float64 and t.ndim == 0
        # (a) the optimum
        assert float(r.value) == pytest.approx(best, abs=1e-12), (s, y, opts)
        # (b) `score > threshold` reproduces the cut, compared as a tensor and as a Python float
        predicted = (s_t > r.threshold).numpy()
        assert np.array_equal(predicted, (s_t > float(r.threshold)).numpy())
        assert np.array_equal(predicted, s > float(r.threshold))
        tp, fp, fn, tn = _counts(s, y, predicted)
        assert float(r.tpr) == tp / (tp + fn) and float(r.fpr) == fp / (fp + tn)
        assert float(r.value) == pytest.approx(
            _value(criterion, tp, fp, fn, tn, opts.get("cost_fp", 1.0), opts.get("cost_fn", 1.0)), abs=1e-12)
        # (c) among the optima, the highest threshold: the fewest predicted positives
        assert int(predicted.sum()) == min(optimal_sizes), (s, y, opts)
        checked += 1
    assert checked > 150


def test_extreme_thresholds_are_infinite():
    s, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 0, 0])  # ranked backwards
    assert best_threshold(s, y, "accuracy").threshold == math.inf  # predict nothing positive (2/3)
    assert best_threshold(s, y, "tpr", max_fpr=1.0).threshold == -math.inf  # TPR 1 needs everything positive
    assert best_threshold(s, y, "tnr", min_tpr=0.0).threshold == math.inf
    r = best_threshold(s, y, "tpr", max_fpr=0.0)
    assert r.threshold == math.inf and r.tpr == 0 and r.fpr == 0


def test_cost_ties_despite_rounding():
    # Predicting nothing positive costs 3 * 0.1 = 0.30000000000000004, everything 1 * 0.3: equal
    # mathematically, so the higher threshold wins although float64 rounds them apart.
    s, y = torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([0, 1, 1, 1])
    r = best_threshold(s, y, "cost", cost_fp=0.3, cost_fn=0.1)
    assert r.threshold == math.inf and float(r.value) == pytest.approx(0.075, abs=1e-15)


# ---------------------------------------------------------------------------- the threshold value ---

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lo", [0.0, 1.0, -1.0, 1e-30, -3.5e5, 1e30, 1.1754944e-38, 5e-324])
def test_threshold_between_adjacent_floats(lo, dtype):
    lo_t = torch.tensor(lo, dtype=dtype)
    hi_t = torch.nextafter(lo_t, torch.tensor(math.inf, dtype=dtype))
    assert lo_t < hi_t
    s = torch.stack([lo_t, hi_t, lo_t, hi_t])
    y = torch.tensor([0, 1, 0, 1])
    r = best_threshold(s, y, "youden")
    assert r.threshold.dtype == dtype
    assert lo_t <= r.threshold < hi_t
    assert r.threshold == lo_t  # no value lies strictly between
    for t in (r.threshold, float(r.threshold)):
        assert torch.equal(s > t, y.bool())
    assert float(r.value) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_is_a_midpoint_where_one_exists(dtype):
    s = torch.tensor([0.0, 1.0, 3.0e38 if dtype == torch.float32 else 1.7e308], dtype=dtype)
    y = torch.tensor([0, 1, 1])
    r = best_threshold(s, y, "accuracy")
    assert r.threshold == 0.5
    s = torch.tensor([-1.7e308 if dtype == torch.float64 else -3.0e38, 1.0, 3.0], dtype=dtype)
    r = best_threshold(s, torch.tensor([0, 0, 1]), "accuracy")
    assert r.threshold == 2.0
    r = best_threshold(s, torch.tensor([0, 1, 1]), "accuracy")  # the midpoint of +-huge values is finite
    assert math.isfinite(r.threshold) and s[0] <= r.threshold < s[1]
    assert torch.equal(s > r.threshold, torch.tensor([False, True, True]))


def test_negative_zero_ties_with_zero():
    s = torch.tensor([-0.0, 0.0, 1.0])
    r = best_threshold(s, torch.tensor([0, 0, 1]), "accuracy")
    assert float(r.value) == 1.0 and torch.equal(s > r.threshold, torch.tensor([False, False, True]))


# --------------------------------------------------------------------------------- input formats ---

def test_two_column_logits_equal_the_score_difference():
    rng = np.random.default_rng(7)
    for _ in range(30):
        s, y = _random_case(rng)
        z0 = rng.integers(-5, 6, len(s)).astype(np.float64)
        logits = torch.tensor(np.stack([z0, z0 + s], 1))
        s = (z0 + s) - z0  # the score the two columns hold, as float64 computes it
        for criterion in CRITERIA:
            opts = _constrained(criterion)
            a = best_threshold(torch.tensor(s), torch.tensor(y), criterion, **opts)
            b = best_threshold(logits, torch.tensor(y), criterion, **opts)
            c = best_threshold(torch.tensor(s)[:, None], torch.tensor(y).long(), criterion, **opts)
            assert b.threshold.dtype == torch.float64
            for other in (b, c):
                assert all(torch.equal(u, v) for u, v in zip(a, other))
    z = torch.tensor([[0.5, 0.25], [0.0, 1.0]], dtype=torch.float32)  # float32 logits: score in float64
    assert best_threshold(z, torch.tensor([0, 1])).threshold.dtype == torch.float64


def test_dtypes_of_the_threshold():
    y = torch.tensor([0, 1, 0, 1])
    assert best_threshold(torch.tensor([1, 2, 3, 4]), y).threshold.dtype == torch.float64
    assert best_threshold(torch.tensor([1.0, 2, 3, 4]).half(), y).threshold.dtype == torch.float32
    assert best_threshold(torch.tensor([1.0, 2, 3, 4]), y.bool()).threshold.dtype == torch.float32


def test_gradients_are_not_needed():
    s = torch.tensor([0.1, 0.7, 0.3], requires_grad=True)
    r = best_threshold(s, torch.tensor([0, 1, 0]))
    assert not r.threshold.requires_grad and r.threshold == pytest.approx(0.5)


# ------------------------------------------------------------------------------------- invariances ---

scores = st.lists(st.integers(-4, 4), min_size=2, max_size=30)


@settings(max_examples=150)
@given(data=st.data(), values=scores, criterion=st.sampled_from(CRITERIA))
def test_permutation_invariance(data, values, criterion):
    n = len(values)
    y = data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < n))
    perm = data.draw(st.permutations(range(n)))
    s, y = torch.tensor(values, dtype=torch.float32) / 2, torch.tensor(y)
    opts = _constrained(criterion)
    a, b = best_threshold(s, y, criterion, **opts), best_threshold(s[list(perm)], y[list(perm)], criterion, **opts)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@settings(max_examples=150)
@given(data=st.data(), values=scores, criterion=st.sampled_from(CRITERIA),
       transform=st.sampled_from(["exp", "affine", "cube"]))
def test_invariant_under_increasing_transform(data, values, criterion, transform):
    n = len(values)
    y = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < n)))
    s = torch.tensor(values, dtype=torch.float64)
    u = {"exp": lambda x: torch.exp(x / 3), "affine": lambda x: 2.5 * x - 7, "cube": lambda x: x ** 3 + x}[transform](s)
    opts = _constrained(criterion)
    a, b = best_threshold(s, y, criterion, **opts), best_threshold(u, y, criterion, **opts)
    assert torch.equal(s > a.threshold, u > b.threshold)
    assert a.value == b.value and a.tpr == b.tpr and a.fpr == b.fpr


# ------------------------------------------------------------------------------------------ errors ---

@pytest.mark.parametrize("call, pattern", [
    (lambda: best_threshold(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])), r"`preds`.*\(5, 3\)"),
    (lambda: best_threshold(torch.randn(4), torch.tensor([1, 1, 1, 1])), "both classes"),
    (lambda: best_threshold(torch.randn(4), torch.zeros(4, dtype=torch.bool)), "both classes"),
    (lambda: best_threshold(torch.randn(0), torch.zeros(0)), "empty.*nothing"),
    (lambda: best_threshold(torch.tensor([0.1, math.nan]), torch.tensor([0, 1])), "`preds`.*non-finite"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 2])), "`target`"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), "auc"), "`criterion`.*'youden'.*'auc'"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), max_fpr=1.5), "`max_fpr`.*1.5"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), max_fpr=True), "`max_fpr`"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), min_tpr=-0.1), "`min_tpr`.*-0.1"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), "cost", cost_fp=-1), "`cost_fp`.*-1"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), "cost", cost_fn=math.nan), "`cost_fn`"),
    (lambda: best_threshold(torch.randn(2), torch.tensor([0, 1]), "cost", cost_fp=0, cost_fn=0),
     "`cost_fp` and `cost_fn`"),
    (lambda: best_threshold(torch.tensor([1.0, 0.0]), torch.tensor([0, 1]), max_fpr=0.0, min_tpr=1.0),
     "`max_fpr`.*`min_tpr`"),
    (lambda: best_threshold(torch.randn(4), torch.tensor([0, 1, 0, 1]), "tpr"),
     r"criterion 'tpr' needs `max_fpr` \(the false positive rate allowed.*got max_fpr=None"),
    (lambda: best_threshold(torch.randn(4), torch.tensor([0, 1, 0, 1]), "tpr", min_tpr=0.5),
     r"criterion 'tpr' needs `max_fpr`"),
    (lambda: best_threshold(torch.randn(4), torch.tensor([0, 1, 0, 1]), "tnr"),
     r"criterion 'tnr' needs `min_tpr` \(the true positive rate required.*got min_tpr=None"),
    (lambda: best_threshold(torch.randn(4), torch.tensor([0, 1, 0, 1]), "tnr", max_fpr=0.5),
     r"criterion 'tnr' needs `min_tpr`"),
])
def test_errors_name_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.cuda
def test_same_on_cuda():
    g = torch.Generator().manual_seed(3)
    s = torch.randint(-5, 6, (2000,), generator=g).float()
    y = torch.randint(0, 2, (2000,), generator=g)
    for criterion in CRITERIA:
        opts = {"max_fpr": 0.4, **({"min_tpr": 0.0} if criterion == "tnr" else {})}  # 'tnr' needs min_tpr
        a, b = best_threshold(s, y, criterion, **opts), best_threshold(s.cuda(), y.cuda(), criterion, **opts)
        assert b.threshold.device.type == "cuda"
        assert all(torch.equal(u, v.cpu()) for u, v in zip(a, b))


@pytest.mark.parametrize("neg, pos", [("stay", "churn"), ("churn", "stay"), (1, 0), (2, 5)])
def test_labels_by_name_match_brute_force(neg, pos):
    """`target == pos_label` is the positive class; two columns are the sorted labels, the score
    `z_pos - z_other`."""
    rng = np.random.default_rng(11)
    for _ in range(60):
        s, y = _random_case(rng)
        criterion = CRITERIA[int(rng.integers(len(CRITERIA)))]
        opts = {**_constrained(criterion), **({"cost_fp": 0.3} if criterion == "cost" else {})}
        t = np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y.astype(np.int64)]
        best, sizes = brute_force(s, t == pos, criterion, **opts)
        r = best_threshold(s, t, criterion, pos_label=pos, **opts)
        assert float(r.value) == pytest.approx(best, abs=1e-12)
        assert int((s > float(r.threshold)).sum()) == min(sizes)
        columns = np.stack([np.zeros_like(s), s], 1)
        columns = columns if neg < pos else columns[:, ::-1].copy()
        assert all(torch.equal(u, v) for u, v in zip(best_threshold(columns, list(t), criterion, pos_label=pos, **opts),
                                                     best_threshold(columns if neg < pos else columns[:, ::-1].copy(),
                                                                    torch.tensor(y), criterion, **opts)))
    with pytest.raises(ValueError, match=r"`target` takes labels \['a', 'b'\] and `pos_label` is not given"):
        best_threshold(torch.rand(4), ["a", "b", "a", "b"])
