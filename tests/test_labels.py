"""String and other class labels, `labels=` and `pos_label`, against scikit-learn (float64, 1e-9)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from torch import Tensor

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import (ProbabilityRowsWarning, aum, aum_directional_derivatives, auroc, auroc_ci,
                                   auroc_test, average_precision, best_threshold, brier_score, isotonic_calibration,
                                   log_loss, platt_scaling, precision_recall_curve, roc_curve)

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


# ------------------------------------------------------ every entry point that takes a target ---

def _prob(x):
    """Probabilities of scores: elementwise for (N,), row-wise for (N, 2), so that swapping columns commutes."""
    return torch.sigmoid(x) if x.ndim == 1 else torch.softmax(x, 1)


ENTRY_POINTS = {  # name: call(preds, target, **labels) for binary preds of shape (N,) or (N, 2)
    "auroc": lambda x, t, **kw: auroc(x, t, **kw),
    "auroc max_fpr": lambda x, t, **kw: auroc(x, t, max_fpr=0.4, **kw),
    "roc_curve": lambda x, t, **kw: roc_curve(x, t, **kw),
    "average_precision": lambda x, t, **kw: average_precision(x, t, **kw),
    "precision_recall_curve": lambda x, t, **kw: precision_recall_curve(x, t, **kw),
    "aum": lambda x, t, **kw: aum(x, t, **kw),
    "aum count margin": lambda x, t, **kw: aum(x, t, "count", margin=0.5, **kw),
    "aum_directional_derivatives": lambda x, t, **kw: aum_directional_derivatives(x, t, **kw),
    "auroc_ci": lambda x, t, **kw: auroc_ci(x, t, **kw),
    "auroc_test": lambda x, t, **kw: auroc_test(x, torch.sin(3 * x), t, **kw),
    "best_threshold": lambda x, t, **kw: best_threshold(x, t, "f1", **kw),
    "best_threshold tpr": lambda x, t, **kw: best_threshold(x, t, "tpr", max_fpr=0.3, **kw),
    "platt_scaling": lambda x, t, **kw: platt_scaling(x, t, **kw),
    "isotonic_calibration": lambda x, t, **kw: isotonic_calibration(x, t, **kw),
    "brier_score": lambda x, t, **kw: brier_score(_prob(x), t, **kw),
    "log_loss": lambda x, t, **kw: log_loss(_prob(x), t, **kw),
}
IMPLICIT = {"auroc", "auroc max_fpr", "auroc_ci", "auroc_test", "log_loss"}  # scikit-learn's: the greater label


def _equal(a, b):
    if isinstance(a, Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b):
            _equal(u, v)
    else:
        assert a == b


def _two_classes(seed, n=40):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:4] = [0, 1, 0, 1]
    s = torch.tensor(rng.integers(-4, 5, n) * 0.5 + y * 0.75)
    z = torch.tensor(np.stack([rng.integers(-3, 4, n) * 0.5, rng.integers(-3, 4, n) * 0.5 + y], 1))
    return s, z, y  # z's columns: [negative class, positive class]


def _as_given(z, neg, pos):
    """The (N, 2) scores whose columns are the two labels in sorted order (scikit-learn's probability columns)."""
    return z if neg < pos else z.flip(1)


# (negative label, positive label): the positive one sorts first or second, strings, numbers, bools
LABEL_PAIRS = [("neg", "pos"), ("yes", "no"), ("bad", "good"), ("good", "bad"), (1, 0), (0, 1), (1, -1),
               (True, False), (3.5, -2.0), (7, 3)]


@pytest.mark.parametrize("pair", LABEL_PAIRS, ids=str)
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_pos_label_is_the_0_1_problem_in_every_entry_point(name, pair):
    """`target == pos_label` is the positive class, the columns of (N, 2) scores are the sorted labels: the
    result is that of the 0/1 problem with the positive class's column second, exactly."""
    call, (neg, pos) = ENTRY_POINTS[name], pair
    for seed in range(3):
        s, z, y = _two_classes(seed)
        target = np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y]
        for labels_in in (target, list(target)):
            _equal(_quiet(call, s, labels_in, pos_label=pos), call(s, torch.from_numpy(y)))
            _equal(_quiet(call, _as_given(z, neg, pos), labels_in, pos_label=pos), call(z, torch.from_numpy(y)))


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_string_labels_without_pos_label(name):
    """`auroc`, `auroc_ci`, `auroc_test` and `log_loss` take the greater of two labels as positive, as
    scikit-learn's `roc_auc_score` and `log_loss` do; the others ask for `pos_label`, as `roc_curve` does."""
    import pandas as pd
    call = ENTRY_POINTS[name]
    s, z, y = _two_classes(0)
    for neg, pos in (("ham", "spam"), ("spam", "ham")):
        target = np.array([neg, pos])[y]
        if name in IMPLICIT and neg < pos:
            for labels_in in (target, pd.Series(target), pd.Series(target, dtype="category")):
                _equal(_quiet(call, s, labels_in), call(s, torch.from_numpy(y)))
                _equal(_quiet(call, z, labels_in), call(z, torch.from_numpy(y)))
        elif name in IMPLICIT:  # 'spam' is the greater label: positive, so the result is that of 1 - y
            _equal(_quiet(call, s, target), call(s, torch.from_numpy(1 - y)))
        else:
            with pytest.raises(ValueError, match=r"`target` takes labels \['ham', 'spam'\] and `pos_label` is not "
                                                 r"given: make the labels \{0, 1\} or \{-1, 1\}, or pass pos_label"):
                call(s, target)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_messages_show_the_labels_as_given(name):
    """A third label is reported as the user wrote it, with or without `pos_label` (never as 1 - label)."""
    call = ENTRY_POINTS[name]
    s, z, y = _two_classes(1, 8)
    bad = y.copy()
    bad[2] = 5
    for x in (s, z):
        with pytest.raises(ValueError, match=r"binary scores need a target with two labels, got 3: \[0, 1, 5\]"):
            call(x, bad, pos_label=0)
        with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}, got values from 0 to 5"):
            call(x, torch.from_numpy(bad))
        with pytest.raises(ValueError, match=r"`pos_label`=2 is not a label of `target`, whose labels are \[0, 1\]"):
            call(x, y, pos_label=2)
        with pytest.raises(ValueError, match=r"binary scores need a target with two labels, got 3: \['a', 'b', 'c'\]"):
            call(x, np.array(["a", "b", "c", "a", "b", "a", "b", "a"]), pos_label="a")


