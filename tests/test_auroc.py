"""`fastai_aum.functional.auroc` against `sklearn.metrics.roc_auc_score` (float64, 1e-9)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import auroc, roc_curve
from oracles import softmax64

TOL = 1e-9


def _auroc_quiet(*args, **kwargs) -> torch.Tensor:
    """auroc, failing the test on any warning (none is expected where AUROC is defined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return auroc(*args, **kwargs)


def _tied_binary(n, seed, n_levels=5, p_pos=0.3):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, n_levels, n).astype(np.float64)
    labels = (rng.random(n) < p_pos).astype(np.int64)
    return scores, labels


def _tied_probabilities(n, k, seed):
    """(N, K) probability rows with many repeated values within and across rows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, (n, k)).astype(np.float64)
    return counts / counts.sum(1, keepdims=True)


def _multiclass_labels(n, k, seed):
    rng = np.random.default_rng(seed + 1000)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every class present
    return rng.permutation(y)


# --------------------------------------------------------------------------------- binary ---

@pytest.mark.parametrize("n", [1, 2, 3, 10, 100, 1000, 100_000])
def test_binary_heavy_ties(n):
    for seed in [0, 1, 2, 3]:
        s, y = _tied_binary(n, seed)
        if y.min() == y.max():  # one class: undefined
            with pytest.warns(AUROCUndefinedWarning):
                got = auroc(torch.from_numpy(s), torch.from_numpy(y))
            assert math.isnan(float(got))
            continue
        got = _auroc_quiet(torch.from_numpy(s), torch.from_numpy(y))
        assert got.dtype == torch.float64 and got.shape == ()
        assert float(got) == pytest.approx(roc_auc_score(y, s), abs=TOL)


def test_binary_both_branches_exercised():
    """The small-N parametrisation above really sees both one-class and two-class draws."""
    one_class = [(n, seed) for n in (2, 3) for seed in range(4) if len(set(_tied_binary(n, seed)[1])) == 1]
    assert 0 < len(one_class) < 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_binary_dtypes(dtype):
    for seed in range(5):
        s, y = _tied_binary(500, seed, n_levels=7)
        s = s - 3
        t = torch.from_numpy(s).to(dtype)
        assert np.array_equal(t.double().numpy(), s)  # small integers are exact in every dtype
        got = _auroc_quiet(t, torch.from_numpy(y))
        assert got.dtype == torch.float64
        assert float(got) == pytest.approx(roc_auc_score(y, s), abs=TOL)


def test_binary_continuous_float32():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        s = rng.normal(size=5000).astype(np.float32)
        y = rng.integers(0, 2, 5000)
        got = _auroc_quiet(torch.from_numpy(s), torch.from_numpy(y))
        assert float(got) == pytest.approx(roc_auc_score(y, s.astype(np.float64)), abs=TOL)


@pytest.mark.parametrize("max_fpr", [0.1, 0.3, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("n", [10, 200, 5000])
def test_binary_max_fpr(max_fpr, n):
    for seed in range(4):
        s, y = _tied_binary(n, seed, n_levels=6, p_pos=0.4)
        if y.min() == y.max():
            continue
        expected = roc_auc_score(y, s, max_fpr=max_fpr)
        t = torch.from_numpy(s)
        for preds in (t, t[:, None], torch.stack([-t / 2, t / 2], 1)):  # (N,), (N, 1), (N, 2) logits
            got = _auroc_quiet(preds, torch.from_numpy(y), max_fpr=max_fpr)
            assert float(got) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("max_fpr", [0.05, 0.25, 0.5])
def test_binary_max_fpr_continuous(max_fpr):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 3000)
    s = rng.normal(size=3000) + y
    got = _auroc_quiet(torch.from_numpy(s), torch.from_numpy(y), max_fpr=max_fpr)
    expected = roc_auc_score(y, s, max_fpr=max_fpr)
    assert float(got) == pytest.approx(expected, abs=TOL)
    assert abs(expected - roc_auc_score(y, s)) > 1e-3  # partial AUROC really differs from the full one


def test_binary_shapes_n1_and_n():
    for seed in range(4):
        s, y = _tied_binary(300, seed)
        expected = roc_auc_score(y, s)
        t, yt = torch.from_numpy(s), torch.from_numpy(y)
        for preds in (t, t[:, None]):
            for target in (yt, yt[:, None], yt.float(), yt.bool()):
                assert float(_auroc_quiet(preds, target)) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_n2_logits_with_ties(dtype):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        z = rng.integers(-3, 4, (400, 2)).astype(np.float64)  # integer logits: many tied differences
        y = rng.integers(0, 2, 400)
        got = float(_auroc_quiet(torch.from_numpy(z).to(dtype), torch.from_numpy(y)))
        assert got == pytest.approx(roc_auc_score(y, z[:, 1] - z[:, 0]), abs=TOL)
        assert got == pytest.approx(roc_auc_score(y, softmax64(z)[:, 1]), abs=TOL)


def test_binary_n2_logits_continuous():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        z = (rng.normal(size=(2000, 2)) * 4).astype(np.float32)
        y = rng.integers(0, 2, 2000)
        z64 = z.astype(np.float64)
        got = float(_auroc_quiet(torch.from_numpy(z), torch.from_numpy(y)))
        assert got == pytest.approx(roc_auc_score(y, z64[:, 1] - z64[:, 0]), abs=TOL)
        assert got == pytest.approx(roc_auc_score(y, softmax64(z64)[:, 1]), abs=TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_n2_probabilities(dtype):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        p1 = rng.integers(0, 11, 600) / 10  # ties, and 0 and 1 included
        p = np.stack([1 - p1, p1], axis=1)
        y = rng.integers(0, 2, 600)
        got = _auroc_quiet(torch.from_numpy(p).to(dtype), torch.from_numpy(y))
        assert float(got) == pytest.approx(roc_auc_score(y, torch.from_numpy(p).to(dtype)[:, 1].double().numpy()),
                                           abs=TOL)


def _large_logits(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    s = np.where(y == 1, rng.uniform(15, 40, n), rng.uniform(10, 35, n)).astype(np.float32)
    assert len(np.unique(s)) == n  # distinct values
    return s, y


def test_large_logits_not_squashed():
    s, y = _large_logits()
    exact = roc_auc_score(y, s.astype(np.float64))
    naive = roc_auc_score(y, torch.sigmoid(torch.from_numpy(s)).numpy())
    assert abs(exact - naive) > 0.05  # float32 sigmoid creates false ties: the naive way is wrong
    got = float(_auroc_quiet(torch.from_numpy(s), torch.from_numpy(y)))
    assert got == pytest.approx(exact, abs=TOL)
    assert got != pytest.approx(naive, abs=1e-3)


def test_large_logits_n2_not_squashed():
    s, y = _large_logits(seed=1)
    rng = np.random.default_rng(5)
    z0 = rng.uniform(-3, 3, len(s)).astype(np.float32)
    z = np.stack([z0, z0 + s], axis=1).astype(np.float32)
    z64 = z.astype(np.float64)
    exact = roc_auc_score(y, z64[:, 1] - z64[:, 0])
    naive = roc_auc_score(y, torch.softmax(torch.from_numpy(z), dim=1)[:, 1].numpy())
    assert abs(exact - naive) > 0.05
    got = float(_auroc_quiet(torch.from_numpy(z), torch.from_numpy(y)))
    assert got == pytest.approx(exact, abs=TOL)


def test_large_multiclass_logits_not_squashed():
    """Each row has one winning class, ahead by 10 to 30: float32 softmax rounds many winners to 1.0."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n, k = 1500, 3
        y = rng.integers(0, k, n)
        winner = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
        gap = np.where(winner == y, rng.uniform(15, 30, n), rng.uniform(10, 25, n))
        z = rng.uniform(-1, 1, (n, k))
        z[np.arange(n), winner] += gap
        z = z.astype(np.float32)
        p64 = softmax64(z.astype(np.float64))
        onehot = label_binarize(y, classes=range(k))
        naive_p = torch.softmax(torch.from_numpy(z), 1).double().numpy()
        for avg in ("macro", "weighted", "micro"):
            exact = roc_auc_score(y, p64, multi_class="ovr", average=avg)
            # float64 probabilities have no false ties here: ranking by log-probabilities agrees
            assert exact == pytest.approx(roc_auc_score(onehot, np.log(p64), average=avg), abs=TOL)
            naive = roc_auc_score(onehot, naive_p, average=avg)
            assert abs(exact - naive) > 1e-3  # the float32 softmax is wrong, so this test can fail
            got = float(_auroc_quiet(torch.from_numpy(z), torch.from_numpy(y), average=avg))
            assert got == pytest.approx(exact, abs=TOL), avg
        for avg in ("macro", "weighted"):
            got = float(_auroc_quiet(torch.from_numpy(z), torch.from_numpy(y), average=avg, multi_class="ovo"))
            assert got == pytest.approx(roc_auc_score(y, p64, multi_class="ovo", average=avg), abs=TOL), avg


