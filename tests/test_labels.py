"""String and other class labels, `labels=` and `pos_label`, against scikit-learn (float64, 1e-9)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import ProbabilityRowsWarning, aum, auroc, average_precision, roc_curve

TOL = 1e-9


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def _binary(n, seed, names):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 5, n).astype(np.float64)
    idx = (rng.random(n) < 0.4).astype(np.int64)
    idx[:2] = [0, 1]
    return s, np.asarray(names, dtype=object)[idx] if isinstance(names[0], str) and seed % 2 else np.asarray(names)[idx]


NAMES = [["neg", "pos"], ["b", "a"], ["spam", "ham"], [3, 7], [-1.5, 2.5]]


@pytest.mark.parametrize("names", NAMES, ids=str)
def test_binary_auroc_labels_follow_roc_auc_score(names):
    """Two labels and binary scores: the greater label (sorted) is positive, unless `pos_label` says."""
    for seed in range(6):
        s, y = _binary(60, seed, names)
        w = np.random.default_rng(seed).integers(0, 3, 60).astype(np.float64)
        w[:2] = 1
        if isinstance(names[0], str):  # numbers other than {0, 1}, {-1, 1} stay an error, unless pos_label
            assert float(_quiet(auroc, s, y)) == pytest.approx(roc_auc_score(y, s), abs=TOL)
            assert float(_quiet(auroc, s, list(y))) == pytest.approx(roc_auc_score(y, s), abs=TOL)
            assert float(_quiet(auroc, s, y, sample_weight=w)) == pytest.approx(roc_auc_score(y, s, sample_weight=w),
                                                                                 abs=TOL)
        for pos in names:
            ref = roc_auc_score(y == pos, s, sample_weight=w)
            got = _quiet(auroc, torch.from_numpy(s), y, pos_label=pos, sample_weight=w)
            assert float(got) == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize("names", NAMES + [[0, 1], [-1, 1]], ids=str)
def test_roc_curve_and_average_precision_pos_label(names):
    """scikit-learn refuses float labels ('continuous'); `pos_label` makes them as clear as any other."""
    for seed in range(4):
        s, y = _binary(50, seed, names)
        for pos in names:
            ref_y, ref_pos = (y, pos) if not isinstance(pos, float) else ((y == pos).astype(int), 1)
            fpr, tpr, thr = sk_roc_curve(ref_y, s, pos_label=ref_pos, drop_intermediate=False)
            roc = _quiet(roc_curve, s, y, pos_label=pos)
            np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
            np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
            np.testing.assert_array_equal(-roc.max_constant.numpy()[:-1], thr[1:])
            assert float(_quiet(average_precision, s, y, pos_label=pos)) == pytest.approx(
                average_precision_score(ref_y, s, pos_label=ref_pos), abs=TOL)


def test_minus_one_one_labels_need_no_pos_label():
    s, y = _binary(40, 0, [-1, 1])
    ref = roc_auc_score(y, s)
    for target in (y, torch.from_numpy(y), torch.from_numpy(y).float(), torch.from_numpy(y).to(torch.int8)):
        assert float(_quiet(auroc, torch.from_numpy(s), target)) == pytest.approx(ref, abs=TOL)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(roc_curve(torch.from_numpy(s), torch.from_numpy(y)).tpr.numpy(), tpr, atol=TOL)


def test_binary_label_errors():
    s = np.array([0.1, 0.4, 0.35, 0.8])
    with pytest.raises(ValueError, match=r"`target` takes labels \['a', 'b'\] and `pos_label` is not given"):
        roc_curve(s, ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match=r"`pos_label`='c' is not a label of `target`, whose labels are \['a', 'b'\]"):
        auroc(s, ["a", "b", "a", "b"], pos_label="c")
    with pytest.raises(ValueError, match=r"binary scores need a target with two labels, got 3"):
        auroc(s, ["a", "b", "c", "b"])
    with pytest.raises(ValueError, match=r"`labels` gives the class order of multiclass"):
        auroc(s, ["a", "b", "a", "b"], labels=["a", "b"])
    with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}, got values from 1 to 2"):
        auroc(s, [1, 2, 1, 2])  # numbers other than {0, 1}, {-1, 1}: pass pos_label
    assert float(auroc(s, [1, 2, 1, 2], pos_label=2)) == roc_auc_score([1, 2, 1, 2], s)
    with pytest.raises(ValueError, match=r"apply to class labels, not to a multi-hot"):
        auroc(np.random.rand(4, 2), np.eye(2)[[0, 1, 0, 1]], pos_label=1)


def test_one_string_label_is_undefined_with_a_warning():
    with pytest.warns(AUROCUndefinedWarning, match="only one class"):
        assert math.isnan(float(auroc(np.array([0.1, 0.2]), np.array(["a", "a"]))))


def _multiclass(n, k, seed):
    rng = np.random.default_rng(seed)
    c = rng.integers(1, 4, (n, k)).astype(np.float64)
    idx = rng.permutation(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
    return c / c.sum(1, keepdims=True), idx


@pytest.mark.parametrize("classes", [["ant", "bee", "cat", "dog"], [2, 5, 11, 40], [-3, 0, 1, 9]], ids=str)
@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
def test_multiclass_labels_match_sklearn(classes, average):
    for seed in range(4):
        p, idx = _multiclass(80, 4, seed)
        y = np.asarray(classes)[idx]
        w = np.random.default_rng(seed).integers(1, 3, 80).astype(np.float64)
        ref = roc_auc_score(y, p, multi_class="ovr", average=average, labels=classes, sample_weight=w)
        got = _quiet(auroc, torch.from_numpy(p), y, average=average, labels=classes, sample_weight=w)
        np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)
        if isinstance(classes[0], str):  # without labels=: the sorted labels, as scikit-learn
            got = _quiet(auroc, torch.from_numpy(p), list(y), average=average, sample_weight=w)
            np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)
        for mode in ("macro", "weighted"):
            assert float(_quiet(auroc, p, y, multi_class="ovo", average=mode, labels=classes)) == pytest.approx(
                roc_auc_score(y, p, multi_class="ovo", average=mode, labels=classes), abs=TOL)


def test_multiclass_labels_roc_curve_and_average_precision():
    p, idx = _multiclass(50, 3, 1)
    classes = np.array(["x", "y", "z"])
    y = classes[idx]
    curves = roc_curve(p, y, labels=classes)
    for k, c in enumerate(curves):
        np.testing.assert_allclose(c.tpr.numpy(), sk_roc_curve(y == classes[k], p[:, k], drop_intermediate=False)[1])
    assert float(average_precision(p, y)) == pytest.approx(average_precision_score(np.eye(3)[idx], p), abs=TOL)


def test_multiclass_label_errors_mirror_sklearn():
    p, idx = _multiclass(6, 3, 0)
    y = np.array([10, 20, 30])[idx]
    cases = [([30, 20, 10], r"`labels` must be sorted, as scikit-learn requires"),
             ([10, 10, 20], r"`labels` must be unique"),
             ([10, 20], r"`labels` names 2 classes for 3 score columns"),
             ([10, 20, 40], r"`target` holds labels not in `labels`: \[30\]")]
    for labels, match in cases:
        with pytest.raises(ValueError, match=match):
            auroc(p, y, labels=labels)
    with pytest.raises(ValueError, match=r"`target` has 2 distinct labels \['a', 'b'\] for 3 score columns"):
        auroc(p, ["a", "b", "a", "b", "a", "b"])
    with pytest.raises(ValueError, match=r"`pos_label` names the positive class of binary scores"):
        auroc(p, y, pos_label=10)
    with pytest.raises(TypeError, match=r"`target` mixes labels that cannot be sorted"):
        auroc(p, np.array(["a", 1, "b", 2, "a", 1], dtype=object))


def test_numeric_tensor_labels_on_device_of_preds():
    p, idx = _multiclass(30, 3, 2)
    y = torch.tensor([4, 8, 15])[torch.from_numpy(idx)]
    assert float(auroc(torch.from_numpy(p), y, labels=[4, 8, 15])) == pytest.approx(
        roc_auc_score(y.numpy(), p, multi_class="ovr", labels=[4, 8, 15]), abs=TOL)


# ------------------------------------------------------------------- rows that almost sum to 1 ---

def test_rounded_probability_rows_warn_and_rank_as_probabilities():
    """Rows rounded to 2 decimals sum to 1 only within 0.01: ranked as the probabilities they are (the
    softmax of probabilities would rank differently), with one warning naming both tolerances."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 300).round(2)
    y = rng.integers(0, 3, 300)
    assert np.abs(p.sum(1) - 1).max() > 1e-3
    with pytest.warns(ProbabilityRowsWarning, match=r"sum to 1 only within 0\.01, beyond the tolerance 0\.001 but "
                                                      r"within 0\.05") as rec:
        got = auroc(torch.from_numpy(p), torch.from_numpy(y), average=None)
    assert len(rec) == 1 and rec[0].filename == __file__
    for k in range(3):  # the columns as given, not their softmax
        assert float(got[k]) == pytest.approx(roc_auc_score(y == k, p[:, k]), abs=TOL)
    with pytest.warns(ProbabilityRowsWarning):
        aum(torch.from_numpy(p), torch.from_numpy(y))


def test_exact_probabilities_and_logits_do_not_warn():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), 100)
    y = rng.integers(0, 4, 100)
    _quiet(auroc, torch.from_numpy(p), torch.from_numpy(y))
    _quiet(auroc, torch.from_numpy(p).to(torch.bfloat16), torch.from_numpy(y))  # bf16 rounding is within tolerance
    _quiet(auroc, torch.from_numpy(rng.normal(size=(100, 4))), torch.from_numpy(y))
    _quiet(auroc, torch.from_numpy(p * 0.5), torch.from_numpy(y))  # rows summing to 0.5: scores, not probabilities