def test_pos_label_0_equals_flipping_the_labels_and_the_columns_with_the_gradient():
    """What a fastai Learner whose positive class is first needs: pos_label=0 on its own class indices is
    `1 - target` with the columns swapped (one score: the positive class's, so only the labels flip)."""
    for seed in range(4):
        s, z, y = _two_classes(seed)
        target, flipped = torch.from_numpy(y), torch.from_numpy(1 - y)
        assert torch.equal(aum(s, target, pos_label=0), aum(s, flipped))
        assert torch.equal(auroc(s, target, pos_label=0), auroc(s, flipped))
        a, b = z.clone().requires_grad_(), z.flip(1).clone().requires_grad_()
        got, want = aum(a, target, pos_label=0), aum(b, flipped)
        assert torch.equal(got.detach(), want.detach())
        (ga,), (gb,) = torch.autograd.grad(got, a), torch.autograd.grad(want, b)
        assert torch.equal(ga, gb.flip(1)) and ga.abs().sum() > 0


def test_one_label_with_two_columns_needs_to_know_the_column():
    z = torch.rand(4, 2)
    with pytest.raises(ValueError, match=r"`target` shows the one label 'a' only, so which column of the \(N, 2\) "
                                         r"`probs` is that of `pos_label`='a' is unknown"):
        brier_score(torch.softmax(z, 1), ["a"] * 4, pos_label="a")
    # class indices say their column: 0/1 labels (or -1/1) whatever the target shows, as scikit-learn's `labels`
    rows = np.array([[0.2, 0.8]] * 3)
    for y in ([0, 0, 0], [1, 1, 1]):
        assert float(brier_score(rows, y, pos_label=0)) == pytest.approx(brier_score_loss(y, rows, labels=[0, 1]),
                                                                          abs=TOL)
        assert float(brier_score(rows, np.array(y) * 2 - 1, pos_label=-1)) == pytest.approx(
            brier_score_loss(y, rows, labels=[0, 1]), abs=TOL)
    with pytest.raises(ValueError, match=r"`target` shows the one label 'b' only"):  # its thresholds need the column
        roc_curve(z, ["b"] * 4, pos_label="a")
    with pytest.warns(AUROCUndefinedWarning, match="only one class"):  # (N,) scores: no column to find
        assert math.isnan(float(auroc(torch.rand(4), ["a"] * 4, pos_label="a")))
    # where one class gives the same whichever column it is: NaN AUROC, AUM 0 (a training batch goes on)
    with pytest.warns(AUROCUndefinedWarning, match="only one class"):
        assert math.isnan(float(auroc(z, ["a"] * 4, pos_label="a")))
    leaf = z.clone().requires_grad_()
    value = aum(leaf, ["b"] * 4, pos_label="a")
    value.backward()
    assert float(value.detach()) == 0 and torch.equal(leaf.grad, torch.zeros_like(z))
    with pytest.raises(ValueError, match="best_threshold needs both classes"):
        best_threshold(z, ["a"] * 4, pos_label="a")