# ----------------------------------------------------------------------------- multiclass ---

@pytest.mark.parametrize("k", [3, 4, 7])
@pytest.mark.parametrize("n", [20, 500])
def test_multiclass_probabilities_with_ties(k, n):
    for seed in range(3):
        p = _tied_probabilities(n, k, seed)
        y = _multiclass_labels(n, k, seed)
        P, Y = torch.from_numpy(p), torch.from_numpy(y)
        for avg in ("macro", "weighted", "micro"):
            got = _auroc_quiet(P, Y, average=avg, multi_class="ovr")
            assert float(got) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average=avg), abs=TOL), avg
        per_class = _auroc_quiet(P, Y, average=None)
        assert per_class.shape == (k,) and per_class.dtype == torch.float64
        np.testing.assert_allclose(per_class.numpy(), roc_auc_score(y, p, multi_class="ovr", average=None),
                                   atol=TOL, rtol=0)
        for avg in ("macro", "weighted"):
            got = _auroc_quiet(P, Y, average=avg, multi_class="ovo")
            assert float(got) == pytest.approx(roc_auc_score(y, p, multi_class="ovo", average=avg), abs=TOL), avg


@pytest.mark.parametrize("k", [3, 7])
def test_multiclass_probabilities_with_ties_large_n(k):
    n = 100_000
    p = _tied_probabilities(n, k, 9)
    y = _multiclass_labels(n, k, 9)
    P, Y = torch.from_numpy(p), torch.from_numpy(y)
    for avg in ("macro", "weighted", "micro"):
        got = _auroc_quiet(P, Y, average=avg)
        assert float(got) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average=avg), abs=TOL), avg


