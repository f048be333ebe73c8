"""Multi-label (multi-hot (N, L) target) AUROC against `sklearn.metrics.roc_auc_score` (float64, 1e-9), the
curves and average precision against scikit-learn's per column, and multi-label AUM against the binary
brute-force oracle applied per label and pooled."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve as sk_pr_curve, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import aum, auroc, average_precision, precision_recall_curve, roc_curve
from oracles import brute_directional_derivatives, brute_multilabel_aum

TOL = 1e-9
AVERAGES = ["macro", "weighted", "micro", "samples", None]


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return auroc(*args, **kwargs)


def _multilabel(n, num_labels, seed, levels=4, p=0.4):
    """Tied scores and a multi-hot target in which every label and every example has both classes."""
    rng = np.random.default_rng(seed)
    s = rng.integers(-levels, levels + 1, (n, num_labels)).astype(np.float64) * 0.75
    y = (rng.random((n, num_labels)) < p).astype(np.int64)
    rows = np.arange(n)
    y[rows, rows % num_labels] = 1  # every example has both classes (for 'samples'), and with n >= L
    y[rows, (rows + 1) % num_labels] = 0  # every label too
    return s, y


def _ref(y, s, average, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(roc_auc_score(y, s, average=average, **kw), dtype=np.float64)


def _weights(n, seed):
    rng = np.random.default_rng(seed + 99)
    w = rng.integers(0, 4, n).astype(np.float64) * 0.5  # many zeros
    w[:2] = 1.0
    return w


@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("n, num_labels", [(2, 2), (7, 3), (60, 5), (400, 4)])
def test_multilabel_auroc_matches_sklearn(average, n, num_labels):
    for seed in range(6):
        s, y = _multilabel(n, num_labels, seed)
        got = _quiet(torch.from_numpy(s), torch.from_numpy(y), average=average)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), _ref(y, s, average), atol=TOL, rtol=0)


@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("max_fpr", [None, 0.3, 0.8])
def test_multilabel_sample_weight_with_zeros_and_max_fpr(average, max_fpr):
    for seed in range(6):
        s, y = _multilabel(80, 4, seed)
        w = _weights(80, seed)
        got = _quiet(torch.from_numpy(s), torch.from_numpy(y), average=average, sample_weight=w, max_fpr=max_fpr)
        np.testing.assert_allclose(got.numpy(), _ref(y, s, average, sample_weight=w, max_fpr=max_fpr), atol=TOL, rtol=0)


@pytest.mark.parametrize("target_dtype", [torch.bool, torch.int64, torch.float32, torch.uint8])
def test_target_dtypes_and_float32_logits_are_not_squashed(target_dtype):
    """sigmoid(17) == sigmoid(25) in float32: ranking the logits themselves keeps them apart."""
    rng = np.random.default_rng(0)
    s = rng.choice([17.0, 25.0, 30.0, -17.0, -40.0], (50, 3))
    _, y = _multilabel(50, 3, 1)
    t = torch.from_numpy(s).float()
    for average in AVERAGES:
        got = _quiet(t, torch.from_numpy(y).to(target_dtype), average=average)
        np.testing.assert_allclose(got.numpy(), _ref(y, s, average), atol=TOL, rtol=0)


def test_probabilities_rank_as_their_logits():
    s, y = _multilabel(100, 4, 3)
    p = torch.sigmoid(torch.from_numpy(s))
    for average in AVERAGES:
        assert torch.allclose(_quiet(p, torch.from_numpy(y), average=average),
                              _quiet(torch.from_numpy(s), torch.from_numpy(y), average=average), atol=1e-12)


def test_one_class_label_is_averaged_out_with_one_warning():
    s, y = _multilabel(40, 4, 5)
    y[:, 2] = 0  # no positive
    y[:, 3] = 1  # no negative (scikit-learn gives NaN for macro then)
    t_s, t_y = torch.from_numpy(s), torch.from_numpy(y)
    for average in ["macro", "weighted"]:
        with pytest.warns(AUROCUndefinedWarning, match=r"label\(s\) \[2, 3\] have no positive or no negative") as rec:
            got = auroc(t_s, t_y, average=average)
        assert len(rec) == 1
        assert float(got) == pytest.approx(float(_ref(y[:, :2], s[:, :2], average)), abs=TOL)
    with pytest.warns(AUROCUndefinedWarning):
        per_label = auroc(t_s, t_y, average=None)
    assert torch.isnan(per_label[2:]).all()
    np.testing.assert_allclose(per_label[:2].numpy(), _ref(y[:, :2], s[:, :2], None), atol=TOL)
    np.testing.assert_allclose(_quiet(t_s, t_y, average="micro").numpy(), _ref(y, s, "micro"), atol=TOL)


def test_samples_with_a_one_class_example_is_nan_as_sklearn():
    """scikit-learn 1.9: an example whose labels are all 0 (or all 1) makes average='samples' NaN, with a
    warning; with weight 0 it is left out of the weighted mean."""
    s, y = _multilabel(30, 3, 2)
    y[5] = 0
    y[6] = 1
    with pytest.warns(AUROCUndefinedWarning, match=r"2 of 30 examples have one class only") as rec:
        got = auroc(torch.from_numpy(s), torch.from_numpy(y), average="samples")
    assert len(rec) == 1 and math.isnan(float(got)) and math.isnan(float(_ref(y, s, "samples")))
    w = np.ones(30)
    w[[5, 6]] = 0
    got = _quiet(torch.from_numpy(s), torch.from_numpy(y), average="samples", sample_weight=w)
    assert float(got) == pytest.approx(float(_ref(y, s, "samples", sample_weight=w)), abs=TOL)


def test_one_hot_target_is_multilabel_like_sklearn():
    """A one-hot (N, K) target is a multilabel-indicator for scikit-learn too: for probabilities its macro
    AUROC equals one-vs-rest on the class indices."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 50)
    y = np.concatenate([np.arange(4), rng.integers(0, 4, 46)])
    onehot = np.eye(4, dtype=np.int64)[y]
    for average in ["macro", "weighted", None]:
        a = _quiet(torch.from_numpy(p), torch.from_numpy(onehot), average=average)
        b = _quiet(torch.from_numpy(p), torch.from_numpy(y), average=average)
        assert torch.allclose(a, b, atol=1e-12)
        np.testing.assert_allclose(a.numpy(), _ref(onehot, p, average), atol=TOL)


