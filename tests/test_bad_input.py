"""What bad input gets (`docs/definitions.md`): a clear ValueError/TypeError naming the argument, or NaN plus
one warning where AUROC is undefined; never a crash inside torch, never a silently wrong number."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor
from sklearn.metrics import roc_auc_score

from fastai_aum import AUROCUndefinedWarning
from fastai_aum.functional import aum, aum_directional_derivatives, auroc, check_auroc_options, roc_curve

ALL = [auroc, aum, aum_directional_derivatives, roc_curve]
BINARY_Y = torch.tensor([0, 1, 0, 1])


def _ids(fn):
    return fn.__name__


def _undefined_warnings(record):
    return [w for w in record if issubclass(w.category, AUROCUndefinedWarning)]


# ------------------------------------------------------------------------ NaN / inf scores ---

@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("bad, count", [([math.nan], 1), ([math.inf], 1), ([-math.inf, math.nan], 2),
                                        ([math.inf, -math.inf, math.nan], 3)])
def test_non_finite_scores(fn, bad, count):
    s = torch.tensor([0.5] * (6 - len(bad)) + bad, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=rf"`preds` contains {count} non-finite value\(s\).* out of 6"):
        fn(s, y)


@pytest.mark.parametrize("fn", [auroc, aum], ids=_ids)
def test_non_finite_scores_multiclass_and_n2(fn):
    z = torch.zeros(5, 3)
    z[1, 2] = math.nan
    z[4, 0] = math.inf
    with pytest.raises(ValueError, match=r"`preds` contains 2 non-finite value\(s\).* out of 15"):
        fn(z, torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"`preds` contains 1 non-finite value\(s\).* out of 8"):
        fn(torch.tensor([[0.0, 1.0], [2.0, -math.inf], [0.0, 0.0], [1.0, 1.0]]), BINARY_Y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_non_finite_half_precision(dtype):
    s = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=dtype)
    s[2] = math.inf
    for fn in (auroc, aum):
        with pytest.raises(ValueError, match=r"`preds` contains 1 non-finite"):
            fn(s, BINARY_Y)


def test_huge_finite_scores_are_not_reported_as_non_finite():
    """The sum of huge finite scores overflows to inf; that alone is not an error."""
    s = torch.tensor([1e308, 1e308, -1e308, 1e308], dtype=torch.float64)
    assert not math.isfinite(float(s.sum()))
    assert float(auroc(s, BINARY_Y)) == pytest.approx(roc_auc_score(BINARY_Y.numpy(), s.numpy() / 1e300))
    assert math.isfinite(float(aum(s / 1e300, BINARY_Y)))


# ---------------------------------------------------------------------------------- labels ---

@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("labels, lo, hi", [([0, 1, 2, 1], 0, 2), ([-1, 1, 0, 1], -1, 1), ([0, 0, 5, 0], 0, 5)])
def test_binary_labels_outside_0_1(fn, labels, lo, hi):
    with pytest.raises(ValueError, match=rf"`target` labels must be in \{{0, 1\}}, got values from {lo} to {hi}"):
        fn(torch.rand(4), torch.tensor(labels))
    with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}"):
        fn(torch.rand(4, 2), torch.tensor(labels))


@pytest.mark.parametrize("fn", [auroc, aum, roc_curve], ids=_ids)
def test_multiclass_labels_outside_range(fn):
    with pytest.raises(ValueError, match=r"`target` labels must be in \[0, 3\) for 3 score columns, got values from 0 to 3"):
        fn(torch.rand(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"`target` labels must be in \[0, 4\).*from -2 to 1"):
        fn(torch.rand(4, 4), torch.tensor([0, 1, -2, 1]))


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("labels, count, example", [([0.0, 0.5, 1.0, 1.0], 1, "0.5"),
                                                    ([0.25, 1.0, 0.75, 0.0], 2, "0.25"),
                                                    ([0.0, math.nan, 1.0, 0.0], 1, "nan")])
def test_non_integer_labels(fn, labels, count, example):
    with pytest.raises(ValueError, match=rf"`target` must hold integer class labels, got {count} non-integer "
                                         rf"value\(s\), e\.g\. {example}"):
        fn(torch.rand(4), torch.tensor(labels))


def test_integer_valued_float_and_bool_labels_are_fine():
    s = torch.tensor([0.3, 0.1, 0.4, 0.2])
    expected = roc_auc_score(BINARY_Y.numpy(), s.numpy())
    for y in (BINARY_Y.float(), BINARY_Y.double(), BINARY_Y.bool(), BINARY_Y.to(torch.uint8), BINARY_Y[:, None]):
        assert float(auroc(s, y)) == pytest.approx(expected)


# ------------------------------------------------------------------------- shapes, lengths ---

@pytest.mark.parametrize("fn", ALL, ids=_ids)
def test_mismatched_lengths(fn):
    with pytest.raises(ValueError, match=r"`preds` and `target` must have the same length, got 5 predictions and 4 labels"):
        fn(torch.rand(5), BINARY_Y)
    with pytest.raises(ValueError, match=r"same length, got 3 predictions and 4 labels"):
        fn(torch.rand(3, 2), BINARY_Y)


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("shape", [(4, 2, 2), (4, 1, 1), (), (4, 0)])
def test_impossible_pred_shapes(fn, shape):
    with pytest.raises(ValueError, match=rf"`preds` must have shape \(N,\), \(N, 1\), \(N, 2\) or \(N, K\), "
                                         rf"got {shape_re(shape)}"):
        fn(torch.rand(shape), BINARY_Y if shape else torch.tensor(1))


def shape_re(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("fn", ALL, ids=_ids)
def test_one_hot_target_rejected(fn):
    """Where multi-hot (multi-label) targets are not supported; `auroc`, `aum` and `roc_curve` (like the
    precision-recall functions) read a (4, 3) 0/1 target of the shape of the scores as multi-label, as
    scikit-learn reads a multilabel-indicator."""
    y = torch.tensor([0, 1, 2, 1])
    one_hot = torch.nn.functional.one_hot(y, 3)
    if fn in (auroc, aum, roc_curve):
        fn(torch.rand(4, 3), one_hot)
    else:
        with pytest.raises(ValueError, match=r"`target` must have shape \(N,\) or \(N, 1\) with integer class labels, "
                                             r"got \(4, 3\)"):
            fn(torch.rand(4, 3) if fn is not aum_directional_derivatives else torch.rand(4), one_hot)
    with pytest.raises(ValueError, match=r"`target` must have shape .* got \(4, 2\)"):
        fn(torch.rand(4), torch.nn.functional.one_hot(BINARY_Y, 2))
    with pytest.raises(ValueError, match=r"`target` must have shape .* got \(4, 1, 1\)"):
        fn(torch.rand(4), BINARY_Y[:, None, None])


def test_directional_derivatives_need_binary_scores():
    with pytest.raises(ValueError, match=r"`preds` must be binary scores of shape \(N,\), \(N, 1\) or \(N, 2\), got \(4, 3\)"):
        aum_directional_derivatives(torch.rand(4, 3), torch.tensor([0, 1, 2, 1]))


# --------------------------------------------------------------------------------- empty ---

@pytest.mark.parametrize("shape", [(0,), (0, 1), (0, 2), (0, 3)])
def test_empty_input(shape):
    preds, target = torch.zeros(shape), torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`preds` and `target` are empty: there is nothing to rank"):
        aum(preds, target)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = auroc(preds, target)
    assert got.shape == () and math.isnan(float(got))
    assert len(record) == 1 and issubclass(record[0].category, AUROCUndefinedWarning)
    assert "empty" in str(record[0].message)


def test_empty_input_from_lists():
    with pytest.raises(ValueError, match=r"empty"):
        aum([], [])
    with pytest.warns(AUROCUndefinedWarning, match=r"empty"):
        assert math.isnan(float(auroc([], [])))
    with pytest.warns(AUROCUndefinedWarning, match=r"empty"):
        per_class = auroc(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), average=None)
    assert per_class.shape == (3,) and torch.isnan(per_class).all()


# ------------------------------------------------------------------------ undefined AUROC ---

@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("shape", [(7,), (7, 1), (7, 2)])
@pytest.mark.parametrize("max_fpr", [None, 0.5])
def test_binary_one_class_gives_nan_and_exactly_one_warning(label, shape, max_fpr):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = auroc(torch.rand(shape), torch.full((7,), label), max_fpr=max_fpr)
    assert got.shape == () and math.isnan(float(got))
    assert len(record) == 1, [str(w.message) for w in record]
    assert issubclass(record[0].category, AUROCUndefinedWarning)
    assert "one class" in str(record[0].message)


@pytest.mark.parametrize("multi_class, average", [("ovr", "macro"), ("ovr", "weighted"), ("ovo", "macro"),
                                                  ("ovo", "weighted")])
def test_multiclass_single_class_gives_nan_and_exactly_one_warning(multi_class, average):
    """Only one class present in a 3-class target: AUROC is undefined; one clear warning."""
    p = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), 1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = auroc(p, torch.ones(6, dtype=torch.long), multi_class=multi_class, average=average)
    assert math.isnan(float(got))
    assert len(_undefined_warnings(record)) == 1, [str(w.message) for w in record]


def test_aum_one_class_training_batch_goes_on():
    x = torch.randn(5, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, no error: training goes on
        loss = aum(x, torch.zeros(5, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros(5))


@pytest.mark.parametrize("average", ["macro", "weighted", None])
def test_multiclass_missing_classes_warn(average):
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.dirichlet(np.ones(4), 20))
    y = torch.from_numpy(rng.choice([0, 2, 3], 20))
    with pytest.warns(AUROCUndefinedWarning, match=r"\[1\]"):
        got = auroc(p, y, average=average)
    assert torch.isfinite(got).sum() == (3 if average is None else 1)
    with pytest.warns(AUROCUndefinedWarning, match=r"\[0, 2, 3\]"):
        assert torch.isfinite(auroc(p, y, multi_class="ovo"))


# ---------------------------------------------------------------------------- bad options ---

@pytest.mark.parametrize("fn", [aum, aum_directional_derivatives], ids=_ids)
@pytest.mark.parametrize("value", ["fpr", None, "RATE", 1])
def test_bad_normalize(fn, value):
    with pytest.raises(ValueError, match=rf"`normalize` must be one of 'rate', 'count', got {value!r}"):
        fn(torch.rand(4), BINARY_Y, normalize=value)


@pytest.mark.parametrize("value", ["weighted", None, "samples", "MICRO"])
def test_bad_aum_average(value):
    with pytest.raises(ValueError, match=rf"`average` must be one of 'micro', 'macro', got {value!r}"):
        aum(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), average=value)


@pytest.mark.parametrize("value", ["binary", "MACRO"])
def test_bad_auroc_average_ovr(value):
    with pytest.raises(ValueError, match=rf"`average` must be one of 'macro', 'weighted', 'micro', 'samples', None, "
                                         rf"got {value!r}"):
        auroc(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), average=value)


def test_samples_average_needs_a_multilabel_target():
    with pytest.raises(ValueError, match=r"`average='samples'` needs a multi-hot \(N, L\) `target`"):
        auroc(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), average="samples")


def test_check_auroc_options_accepts_what_auroc_accepts():
    """'samples' is an option `auroc` takes (for multi-label targets), so a callback can check it up front."""
    for average in ("macro", "weighted", "micro", "samples", None):
        check_auroc_options(average, "ovr", None)
        check_auroc_options(average, "ovo", 0.5)  # the problem decides later whether these combine
    for average in ("binary", "MACRO", "sample"):
        with pytest.raises(ValueError, match=rf"`average` must be one of .*'samples', None, got {average!r}"):
            check_auroc_options(average, "ovr", None)


@pytest.mark.parametrize("value", [None, "micro"])
def test_bad_auroc_average_ovo(value):
    with pytest.raises(ValueError, match=rf"`average` must be one of 'macro', 'weighted', got {value!r}"):
        auroc(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), multi_class="ovo", average=value)


def test_ovo_average_is_ignored_for_a_binary_problem():  # as scikit-learn ignores it
    assert auroc(torch.tensor([0.1, 0.9, 0.4]), torch.tensor([0, 1, 1]), multi_class="ovo", average=None) == 1.0


@pytest.mark.parametrize("value", ["rest", "ovo ", None, "OVR"])
def test_bad_multi_class(value):
    with pytest.raises(ValueError, match=rf"`multi_class` must be one of 'ovr', 'ovo', got {value!r}"):
        auroc(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), multi_class=value)


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.0001, 2, math.nan, math.inf, "0.5"])
def test_max_fpr_out_of_range(value):
    with pytest.raises(ValueError, match=rf"`max_fpr` must be a number in \(0, 1\], got {value!r}"):
        auroc(torch.rand(4), BINARY_Y, max_fpr=value)


@pytest.mark.parametrize("k", [3, 5])
def test_max_fpr_with_multiclass(k):
    with pytest.raises(ValueError, match=rf"`max_fpr` \(partial AUROC\) is defined for binary problems only, "
                                         rf"got {k} classes"):
        auroc(torch.rand(6, k), torch.tensor([0, 1, 2, 0, 1, 2]), max_fpr=0.5)


@pytest.mark.parametrize("value", [np.float64(0.5), np.float32(0.5), np.float32(0.25)])
def test_max_fpr_numpy_scalars_accepted(value):
    """A numpy scalar is a number in (0, 1]; sklearn accepts it. Rejecting it with "must be a number in
    (0, 1], got np.float32(0.5)" is a self-contradictory error."""
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=50), rng.integers(0, 2, 50)
    got = auroc(torch.from_numpy(s), torch.from_numpy(y), max_fpr=value)
    assert float(got) == pytest.approx(roc_auc_score(y, s, max_fpr=float(value)), abs=1e-9)