@pytest.mark.parametrize("k", [3, 4, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multiclass_logits(k, dtype):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n = 400
        y = _multiclass_labels(n, k, seed)
        z = rng.normal(size=(n, k)) * 2
        z[np.arange(n), y] += 1.0
        z = torch.from_numpy(z).to(dtype)
        p = softmax64(z.double().numpy())
        Y = torch.from_numpy(y)
        for avg in ("macro", "weighted", "micro"):
            got = _auroc_quiet(z, Y, average=avg)
            assert float(got) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average=avg), abs=TOL), avg
        np.testing.assert_allclose(_auroc_quiet(z, Y, average=None).numpy(),
                                   roc_auc_score(y, p, multi_class="ovr", average=None), atol=TOL, rtol=0)
        for avg in ("macro", "weighted"):
            got = _auroc_quiet(z, Y, average=avg, multi_class="ovo")
            assert float(got) == pytest.approx(roc_auc_score(y, p, multi_class="ovo", average=avg), abs=TOL), avg


@pytest.mark.parametrize("k", [3, 4, 7])
def test_probability_matrix_is_not_softmaxed_again(k):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n = 300
        y = _multiclass_labels(n, k, seed)
        p = rng.dirichlet(np.ones(k) * 0.5, size=n)
        twice = softmax64(p)
        P, Y = torch.from_numpy(p), torch.from_numpy(y)
        for avg in ("macro", "weighted", "micro"):
            expected = roc_auc_score(y, p, multi_class="ovr", average=avg)
            assert abs(expected - roc_auc_score(y, twice, multi_class="ovr", average=avg)) > 1e-6  # test can fail
            assert float(_auroc_quiet(P, Y, average=avg)) == pytest.approx(expected, abs=TOL), avg
            # float32 probabilities (rows sum to 1 within float32 rounding) are used as they are too
            p32 = P.float()
            expected32 = roc_auc_score(label_binarize(y, classes=range(k)), p32.double().numpy(), average=avg)
            assert float(_auroc_quiet(p32, Y, average=avg)) == pytest.approx(expected32, abs=TOL), avg
        for avg in ("macro", "weighted"):
            expected = roc_auc_score(y, p, multi_class="ovo", average=avg)
            assert float(_auroc_quiet(P, Y, average=avg, multi_class="ovo")) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("k", [3, 5, 10])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_probability_matrix_is_not_softmaxed_again(k, dtype):
    """Softmax outputs stored in fp16/bf16 (e.g. under autocast) are probabilities: rank them as they are.

    Their rows sum to 1 only within the dtype's rounding (bf16: about 3e-3 for these draws)."""
    g = torch.Generator().manual_seed(k)
    y = torch.randint(0, k, (1000,), generator=g)
    p = torch.softmax(torch.randn(1000, k, generator=g) * 2, 1).to(dtype)
    p64 = p.double().numpy()
    onehot = label_binarize(y.numpy(), classes=range(k))
    for avg in ("macro", "weighted", "micro"):
        expected = roc_auc_score(onehot, p64, average=avg)  # the input's own values, as they are
        assert abs(expected - roc_auc_score(onehot, softmax64(p64), average=avg)) > 1e-4  # test can fail
        got = float(_auroc_quiet(p, y, average=avg))
        assert got == pytest.approx(expected, abs=TOL), (avg, got, expected)