def test_n_by_1_target_still_means_class_labels():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([[0], [0], [1], [1]])
    assert float(_quiet(s, y)) == roc_auc_score([0, 0, 1, 1], s.numpy())


def test_bad_multilabel_targets():
    s = torch.rand(5, 3)
    with pytest.raises(ValueError, match=r"multi-hot `target` must have the shape of `preds`, got \(5, 2\)"):
        auroc(s, torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"multi-hot `target` must hold 0 and 1 only, got 1 other value"):
        auroc(s, torch.tensor([[0, 1, 2]] + [[0, 1, 0]] * 4))
    with pytest.raises(ValueError, match=r"`average='samples'` needs a multi-hot"):
        auroc(s, torch.tensor([0, 1, 2, 0, 1]), average="samples")
    with pytest.raises(ValueError, match=r"`average` must be one of"):
        auroc(s, torch.ones(5, 3), average="mean")
    with pytest.raises(ValueError, match=r"`preds` contains 1 non-finite"):
        auroc(torch.tensor([[0.1, math.nan], [0.2, 0.3]]), torch.tensor([[0, 1], [1, 0]]))


def test_empty_multilabel_is_nan_with_a_warning():
    with pytest.warns(AUROCUndefinedWarning, match="empty"):
        got = auroc(torch.zeros(0, 3), torch.zeros(0, 3), average=None)
    assert got.shape == (3,) and torch.isnan(got).all()