# ----------------------------------------------------------------------------- wrong types ---

@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("preds, what", [("abc", "str"), (["0.1", "0.2", "0.3", "0.4"], "list"), (None, "NoneType"),
                                         ([[0.1, 0.2], [0.3], [0.4], [0.5]], "list"),
                                         (np.array(["a", "b", "c", "d"]), "ndarray"),
                                         (np.array([0.1, 0.2, 0.3, 0.4], dtype=object), "ndarray")])
def test_preds_not_numbers(fn, preds, what):
    with pytest.raises(TypeError, match=rf"`preds` must be a tensor or array-like of numbers, got {what}"):
        fn(preds, BINARY_Y)


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("target, what", [("0101", "str"), (["0", "1", "0", "1"], "list"),
                                          (np.array(["0", "1", "0", "1"]), "ndarray")])
def test_target_not_numbers(fn, target, what):
    """String labels are class labels for `auroc` (as `roc_auc_score`: the greater one is positive) and,
    with `pos_label`, for `roc_curve` and the AUM functions (tests/test_labels.py); a str is no sequence of
    labels."""
    if fn is auroc and what != "str":
        assert float(fn(torch.tensor([0.1, 0.9, 0.2, 0.8]), target)) == 1.0
    elif what != "str":
        with pytest.raises(ValueError, match=r"`target` takes labels \['0', '1'\] and `pos_label` is not given"):
            fn(torch.rand(4), target)
    else:
        with pytest.raises(TypeError, match=rf"`target` must be a tensor or array-like of numbers, got {what}"):
            fn(torch.rand(4), target)


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.bool])
def test_preds_wrong_dtype(fn, dtype):
    with pytest.raises(TypeError, match=rf"`preds` must hold real numbers, got dtype {dtype}"):
        fn(torch.ones(4, dtype=dtype), BINARY_Y)