def test_multiclass_missing_class_ovr():
    rng = np.random.default_rng(3)
    k, n = 5, 400
    present = [0, 1, 3, 4]
    y = rng.choice(present, n)
    p = rng.dirichlet(np.ones(k), size=n)
    P, Y = torch.from_numpy(p), torch.from_numpy(y)
    onehot = label_binarize(y, classes=range(k))
    with pytest.raises(ValueError):  # sklearn itself refuses the multiclass form
        roc_auc_score(y, p, multi_class="ovr")
    for avg in ("macro", "weighted"):
        # sklearn on the present classes' columns only (multilabel form: no sum-to-one requirement)
        expected = roc_auc_score(onehot[:, present], p[:, present], average=avg)
        with pytest.warns(AUROCUndefinedWarning, match=r"\[2\]"):
            got = auroc(P, Y, average=avg)
        assert float(got) == pytest.approx(expected, abs=TOL), avg
    # the same, spelled out: the plain mean of the present classes' binary AUROCs
    macro = np.mean([roc_auc_score(onehot[:, c], p[:, c]) for c in present])
    with pytest.warns(AUROCUndefinedWarning):
        assert float(auroc(P, Y, average="macro")) == pytest.approx(macro, abs=TOL)
    with pytest.warns(AUROCUndefinedWarning):
        per_class = auroc(P, Y, average=None).numpy()
    assert per_class.shape == (k,)
    assert math.isnan(per_class[2])
    for c in present:
        assert per_class[c] == pytest.approx(roc_auc_score(onehot[:, c], p[:, c]), abs=TOL)
    # micro pools every column, the absent one included (as sklearn does when told the labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_micro = roc_auc_score(y, p, multi_class="ovr", average="micro", labels=list(range(k)))
    assert float(auroc(P, Y, average="micro")) == pytest.approx(expected_micro, abs=TOL)