# ------------------------------------------------------------------- curves and average precision ---

def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own no-positive warnings
        return fn(*args, **kwargs)


def _assert_curves(s, y, w=None):
    """One ROC and (unweighted) one PR curve per label, each scikit-learn's of its column."""
    t_s, t_y = torch.from_numpy(s), torch.from_numpy(y)
    rocs = roc_curve(t_s, t_y, sample_weight=w)
    assert isinstance(rocs, list) and len(rocs) == y.shape[1]
    for col, roc in enumerate(rocs):
        fpr, tpr, thr = _sk(sk_roc_curve, y[:, col], s[:, col], sample_weight=w, drop_intermediate=False)
        np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.max_constant.numpy()[:-1], -thr[1:], atol=TOL, rtol=0)
    if w is not None:
        return
    prs = precision_recall_curve(t_s, t_y)
    assert isinstance(prs, list) and len(prs) == y.shape[1]
    for col, pr in enumerate(prs):
        precision, recall, thr = _sk(sk_pr_curve, y[:, col], s[:, col])
        np.testing.assert_allclose(pr.precision.numpy(), precision, atol=TOL, rtol=0)
        np.testing.assert_allclose(pr.recall.numpy(), recall, atol=TOL, rtol=0)
        np.testing.assert_allclose(pr.thresholds.numpy(), thr, atol=0, rtol=0)


def _assert_average_precision(s, y, w=None):
    for average in AVERAGES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AUROCUndefinedWarning)  # labels without positive weight
            got = average_precision(torch.from_numpy(s), torch.from_numpy(y), average=average, sample_weight=w)
        assert got.dtype == torch.float64
        expected = _sk(average_precision_score, y, s, average=average, sample_weight=w)
        np.testing.assert_allclose(got.numpy(), expected, atol=TOL, rtol=0, err_msg=str(average))


def test_multilabel_curves_and_average_precision_match_sklearn():
    for seed in range(6):
        for n, num_labels in [(2, 2), (7, 3), (60, 5), (400, 4)]:
            s, y = _multilabel(n, num_labels, seed)
            w = _weights(n, seed)
            _assert_curves(s, y)
            _assert_curves(s, y, w)
            _assert_average_precision(s, y)
            _assert_average_precision(s, y, w)


def test_multilabel_curves_are_those_of_each_column():
    """What a loop over the label columns gives, bit for bit."""
    s, y = _multilabel(300, 4, 7)
    t_s, t_y = torch.from_numpy(s).float(), torch.from_numpy(y)
    for curve in (roc_curve, precision_recall_curve):
        for col, got in enumerate(curve(t_s, t_y)):
            for a, b in zip(got, curve(t_s[:, col], t_y[:, col])):
                assert a.dtype == b.dtype and torch.equal(a, b)


def test_multilabel_curves_and_average_precision_without_positives():
    """A label without positives: NaN TPR, recall 1 and AP 0 with one warning each, as scikit-learn gives;
    an example without positives counts AP 0 in average='samples'."""
    s, y = _multilabel(40, 4, 5)
    y[:, 2] = 0
    y[3] = 0
    t_s, t_y = torch.from_numpy(s), torch.from_numpy(y)
    with pytest.warns(AUROCUndefinedWarning, match=r"label\(s\) \[2\]") as rec:
        rocs = roc_curve(t_s, t_y)
    assert len(rec) == 1 and torch.isnan(rocs[2].tpr).all() and not torch.isnan(rocs[1].tpr).any()
    with pytest.warns(AUROCUndefinedWarning, match=r"label\(s\) \[2\]") as rec:
        prs = precision_recall_curve(t_s, t_y)
    assert len(rec) == 1 and torch.equal(prs[2].recall[:-1], torch.ones(len(prs[2].recall) - 1, dtype=torch.float64))
    with pytest.warns(AUROCUndefinedWarning, match=r"label\(s\) \[2\] have no positive"):
        average_precision(t_s, t_y)
    empty = int((y.sum(1) == 0).sum())
    with pytest.warns(AUROCUndefinedWarning, match=rf"{empty} of 40 examples have no positive label"):
        average_precision(t_s, t_y, average="samples")
    _assert_average_precision(s, y)
    _assert_average_precision(s, y, _weights(40, 5))
    y[:] = 0  # no positive anywhere: 'weighted' gives 0, as scikit-learn
    with pytest.warns(AUROCUndefinedWarning):
        got = average_precision(t_s, torch.from_numpy(y), average="weighted")
    assert float(got) == _sk(average_precision_score, y, s, average="weighted")