@pytest.mark.parametrize("fn", ALL, ids=_ids)
def test_target_complex(fn):
    with pytest.raises(TypeError, match=r"`target` must hold integer class labels, got dtype torch.complex64"):
        fn(torch.rand(4), BINARY_Y.to(torch.complex64))


# ------------------------------------------------------------ Python lists are read as float64 ---

CLOSE = [1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 4, 1e8 + 5, 1e8 + 6]
CLOSE_Y = [0, 0, 1, 0, 1, 1]


@pytest.mark.parametrize("wrap", [list, tuple, lambda v: [[x] for x in v], lambda v: tuple((x,) for x in v)])
def test_python_floats_are_read_as_float64(wrap):
    """float32 would make the six scores four ties: 0.8333 instead of scikit-learn's 0.8889, count AUM 0 instead of 1."""
    from oracles import brute_aum
    preds = wrap(CLOSE)
    assert float(auroc(preds, CLOSE_Y)) == pytest.approx(roc_auc_score(CLOSE_Y, CLOSE), abs=1e-12)
    assert float(aum(preds, CLOSE_Y, normalize="count")) == pytest.approx(brute_aum(CLOSE, CLOSE_Y, "count"))
    assert float(aum(preds, CLOSE_Y, normalize="count")) == 1.0
    assert float(aum(preds, CLOSE_Y)) == pytest.approx(brute_aum(CLOSE, CLOSE_Y, "rate"))


