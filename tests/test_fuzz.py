"""Fuzzing the functional API: every call returns a sound value or raises a clear ValueError or
TypeError, never anything else (no IndexError or RuntimeError from deep inside torch)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastai_aum.functional import aum, aum_directional_derivatives, auroc, roc_curve

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64, torch.bool,
          torch.complex64]
LABEL_DTYPES = [torch.int64, torch.int8, torch.uint8, torch.int32, torch.float32, torch.bool, torch.complex64]


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
    target = target.to(label_dtype) if label_dtype != torch.uint8 else target.clamp_min(0).to(label_dtype)
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
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
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