def test_multilabel_average_precision_samples_with_zero_total_weight_is_nan():
    s, y = _multilabel(10, 3, 0)
    with pytest.warns(AUROCUndefinedWarning, match="sums to 0"):
        got = average_precision(torch.from_numpy(s), torch.from_numpy(y), average="samples", sample_weight=np.zeros(10))
    assert math.isnan(float(got))
    with pytest.raises(ValueError, match=r"`labels` and `pos_label` apply to class labels"):
        average_precision(torch.from_numpy(s), torch.from_numpy(y), pos_label=1)


# ------------------------------------------------------------------------------------- AUM ---

def _aum_grad(s, y, **kw):
    leaf = torch.tensor(s, requires_grad=True)
    value = aum(leaf, torch.from_numpy(y), **kw)
    value.backward()
    return float(value.detach()), leaf.grad.numpy()


def _brute_grad(s, y, normalize, average, weights=None):
    """Mean of the brute-force left and right derivatives, per label (macro) or pooled (micro)."""
    n, num_labels = s.shape
    w = np.ones(n) if weights is None else weights
    if average == "micro":
        d = brute_directional_derivatives(s.reshape(-1), y.reshape(-1).astype(int), normalize,
                                          weights=np.repeat(w, num_labels))
        return d.mean(1).reshape(n, num_labels)
    grad = np.zeros_like(s)
    defined = [c for c in range(num_labels) if np.sum(w * y[:, c]) > 0 and np.sum(w * (1 - y[:, c])) > 0]
    for c in defined:
        grad[:, c] = brute_directional_derivatives(s[:, c], y[:, c], normalize, weights=w).mean(1) / len(defined)
    return grad


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("weighted", [False, True])
def test_multilabel_aum_matches_brute_force(average, normalize, weighted):
    for seed in range(5):
        s, y = _multilabel(12, 3, seed, levels=2)  # many ties
        if seed == 4:
            y[:, 2] = 0  # a label with one class: left out of macro
        w = _weights(12, seed) if weighted else None
        value, grad = _aum_grad(s, y, normalize=normalize, average=average, sample_weight=w)
        assert value == pytest.approx(brute_multilabel_aum(s, y, normalize, average, w), abs=1e-9)
        np.testing.assert_allclose(grad, _brute_grad(s, y, normalize, average, w), atol=1e-6)


def test_multilabel_aum_uses_raw_scores_and_float32():
    s, y = _multilabel(300, 4, 0)
    t = torch.from_numpy(s).float().requires_grad_()
    value = aum(t, torch.from_numpy(y).bool(), average="macro")
    assert value.dtype == torch.float32
    value.backward()
    assert t.grad.dtype == torch.float32 and t.grad.shape == (300, 4)
    assert float(value) == pytest.approx(brute_multilabel_aum(s, y, "rate", "macro"), rel=1e-5)


def test_multilabel_aum_one_class_everywhere_is_zero_and_attached():
    s = torch.randn(5, 3, requires_grad=True)
    value = aum(s, torch.zeros(5, 3), average="macro")
    assert float(value) == 0
    value.backward()
    assert torch.equal(s.grad, torch.zeros(5, 3))