def test_large_finite_python_floats_are_not_non_finite():
    preds, y = [1e300, -1e300, 3e299, 2e300], [0, 1, 0, 1]
    assert float(auroc(preds, y)) == pytest.approx(roc_auc_score(y, preds))
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\)"):
        auroc([1e300, math.inf, 0.0, 1.0], y)


def test_numpy_arrays_keep_their_dtype_and_lists_of_ints_stay_exact():
    s32 = np.array(CLOSE, dtype=np.float32)  # numpy float32 is what the user chose: ties as float32 has them
    assert float(auroc(s32, CLOSE_Y)) == pytest.approx(roc_auc_score(CLOSE_Y, s32))
    big = [2**52 + 1, 2**52 + 2, 2**52 + 3, 2**52 + 4]
    assert float(auroc(big, [0, 1, 0, 1])) == roc_auc_score([0, 1, 0, 1], big) == 0.75
    assert float(auroc(np.array(CLOSE, dtype=">f8"), CLOSE_Y)) == pytest.approx(roc_auc_score(CLOSE_Y, CLOSE))


@pytest.mark.parametrize("preds", [[2**63, 1, 2, 3], [2**63 + 1.0, 2**63, 2, 3], [2**64, 1, 2, 3], [2**60, 1, 2, 3]])
def test_python_ints_beyond_2_53_are_refused(preds):
    """numpy reads [2**63, 1] as float64 and [2**64, 1] as objects: never round them silently."""
    with pytest.raises(ValueError, match=r"`preds` holds integers beyond 2\*\*53"):
        auroc(preds, [0, 1, 0, 1])