def test_multiclass_missing_class_ovo():
    rng = np.random.default_rng(4)
    k, n = 4, 300
    y = rng.choice([0, 2, 3], n)
    p = rng.dirichlet(np.ones(k), size=n)
    for avg in ("macro", "weighted"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = roc_auc_score(y, p, multi_class="ovo", average=avg, labels=list(range(k)))
        with pytest.warns(AUROCUndefinedWarning):
            got = auroc(torch.from_numpy(p), torch.from_numpy(y), multi_class="ovo", average=avg)
        assert float(got) == pytest.approx(expected, abs=TOL), avg


def test_multiclass_one_class_present():
    p = torch.softmax(torch.randn(10, 3, generator=torch.Generator().manual_seed(0)), 1)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.warns(AUROCUndefinedWarning):
        assert math.isnan(float(auroc(p, y, average="macro")))
    with pytest.warns(AUROCUndefinedWarning):
        assert torch.isnan(auroc(p, y, average=None)).all()


# --------------------------------------------------------------------------- input kinds ---

def test_numpy_arrays_and_lists_accepted():
    s, y = _tied_binary(200, 11)
    expected = roc_auc_score(y, s)
    for preds, target in [(s, y), (s.tolist(), y.tolist()), (s.astype(np.float32), y.astype(np.int32)),
                          (torch.from_numpy(s), y), (s, torch.from_numpy(y)), (s.astype(np.int64), y)]:
        got = _auroc_quiet(preds, target)
        assert isinstance(got, torch.Tensor)
        assert float(got) == pytest.approx(expected, abs=TOL)
    p = _tied_probabilities(100, 4, 0)
    yk = _multiclass_labels(100, 4, 0)
    expected = roc_auc_score(yk, p, multi_class="ovr")
    assert float(_auroc_quiet(p, yk)) == pytest.approx(expected, abs=TOL)
    assert float(_auroc_quiet(p.tolist(), yk.tolist())) == pytest.approx(expected, abs=TOL)


# ------------------------------------------------------------------------------ roc_curve ---

def _sklearn_roc(y, s):
    from sklearn.metrics import roc_curve as sk_roc_curve
    return sk_roc_curve(y, s, drop_intermediate=False)


@pytest.mark.parametrize("n", [5, 50, 2000])
def test_roc_curve_points_match_sklearn(n):
    """Ties grouped: one point per distinct score, as sklearn's roc_curve(drop_intermediate=False)."""
    for seed in range(4):
        s, y = _tied_binary(n, seed, n_levels=8, p_pos=0.5)
        if y.min() == y.max():
            continue
        fpr, tpr, thr = _sklearn_roc(y, s)
        for preds in (torch.from_numpy(s), torch.from_numpy(np.stack([np.zeros(n), s], 1))):
            roc = roc_curve(preds, torch.from_numpy(y))
            np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
            np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
            np.testing.assert_allclose(roc.fnr.numpy(), 1 - tpr, atol=TOL, rtol=0)
            # point j holds for constants c in (min_constant[j], max_constant[j]); the thresholds are -score
            np.testing.assert_allclose(roc.max_constant.numpy()[:-1], -thr[1:], atol=TOL, rtol=0)
            np.testing.assert_allclose(roc.min_constant.numpy()[1:], -thr[1:], atol=TOL, rtol=0)
            assert roc.min_constant[0] == -math.inf and roc.max_constant[-1] == math.inf
            # trapezoids under the curve give sklearn's AUROC
            assert float(torch.trapezoid(roc.tpr, roc.fpr)) == pytest.approx(roc_auc_score(y, s), abs=TOL)


def test_roc_curve_multiclass_one_per_class():
    k, n = 4, 300
    p = _tied_probabilities(n, k, 2)
    y = _multiclass_labels(n, k, 2)
    rocs = roc_curve(torch.from_numpy(p), torch.from_numpy(y))
    assert isinstance(rocs, list) and len(rocs) == k
    for c, roc in enumerate(rocs):
        fpr, tpr, _ = _sklearn_roc((y == c).astype(int), p[:, c])
        np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)


def test_validate_false_gives_the_same_numbers():
    for seed in range(3):
        s, y = _tied_binary(400, seed)
        p = _tied_probabilities(400, 3, seed)
        yk = _multiclass_labels(400, 3, seed)
        assert float(auroc(s, y, validate=False)) == pytest.approx(roc_auc_score(y, s), abs=TOL)
        assert float(auroc(p, yk, validate=False)) == pytest.approx(roc_auc_score(yk, p, multi_class="ovr"), abs=TOL)
        partial = float(auroc(s, y, max_fpr=0.3, validate=False))
        assert partial == pytest.approx(roc_auc_score(y, s, max_fpr=0.3), abs=TOL)


# ------------------------------------------------------------- the three ways to count ties ---

