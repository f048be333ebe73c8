"""Fuzzing the functional API: every call returns a sound value or raises a clear ValueError or
TypeError, never anything else (no IndexError or RuntimeError from deep inside torch)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from fastai_aum.functional import aum, aum_directional_derivatives, auroc, roc_curve

FLOAT8 = [d for name, d in vars(torch).items() if isinstance(d, torch.dtype) and name.startswith("float8_")]
UNSIGNED = [torch.uint8] + [getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name)]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64, torch.bool,
          torch.complex64] + FLOAT8 + UNSIGNED[1:]
LABEL_DTYPES = [torch.int64, torch.int8, torch.uint8, torch.int32, torch.float32, torch.bool, torch.complex64,
                torch.float8_e4m3fn, torch.float8_e5m2] + UNSIGNED[1:]


@st.composite
def inputs(draw):
    n = draw(st.integers(0, 12))
    k = draw(st.sampled_from([None, 1, 2, 3, 3, 5]))
    extra = draw(st.sampled_from([(), (), (), (2,)]))  # sometimes an impossible third dimension
    shape = ((n,) if k is None else (n, k)) + extra
    if draw(st.booleans()) and draw(st.booleans()):
        shape = ()  # a 0-d tensor
    dtype = draw(st.sampled_from(DTYPES))
    values = torch.tensor(draw(st.lists(st.floats(-50, 50, width=32), min_size=max(1, math.prod(shape)),
                                        max_size=max(1, math.prod(shape)))))[: math.prod(shape)].reshape(shape)
    if dtype.is_floating_point and values.numel() and draw(st.sampled_from([False, False, True])):
        values.view(-1)[draw(st.integers(0, values.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    preds = values.round().to(dtype) if not dtype.is_floating_point and not dtype.is_complex else values.to(dtype)
    m = draw(st.sampled_from([n, n, n, n + 1, max(n - 1, 0)]))
    label_dtype = draw(st.sampled_from(LABEL_DTYPES))
    classes = max(k or 2, 2)
    low, high = (0, classes - 1) if draw(st.sampled_from([True, True, True, False])) else (-1, classes + 3)
    target = torch.tensor(draw(st.lists(st.integers(low, high), min_size=m, max_size=m)), dtype=torch.float64)
    if label_dtype == torch.float32 and draw(st.sampled_from([False, False, True])):
        target = target + 0.5
    target = target.to(label_dtype) if label_dtype not in UNSIGNED else target.clamp_min(0).to(label_dtype)
    if draw(st.booleans()) and draw(st.booleans()):
        target = target.reshape(-1, 1)
    as_list = draw(st.sampled_from([False, False, False, True]))
    return (preds.tolist() if as_list else preds), target


def _sound(name, result, preds):
    if name == "auroc":
        values = result.reshape(-1).tolist()
        assert result.dtype == torch.float64 and all(math.isnan(v) or 0 <= v <= 1 for v in values)
    elif name == "aum":
        assert math.isfinite(result.item()) and result.item() >= 0
    elif name == "aum_directional_derivatives":
        assert result.shape[-1] == 2 and torch.isfinite(result).all()


@pytest.mark.parametrize("name", ["auroc", "auroc_ovo", "auroc_per_class", "auroc_partial", "aum", "aum_macro",
                                  "roc_curve", "aum_directional_derivatives"])
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(args=inputs())
def test_only_clear_errors(args, name):
    preds, target = args
    fn = {"auroc": auroc, "auroc_ovo": lambda p, t: auroc(p, t, multi_class="ovo"),
          "auroc_per_class": lambda p, t: auroc(p, t, average=None),
          "auroc_partial": lambda p, t: auroc(p, t, max_fpr=0.3), "aum": aum,
          "aum_macro": lambda p, t: aum(p, t, average="macro", normalize="count"),
          "roc_curve": roc_curve, "aum_directional_derivatives": aum_directional_derivatives}[name]
    name = name.split("_")[0] if name.startswith(("auroc", "aum_macro")) else name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn(preds, target)
        except (ValueError, TypeError) as e:
            assert str(e)  # says something
            return
    _sound(name, result, preds)


# ------------------------------------ exotic inputs: the value is right, or the error is clear ---

KINDS = ["list_close", "list_large", "nested_list", "uint64", "meta", "sparse"] + [str(d) for d in FLOAT8]


@st.composite
def exotic_inputs(draw):
    """Binary (N,) or (N, 1) scores of one exotic kind, and labels that are sometimes exotic or out of range."""
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(0, 10))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if kind in ("list_close", "nested_list"):  # float32 would merge these into ties
        base = draw(st.sampled_from([1e8, 1e15, -3e9]))
        step = 1.0 if base != 1e15 else 0.25  # float64's spacing there is 0.125: the oracle's midpoints stay exact
        values = [base + step * draw(st.integers(0, 6)) for _ in range(n)]
        preds = [[v] for v in values] if kind == "nested_list" else values
    elif kind == "list_large":  # finite, beyond float32's range
        values = [draw(st.sampled_from([1.0, -1.0, 0.5])) * draw(st.sampled_from([1e300, 3e299, 1e-300, 7e38, 0.0]))
                  for _ in range(n)]
        preds = tuple(values)
    elif kind == "uint64":
        values = [draw(st.sampled_from([0, 1, 2, 2**50, 2**50 + 1, 2**53, 2**53 + 1, 2**60, 2**64 - 1])) for _ in range(n)]
        preds = torch.tensor(values, dtype=torch.uint64) if n else torch.zeros(0, dtype=torch.uint64)
        values = [float(v) for v in values]
    else:
        dtype = getattr(torch, kind.split(".")[-1], torch.float32)
        s = torch.tensor([float(draw(st.integers(-20, 20))) / 4 for _ in range(n)], dtype=torch.float32)
        preds = s.to(dtype) if kind not in ("meta", "sparse") else s
        values = preds.float().double().tolist()
        preds = {"meta": lambda t: t.to("meta"), "sparse": lambda t: t.to_sparse()}.get(kind, lambda t: t)(preds)
    labels = draw(st.sampled_from(["list", "long", "uint64", "float8", "inf", "huge"]))
    target = {"list": lambda: y, "long": lambda: torch.tensor(y, dtype=torch.long),
              "uint64": lambda: torch.tensor(y, dtype=torch.long).to(torch.uint64),
              "float8": lambda: torch.tensor(y, dtype=torch.float32).to(torch.float8_e4m3fn),
              "inf": lambda: torch.tensor(y[:-1] + [math.inf] if n else [], dtype=torch.float64),
              "huge": lambda: torch.tensor(y[:-1] + [1e20] if n else [], dtype=torch.float64)}[labels]()
    return kind, preds, values, labels, target, y


@pytest.mark.parametrize("name", ["auroc", "aum", "aum_count"])
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(args=exotic_inputs())
def test_exotic_inputs_right_value_or_clear_error(args, name):
    from oracles import brute_aum
    kind, preds, values, labels, target, y = args
    fn = {"auroc": auroc, "aum": aum, "aum_count": lambda p, t: aum(p, t, normalize="count")}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn(preds, target)
        except (ValueError, TypeError) as e:
            assert str(e)
            return
    assert kind not in ("meta", "sparse"), "no values to rank: must be refused"
    assert labels not in ("inf", "huge") or not y, "labels beyond {0, 1} must be refused"
    assert all(math.isfinite(v) for v in values), "non-finite scores must be refused"
    assert kind != "uint64" or max(values, default=0) <= 2**53, "uint64 beyond 2**53 must be refused"
    s = np.asarray(values, dtype=np.float64)
    if name == "auroc":
        if 0 < sum(y) < len(y):
            assert float(result) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        else:
            assert math.isnan(float(result))
    else:
        expected = brute_aum(s, y, "count" if name == "aum_count" else "rate")
        rel = 1e-9 if result.dtype == torch.float64 else 1e-6  # upcast float8 scores give a float32 value
        assert float(result) == pytest.approx(expected, rel=rel, abs=1e-12)