def test_numpy_longdouble_is_a_clear_type_error():
    if np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=r"`preds` must be .* got numpy dtype float128"):
        auroc(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.longdouble), BINARY_Y)


# --------------------------------------------------------------------------- uint64 scores ---

def test_uint64_scores_beyond_2_53_are_refused():
    s = torch.tensor([2**60, 2**60 + 1, 2**60 + 2, 2**60 + 3], dtype=torch.uint64)
    for fn in ALL:
        with pytest.raises(ValueError, match=r"`preds` holds integers beyond 2\*\*53 \(dtype torch.uint64\)"):
            fn(s, BINARY_Y)
    with pytest.raises(ValueError, match=r"beyond 2\*\*53"):
        auroc(torch.tensor([2**64 - 1, 0, 1, 2], dtype=torch.uint64), BINARY_Y)
    with pytest.raises(ValueError, match=r"beyond 2\*\*53 \(dtype torch.int64\)"):
        auroc(torch.tensor([-2**63, 0, 1, 2]), BINARY_Y)  # abs() of it overflows


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_unsigned_scores_and_labels_below_2_53_are_exact(dtype):
    dtype = getattr(torch, dtype)
    base = 2**50 if dtype == torch.uint64 else 10
    s = torch.tensor([base, base + 1, base + 2, base + 3], dtype=dtype)
    expected = roc_auc_score([0, 1, 0, 1], [0, 1, 2, 3])
    assert float(auroc(s, BINARY_Y)) == expected == 0.75
    assert float(auroc(torch.tensor([0.1, 0.2, 0.3, 0.4]), BINARY_Y.to(dtype))) == expected
    assert float(aum(s, BINARY_Y.to(dtype), normalize="count")) == 1.0
    with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}, got values from 0 to 5"):
        auroc(s, torch.tensor([0, 1, 5, 1], dtype=dtype))