@pytest.mark.parametrize("grouped_from", [0, 16, 10**12], ids=["per_tied_element", "default", "per_threshold"])
@pytest.mark.parametrize("decimals", [1, 2, 4, None])
def test_every_tie_path_matches_sklearn(monkeypatch, grouped_from, decimals):
    """Untied rows take one product per element; few ties, bookkeeping per tied element; many, one trapezoid
    per distinct threshold. Forced each way: binary, weighted, ovr (batched rows) and multi-label, = sklearn."""
    import fastai_aum.functional._auc as auc_module
    monkeypatch.setattr(auc_module, "_GROUPED_FROM", grouped_from)
    rng = np.random.default_rng(7 if decimals is None else decimals)
    n = 3000
    y = (rng.random(n) < 0.2).astype(np.int64)
    s = rng.normal(size=n) + y
    s = s if decimals is None else np.round(s, decimals)
    w = rng.random(n) * (rng.random(n) < 0.9)  # some weights 0
    assert abs(_auroc_quiet(torch.tensor(s), torch.tensor(y)).item() - roc_auc_score(y, s)) < TOL
    assert abs(_auroc_quiet(torch.tensor(s, dtype=torch.float32), torch.tensor(y)).item()
               - roc_auc_score(y, s.astype(np.float32))) < TOL
    weighted = _auroc_quiet(torch.tensor(s), torch.tensor(y), sample_weight=torch.tensor(w)).item()
    assert abs(weighted - roc_auc_score(y, s, sample_weight=w)) < TOL
    p = _tied_probabilities(n, 4, 3) if decimals is not None else softmax64(rng.normal(size=(n, 4)))
    yk = _multiclass_labels(n, 4, 3)
    for average in ("macro", "weighted"):
        ours = _auroc_quiet(torch.tensor(p), torch.tensor(yk), average=average).item()
        assert abs(ours - roc_auc_score(yk, p, multi_class="ovr", average=average)) < TOL
    ours = _auroc_quiet(torch.tensor(p), torch.tensor(yk), sample_weight=torch.tensor(w)).item()
    assert abs(ours - roc_auc_score(yk, p, multi_class="ovr", sample_weight=w)) < TOL
    multi_hot = np.stack([y, 1 - y, (rng.random(n) < 0.5).astype(np.int64)], 1)
    scores = np.round(rng.normal(size=(n, 3)), 1 if decimals is None else decimals)
    per_label = _auroc_quiet(torch.tensor(scores), torch.tensor(multi_hot), average=None).numpy()
    np.testing.assert_allclose(per_label, roc_auc_score(multi_hot, scores, average=None), atol=TOL, rtol=0)


@pytest.mark.parametrize("grouped_from", [0, 16, 10**12], ids=["per_tied_element", "default", "per_threshold"])
def test_the_binary_path_at_its_edges_matches_sklearn(monkeypatch, grouped_from):
    """`binary_auroc` (the unweighted binary case) at its smallest and most tied inputs, every tie path forced:
    two examples, every score equal, one positive or one negative, a tie only across the classes' boundary."""
    import fastai_aum.functional._auc as auc_module
    monkeypatch.setattr(auc_module, "_GROUPED_FROM", grouped_from)
    cases = [([0.3, 0.3], [0, 1]), ([0.1, 0.9], [1, 0]), ([2.0] * 7, [0, 1, 0, 0, 1, 0, 0]),
             ([0.5, 0.5, 0.1, 0.9, 0.9], [1, 0, 0, 0, 1]), ([1.0, 2.0, 3.0, 3.0, 4.0], [0, 0, 0, 1, 1]),
             ([5.0, 4.0, 4.0, 4.0], [1, 0, 0, 0])]
    rng = np.random.default_rng(0)
    for n in (3, 17, 200):
        cases.append((np.round(rng.normal(size=n), 1).tolist(), [0, 1] + (rng.random(n - 2) < 0.5).astype(int).tolist()))
    for s, y in cases:
        for dtype in (torch.float32, torch.float64):
            ours = auroc(torch.tensor(s, dtype=dtype), torch.tensor(y)).item()
            assert abs(ours - roc_auc_score(y, np.asarray(s, dtype=np.float32 if dtype == torch.float32 else None))) < TOL
