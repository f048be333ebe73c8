"""Interrupted validation leaves AUROCCallback reusable: the next fit reports correct values."""
from __future__ import annotations

import warnings

import pytest
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.tabular.learner import tabular_learner
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score

from fastai_aum import AUMLossFlat, AUROCCallback
from fastai_aum.datasets import breast_cancer_df, tabular_dls


class InterruptValidation(Callback):
    """Raises `exc` once, in the middle of the first validation pass."""

    def __init__(self, exc):
        self.exc, self.armed = exc, True

    def after_batch(self):
        if not self.training and self.iter == 1 and self.armed:
            self.armed = False
            raise self.exc


@pytest.fixture
def learn():
    set_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = tabular_dls(breast_cancer_df(pos_frac=0.2), bs=16)  # several validation batches
    return tabular_learner(dls, layers=[16], loss_func=AUMLossFlat(), cbs=AUROCCallback())


@pytest.mark.parametrize("exc", [CancelFitException(), KeyboardInterrupt()], ids=["CancelFit", "KeyboardInterrupt"])
def test_next_fit_after_an_interrupted_validation_is_correct(learn, exc):
    assert len(learn.dls.valid) > 2
    with learn.no_bar(), learn.no_logging():
        if isinstance(exc, KeyboardInterrupt):
            with pytest.raises(KeyboardInterrupt):
                learn.fit(1, 1e-2, cbs=InterruptValidation(exc))
        else:
            learn.fit(1, 1e-2, cbs=InterruptValidation(exc))  # fastai catches the cancellation
        learn.fit(2, 1e-2)
        preds, targs = learn.get_preds(act=lambda x: x)
    expected = roc_auc_score(targs.reshape(-1).numpy(), (preds[:, 1] - preds[:, 0]).double().numpy())
    assert learn.recorder.metric_names.count("auroc") == 1
    assert learn.recorder.values[-1][-1] == pytest.approx(expected, abs=1e-9)
    assert len(learn.auroc.history) == 2
    assert learn.auroc.history["auroc"].iloc[-1] == pytest.approx(expected, abs=1e-9)
    assert len(learn.auroc.metric.preds) == len(learn.dls.valid_ds)


def test_export_with_the_callback_attached(learn, tmp_path):
    from fastai.learner import load_learner
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    learn.export(tmp_path / "model.pkl")
    loaded = load_learner(tmp_path / "model.pkl")
    assert loaded.auroc.metric.preds is None  # the exported file carries no validation predictions
    row = breast_cancer_df(pos_frac=0.2).iloc[0]
    with loaded.no_bar():
        _, label, probs = loaded.predict(row)
    assert int(label) in (0, 1) and torch.isclose(probs.sum(), torch.tensor(1.0))


def test_lr_find_leaves_the_history_of_the_last_fit(learn):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit(2, 1e-2)
        before = learn.auroc.history.copy()
        learn.lr_find(num_it=20, show_plot=False, suggest_funcs=())
    assert len(before) == 2
    assert learn.auroc.history.equals(before)