def test_uint64_labels_beyond_int64_show_their_value():
    with pytest.raises(ValueError, match=r"got values from 0 to 1\.84467e\+19"):
        auroc(torch.rand(4), torch.tensor([0, 1, 0, 2**64 - 1], dtype=torch.uint64))


# ------------------------------------------------------ meta, sparse, float8, vmap, torch.func ---

FLOAT8 = [d for name, d in vars(torch).items() if isinstance(d, torch.dtype) and name.startswith("float8_")]
PACKED = [d for name, d in vars(torch).items() if isinstance(d, torch.dtype) and name.startswith(("float4_", "bits"))]


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("which", ["preds", "target"])
def test_meta_tensors(fn, which):
    preds, target = torch.rand(4), BINARY_Y
    if which == "preds":
        preds = preds.to("meta")
    else:
        target = target.to("meta")
    with pytest.raises(TypeError, match=rf"`{which}` is a tensor on the 'meta' device, which has a shape but no values"):
        fn(preds, target)


@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("layout", ["to_sparse", "to_sparse_csr"])
def test_sparse_tensors(fn, layout):
    dense = torch.tensor([[0.1, 0.9], [0.4, 0.6], [0.0, 0.2], [0.7, 0.3]])
    with pytest.raises(TypeError, match=r"`preds` must be a dense \(strided\) tensor, got layout torch\.sparse_c.. ?"
                                        r".*call `preds\.to_dense\(\)` first"):
        fn(getattr(dense, layout)(), BINARY_Y)
    with pytest.raises(TypeError, match=r"`target` must be a dense \(strided\) tensor, got layout torch\.sparse_coo"):
        fn(dense[:, 1], BINARY_Y.to_sparse())


@pytest.mark.parametrize("fn", ALL, ids=_ids)
def test_nested_tensors(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.rand(2), torch.rand(3)])
    with pytest.raises(TypeError, match=r"`preds` must be a regular tensor .* got a nested tensor"):
        fn(nested, torch.tensor([0, 1]))


@pytest.mark.parametrize("dtype", FLOAT8, ids=str)
def test_float8_scores_are_upcast_exactly(dtype):
    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.uniform(0.05, 4, 40)).to(dtype)
    y = torch.from_numpy(rng.integers(0, 2, 40))
    exact = s.float().double().numpy()
    assert float(auroc(s, y)) == pytest.approx(roc_auc_score(y.numpy(), exact), abs=1e-12)
    from oracles import brute_aum
    assert float(aum(s, y, normalize="count")) == pytest.approx(brute_aum(exact, y.numpy(), "count"), rel=1e-6)
    two = torch.stack([torch.zeros_like(s), s], 1)  # (N, 2): scored as z1 - z0
    assert float(auroc(two, y)) == pytest.approx(roc_auc_score(y.numpy(), exact), abs=1e-12)


@pytest.mark.parametrize("dtype", FLOAT8, ids=str)
def test_float8_labels_are_read_exactly(dtype):
    s = torch.tensor([0.3, 0.1, 0.4, 0.2])
    y = BINARY_Y.float().to(dtype)
    if not torch.equal(y.float(), BINARY_Y.float()):  # e8m0 has no zero: whatever it holds must not pass as labels
        with pytest.raises(ValueError, match=r"`target`"):
            auroc(s, y)
        return
    assert float(auroc(s, y)) == roc_auc_score(BINARY_Y.numpy(), s.numpy())
    with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}, got values from 0 to 2"):
        auroc(s, torch.tensor([0.0, 1.0, 2.0, 1.0]).to(dtype))


@pytest.mark.parametrize("dtype", PACKED, ids=str)
@pytest.mark.parametrize("fn", ALL, ids=_ids)
def test_packed_dtypes_are_a_type_error(fn, dtype):
    packed = torch.zeros(4 * dtype.itemsize, dtype=torch.uint8).view(dtype)
    with pytest.raises(TypeError, match=rf"`preds` must hold real numbers, got dtype {dtype}"):
        fn(packed, BINARY_Y)
    with pytest.raises(TypeError, match=rf"`target` must hold integer class labels, got dtype {dtype}"):
        fn(torch.rand(4), packed)


