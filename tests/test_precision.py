"""Mixed precision: bf16 autocast on the CPU gives the AUROC of what the model produced, exactly, and
an AUM and AUROC close to float32's; half-precision inputs to the functional API are upcast."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.tabular.learner import tabular_learner
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score

from fastai_aum import AUMLossFlat, AUROCCallback
from fastai_aum.datasets import breast_cancer_df, tabular_dls
from fastai_aum.functional import aum, auroc


class CPUAutocast(Callback):
    """bf16 autocast on the CPU around the forward pass and the loss (fastai's MixedPrecision is for CUDA)."""
    order = 10

    def before_batch(self):
        self.ctx = torch.autocast("cpu", dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_loss(self):
        self.ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def learn():
    set_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = tabular_dls(breast_cancer_df(pos_frac=0.2), bs=32)
    learn = tabular_learner(dls, layers=[32], loss_func=AUMLossFlat(), cbs=AUROCCallback())
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(3, 1e-2)
    return learn


def _validate(learn, *cbs):
    with learn.no_bar(), learn.no_logging():
        loss, value = learn.validate(cbs=list(cbs))
        preds, targs = learn.get_preds(act=lambda x: x, cbs=list(cbs))
    return loss, value, preds, targs.reshape(-1)


def test_bf16_autocast_auroc_is_exact_for_its_outputs_and_close_to_float32(learn):
    loss32, value32, preds32, targs = _validate(learn)
    loss16, value16, preds16, _ = _validate(learn, CPUAutocast())
    assert preds16.dtype == torch.bfloat16 and preds32.dtype == torch.float32
    score16 = (preds16[:, 1].double() - preds16[:, 0].double()).numpy()
    assert value16 == pytest.approx(roc_auc_score(targs.numpy(), score16), abs=1e-12)
    assert value16 == pytest.approx(value32, abs=0.02)
    assert loss16 == pytest.approx(loss32, rel=0.05, abs=1e-3)


def test_training_under_bf16_autocast_learns(learn):
    set_seed(1)
    student = tabular_learner(learn.dls, layers=[32], loss_func=AUMLossFlat(), cbs=[AUROCCallback(), CPUAutocast()])
    with student.no_bar(), student.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student.fit_one_cycle(3, 1e-2)
    values = np.array([v[-1] for v in student.recorder.values])
    assert np.isfinite(values).all() and values[-1] > 0.9


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_upcast(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3000, generator=g) * 4).to(dtype)  # many ties after rounding
    y = torch.rand(3000, generator=g) < 0.2
    assert auroc(x, y).item() == pytest.approx(roc_auc_score(y.numpy(), x.double().numpy()), abs=1e-12)
    leaf = x.clone().requires_grad_()
    value = aum(leaf, y)
    value.backward()
    assert value.dtype == torch.float32  # computed in float32 and float64, not in half precision
    reference = x.float().requires_grad_()
    aum(reference, y).backward()
    assert value.item() == pytest.approx(aum(x.float(), y).item(), rel=1e-6)
    assert leaf.grad.dtype == dtype
    torch.testing.assert_close(leaf.grad.float(), reference.grad.to(dtype).float())