def test_nan_labels_with_pos_label_are_an_error():
    with pytest.raises(ValueError, match=r"`target` must hold class labels, got 1 NaN value\(s\)"):
        auroc(torch.rand(4), [0.0, 1.0, math.nan, 1.0], pos_label=1.0)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.booleans()), min_size=4, max_size=30),
       st.lists(st.sampled_from("abcxyz"), min_size=1, max_size=3).map("".join),
       st.lists(st.sampled_from("abcxyz"), min_size=1, max_size=3).map("".join),
       st.sampled_from(sorted(ENTRY_POINTS)))
def test_string_labels_give_the_0_1_result_property(rows, neg, pos, name):
    """For random inputs and any two label names, in either sort order: the 0/1 result."""
    assume(neg != pos)
    y = np.array([r[2] for r in rows], dtype=np.int64)
    assume(2 <= y.sum() <= len(y) - 2)
    z = torch.tensor([[r[0] * 0.5, r[1] * 0.5] for r in rows], dtype=torch.float64)
    target = np.array([neg, pos], dtype=object)[y]
    call = ENTRY_POINTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)  # a one-point test or curve may warn
        _equal(call(z[:, 1], target, pos_label=pos), call(z[:, 1], torch.from_numpy(y)))
        _equal(call(_as_given(z, neg, pos), target, pos_label=pos), call(z, torch.from_numpy(y)))


@pytest.mark.parametrize("first_positive", [True, False])
def test_two_columns_are_the_sorted_labels_as_in_scikit_learn(first_positive):
    """(N, 2) probability rows or logits: column k is the k-th sorted label (scikit-learn's `predict_proba`
    order), so `pos_label` ranks its own column: p_pos, or z_pos - z_other."""
    from sklearn.metrics import precision_recall_curve as sk_pr_curve
    for seed in range(4):
        rng = np.random.default_rng(seed)
        c = rng.integers(1, 5, (60, 2)).astype(np.float64)
        p = c / c.sum(1, keepdims=True)
        y = np.array(["bad", "good"])[rng.integers(0, 2, 60)]
        y[:2] = ["bad", "good"]
        pos, col = ("bad", 0) if first_positive else ("good", 1)
        assert float(_quiet(auroc, p, y, pos_label=pos)) == pytest.approx(roc_auc_score(y == pos, p[:, col]), abs=TOL)
        z = np.log(p)
        assert float(_quiet(auroc, z, y, pos_label=pos)) == pytest.approx(
            roc_auc_score(y == pos, z[:, col] - z[:, 1 - col]), abs=TOL)
        fpr, tpr, _ = sk_roc_curve(y, p[:, col], pos_label=pos, drop_intermediate=False)
        roc = _quiet(roc_curve, p, y, pos_label=pos)
        np.testing.assert_allclose(roc.fpr.numpy(), fpr, atol=TOL, rtol=0)
        np.testing.assert_allclose(roc.tpr.numpy(), tpr, atol=TOL, rtol=0)
        assert float(_quiet(average_precision, p, y, pos_label=pos)) == pytest.approx(
            average_precision_score(y, p[:, col], pos_label=pos), abs=TOL)
        precision, recall, thresholds = sk_pr_curve(y, p[:, col], pos_label=pos)
        pr = _quiet(precision_recall_curve, p, y, pos_label=pos)
        np.testing.assert_allclose(pr.precision.numpy(), precision, atol=TOL, rtol=0)
        np.testing.assert_allclose(pr.recall.numpy(), recall, atol=TOL, rtol=0)
        np.testing.assert_allclose(pr.thresholds.numpy(), thresholds, atol=0, rtol=TOL)