@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8])
def test_quantized_scores_are_a_type_error(dtype):
    q = torch.quantize_per_tensor(torch.rand(4), 0.1, 0 if dtype == torch.quint8 else 0, dtype)
    with pytest.raises(TypeError, match=rf"`preds` must hold real numbers, got dtype {dtype}"):
        auroc(q, BINARY_Y)


@pytest.mark.parametrize("fn", [auroc, aum], ids=_ids)
def test_vmap_is_refused_clearly(fn):
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    with pytest.raises(TypeError, match=r"`preds` is batched by torch\.func\.vmap"):
        torch.func.vmap(lambda s: fn(s, y))(torch.randn(3, 6))
    with pytest.raises(TypeError, match=r"`target` is batched by torch\.func\.vmap"):
        s = torch.randn(6)
        torch.func.vmap(lambda t: fn(s, t))(torch.randint(0, 2, (3, 6)))


@pytest.mark.parametrize("normalize", ["rate", "count"])
def test_torch_func_grad_matches_autograd_and_the_oracle(normalize):
    for seed in range(4):
        from oracles import brute_directional_derivatives
        rng = np.random.default_rng(seed)
        s = torch.from_numpy(rng.normal(size=12))  # distinct: away from ties, left = right
        y = torch.from_numpy(rng.integers(0, 2, 12))
        y[:2] = torch.tensor([0, 1])
        functional = torch.func.grad(lambda t: aum(t, y, normalize=normalize))(s)
        leaf = s.clone().requires_grad_()
        (autograd,) = torch.autograd.grad(aum(leaf, y, normalize=normalize), leaf)
        assert torch.equal(functional, autograd)
        brute = brute_directional_derivatives(s.numpy(), y.numpy(), normalize)
        np.testing.assert_allclose(functional.numpy(), brute.mean(1), atol=1e-6)
        value, grad = torch.func.grad_and_value(lambda t: aum(t, y, normalize=normalize))(s)[::-1]
        assert float(value) == pytest.approx(float(aum(s, y, normalize=normalize)))


def test_torch_func_grad_at_ties_and_for_multiclass():
    s = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 1, 1, 0])
    got = torch.func.grad(lambda t: aum(t, y))(s)
    expected = aum_directional_derivatives(s, y).mean(1)
    assert torch.equal(got, expected) and got.abs().sum() > 0
    z = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    yk = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for average in ("micro", "macro"):
        leaf = z.clone().requires_grad_()
        (autograd,) = torch.autograd.grad(aum(leaf, yk, average=average), leaf)
        assert torch.allclose(torch.func.grad(lambda t: aum(t, yk, average=average))(z), autograd)


def test_no_grad_forward_and_grad_mode_agree():
    s = torch.randn(50, generator=torch.Generator().manual_seed(1))
    y = (torch.arange(50) % 3 == 0).long()
    with torch.no_grad():
        plain = aum(s, y)
    leaf = s.clone().requires_grad_()
    assert torch.equal(aum(leaf, y).detach(), plain)


# ---------------------------------------------------------------- huge and infinite float labels ---

@pytest.mark.parametrize("fn", ALL, ids=_ids)
@pytest.mark.parametrize("bad, shown", [(math.inf, "inf"), (1e20, "1e\\+20"), (-math.inf, "-inf"), (2.0**63, "9.22337e\\+18")])
def test_huge_float_labels_show_the_value_passed(fn, bad, shown):
    labels = torch.tensor([0.0, 1.0, 0.0, bad])
    lo, hi = ("0", shown) if bad > 0 else (shown, "1")
    with pytest.raises(ValueError, match=rf"`target` labels must be in \{{0, 1\}}, got values from {lo} to {hi}$"):
        fn(torch.rand(4), labels)
    with pytest.raises(ValueError, match=rf"got values from {lo} to {hi}$"):
        fn(torch.rand(4), labels.tolist())


# ------------------------------------------------------------------------------------- pandas input ---

def _no_warning(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on the read-only arrays a pandas object hands out
        return fn(*args, **kwargs)


def _same(a, b):
    if isinstance(a, tuple) and not isinstance(a, Tensor):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, Tensor):
        return torch.equal(a, b)
    return a == b


