"""The design's reference cases (tests/data/aum_binary_cases.json, a byte-identical copy of the project's
shared reference, so that the suite stands alone) reproduced to 1e-6."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fastai_aum.functional import aum, aum_directional_derivatives, auroc, roc_curve
from oracles import brute_aum, brute_directional_derivatives

REFERENCE = Path(__file__).resolve().parent / "data" / "aum_binary_cases.json"

DATA = json.loads(REFERENCE.read_text())
CASES = DATA["cases"]
ROC = DATA["roc_example"]
TOL = 1e-6


def _case_id(case):
    return f"{case['normalize']}-s{case['scores']}-y{case['labels']}".replace(" ", "")


def _inf(v):
    return float(v) if not isinstance(v, str) else {"-inf": -math.inf, "inf": math.inf}[v]


def test_reference_file_is_not_trivial():
    assert len(CASES) >= 18
    assert {c["normalize"] for c in CASES} == {"rate", "count"}
    # several cases contain ties, and their left and right derivatives differ
    assert any(np.any(np.array(c["directional_derivatives"])[:, 0] != np.array(c["directional_derivatives"])[:, 1])
               for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_aum_value(case, dtype):
    s = torch.tensor(case["scores"], dtype=dtype)
    y = torch.tensor(case["labels"])
    got = aum(s, y, normalize=case["normalize"])
    assert got.shape == ()
    assert float(got) == pytest.approx(case["aum"], abs=TOL)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_directional_derivatives(case):
    s = torch.tensor(case["scores"], dtype=torch.float64)
    y = torch.tensor(case["labels"])
    got = aum_directional_derivatives(s, y, normalize=case["normalize"])
    assert tuple(got.shape) == (len(case["scores"]), 2)
    np.testing.assert_allclose(got.numpy(), np.array(case["directional_derivatives"]), atol=TOL, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward_is_mean_of_left_and_right(case):
    s = torch.tensor(case["scores"], dtype=torch.float64, requires_grad=True)
    y = torch.tensor(case["labels"])
    aum(s, y, normalize=case["normalize"]).backward()
    expected = np.array(case["directional_derivatives"]).mean(axis=1)
    np.testing.assert_allclose(s.grad.numpy(), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_oracle_reproduces_reference(case):
    assert brute_aum(case["scores"], case["labels"], case["normalize"]) == pytest.approx(case["aum"], abs=TOL)
    np.testing.assert_allclose(brute_directional_derivatives(case["scores"], case["labels"], case["normalize"]),
                               np.array(case["directional_derivatives"]), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ roc_example ---

def _roc_inputs():
    return torch.tensor(ROC["scores"], dtype=torch.float64), torch.tensor(ROC["labels"])


def test_roc_example_curve():
    roc = roc_curve(*_roc_inputs())
    np.testing.assert_allclose(roc.fpr.numpy(), ROC["FPR"], atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.fnr.numpy(), ROC["FNR"], atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.tpr.numpy(), 1 - np.array(ROC["FNR"]), atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.min_constant.numpy(), [_inf(v) for v in ROC["min_constant"]], atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.max_constant.numpy(), [_inf(v) for v in ROC["max_constant"]], atol=TOL, rtol=0)


def test_roc_example_curve_float32_and_lists():
    s, y = _roc_inputs()
    roc = roc_curve(s.float().tolist(), y.tolist())
    np.testing.assert_allclose(roc.fpr.numpy(), ROC["FPR"], atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.fnr.numpy(), ROC["FNR"], atol=TOL, rtol=0)
    np.testing.assert_allclose(roc.min_constant.numpy(), [_inf(v) for v in ROC["min_constant"]], atol=TOL, rtol=0)


def test_roc_example_constants_give_the_points():
    """Independent check of the JSON itself: each interval's midpoint thresholds to its (FPR, FNR)."""
    s = np.array(ROC["scores"])
    pos = np.array(ROC["labels"]) == 1
    for lo, hi, fpr, fnr in zip(ROC["min_constant"], ROC["max_constant"], ROC["FPR"], ROC["FNR"]):
        lo, hi = _inf(lo), _inf(hi)
        c = hi - 1 if math.isinf(lo) else lo + 1 if math.isinf(hi) else (lo + hi) / 2
        predicted = s + c > 0
        assert np.mean(predicted[~pos]) == pytest.approx(fpr)
        assert np.mean(~predicted[pos]) == pytest.approx(fnr)


def test_roc_example_auroc_and_aum():
    s, y = _roc_inputs()
    assert float(auroc(s, y)) == pytest.approx(ROC["auroc"], abs=TOL) == 0.5
    assert float(aum(s, y, normalize="rate")) == pytest.approx(ROC["aum_rate"], abs=TOL) == 1.5
    assert float(aum(s, y, normalize="count")) == pytest.approx(ROC["aum_count"], abs=TOL) == 3
    # the oracles agree with the JSON too
    assert brute_aum(ROC["scores"], ROC["labels"], "rate") == pytest.approx(ROC["aum_rate"], abs=TOL)
    assert brute_aum(ROC["scores"], ROC["labels"], "count") == pytest.approx(ROC["aum_count"], abs=TOL)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(ROC["labels"], ROC["scores"]) == pytest.approx(ROC["auroc"], abs=TOL)