def _pandas_calls():
    """(name, call) of every functional entry point that takes arrays, given a converter of its inputs."""
    from fastai_aum.functional import (auroc_ci, auroc_test, average_precision, best_threshold, brier_score,
                                       isotonic_calibration, log_loss, platt_scaling, precision_recall_curve)
    return [
        ("auroc", lambda s, y, w, z, k, p, hot: auroc(s, y, sample_weight=w)),
        ("auroc 2 columns", lambda s, y, w, z, k, p, hot: auroc(z, y)),
        ("auroc multiclass", lambda s, y, w, z, k, p, hot: auroc(p, k, average=None)),
        ("auroc multi-label", lambda s, y, w, z, k, p, hot: auroc(p, hot, average="samples")),
        ("roc_curve", lambda s, y, w, z, k, p, hot: roc_curve(s, y, sample_weight=w)),
        ("aum", lambda s, y, w, z, k, p, hot: aum(s, y, sample_weight=w)),
        ("aum multiclass", lambda s, y, w, z, k, p, hot: aum(p, k, average="macro")),
        ("aum_directional_derivatives", lambda s, y, w, z, k, p, hot: aum_directional_derivatives(z, y)),
        ("average_precision", lambda s, y, w, z, k, p, hot: average_precision(s, y, sample_weight=w)),
        ("precision_recall_curve", lambda s, y, w, z, k, p, hot: precision_recall_curve(p, k)),
        ("best_threshold", lambda s, y, w, z, k, p, hot: best_threshold(s, y, "f1")),
        ("auroc_ci", lambda s, y, w, z, k, p, hot: auroc_ci(s, y)),
        ("auroc_test", lambda s, y, w, z, k, p, hot: auroc_test(s, z, y)),
        ("platt_scaling", lambda s, y, w, z, k, p, hot: platt_scaling(s, y)(s)),
        ("isotonic_calibration", lambda s, y, w, z, k, p, hot: isotonic_calibration(z, y)(z)),
        ("brier_score", lambda s, y, w, z, k, p, hot: brier_score(p.iloc[:, :2] if hasattr(p, "iloc") else p[:, :2],
                                                                 y)),
        ("log_loss", lambda s, y, w, z, k, p, hot: log_loss(p.iloc[:, 0] if hasattr(p, "iloc") else p[:, 0], y)),
    ]


def _refuse_read_only(monkeypatch):
    """torch warns once per process only: refuse read-only arrays where torch would share them, every time."""
    for name in ("as_tensor", "from_numpy", "asarray"):
        original = getattr(torch, name)

        def guarded(x, *args, _original=original, _name=name, **kwargs):
            if isinstance(x, np.ndarray) and not x.flags.writeable:
                raise AssertionError(f"torch.{_name} got a read-only numpy array: torch warns that it is not writable")
            return _original(x, *args, **kwargs)
        monkeypatch.setattr(torch, name, guarded)


@pytest.mark.parametrize("name, call", _pandas_calls(), ids=[name for name, _ in _pandas_calls()])
def test_pandas_input_gives_no_warning_and_the_numpy_result(name, call, monkeypatch):
    """A pandas Series or DataFrame hands out read-only arrays (copy on write): read without torch's "NumPy
    array is not writable" warning, and to the same values as numpy arrays."""
    import pandas as pd
    rng = np.random.default_rng(0)
    s, z, p = rng.integers(0, 6, 40) * 0.5, rng.normal(size=(40, 2)), rng.dirichlet(np.ones(3), 40)
    y, k, hot = rng.integers(0, 2, 40), np.arange(40) % 3, (rng.random((40, 3)) < 0.5).astype(np.int64)
    hot[:, 0], hot[:, 1] = 1, 0  # every example has both classes (for 'samples')
    y[:2], w = [0, 1], rng.integers(1, 4, 40).astype(np.float64)
    frames = (pd.Series(s), pd.Series(y), pd.Series(w), pd.DataFrame(z), pd.Series(k), pd.DataFrame(p),
              pd.DataFrame(hot))
    assert not np.asarray(frames[0]).flags.writeable  # what triggers the warning
    with monkeypatch.context() as patch:
        _refuse_read_only(patch)
        got = _no_warning(call, *frames)
    assert _same(got, call(s, y, w, z, k, p, hot))
