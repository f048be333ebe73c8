"""Faults in the fastai layer (DESIGN.md, "Faults in the fastai layer"): non-finite outputs, a
validation set with one class (or one row), callbacks given to one `fit`, per-class AUROC in the
table, options that fit no problem, and ROC curves after an unlabelled pass."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback, TerminateOnNaNCallback
from fastai.data.block import CategoryBlock
from fastai.tabular.all import Normalize, TabularPandas, tabular_learner
from fastai.torch_core import set_seed

from fastai_aum import AUROC, AUMLossFlat, AUROCCallback, AUROCUndefinedWarning
from fastai_aum.functional import aum, auroc
from fastai_fixtures import (breast_df, breast_dls, close_figures, column, count_host_reads, quiet,  # noqa: F401
                             single_torch_thread, wine_data, wine_dls)


def _learner(dls, tmp_path=None, loss=None, cbs=None, **cb_kwargs):
    set_seed(0)
    learn = tabular_learner(dls, n_out=1 if len(dls.vocab) == 2 else None, loss_func=loss or AUMLossFlat(),
                            cbs=AUROCCallback(**cb_kwargs) if cbs is None else cbs)
    if tmp_path is not None:
        learn.path = tmp_path
    return learn


def _weights(learn) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learn.model.parameters()]


def _undefined(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, AUROCUndefinedWarning)]


def _tabular_dls(df, valid):
    train = sorted(set(range(len(df))) - set(valid))
    to = TabularPandas(df, procs=[Normalize], cont_names=[c for c in df.columns if c != "label"], y_names="label",
                       y_block=CategoryBlock(), splits=(train, sorted(valid)))
    return to.dataloaders(bs=64)


def _one_class_valid_dls(df):
    return _tabular_dls(df, np.flatnonzero(df["label"].to_numpy() == "benign")[::3].tolist())


# ------------------------------------------------------------------ 1. non-finite outputs ---

class _InjectNaN(Callback):
    """Makes the model's outputs NaN in epoch `epoch` (training and/or validation batches), still
    attached to the graph, as a diverging model's would be."""
    order = -20

    def __init__(self, epoch: int, train: bool, valid: bool):
        self.at, self.train, self.valid = epoch, train, valid

    def after_pred(self):
        if self.epoch == self.at and (self.train if self.training else self.valid) and len(self.yb):
            self.learn.pred = self.learn.pred * math.nan


@pytest.mark.parametrize("train, valid, validate", [(True, False, True), (False, True, True), (True, True, False)])
def test_nan_outputs_in_epoch_2_do_not_end_the_fit(breast_dls, tmp_path, train, valid, validate):
    learn = _learner(breast_dls, tmp_path, loss=AUMLossFlat(validate=validate))
    save = SaveModelCallback(monitor="auroc", fname="best")
    with quiet(learn), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn.fit(4, 1e-2, cbs=[save, _InjectNaN(1, train, valid)])
    assert len(learn.recorder.values) == 4
    first = learn.recorder.values[0]
    assert all(math.isfinite(v) for v in first)  # epoch 1's row intact: train loss, valid loss, auroc
    aurocs = column(learn, "auroc")
    assert math.isfinite(aurocs[0])
    if valid:
        assert math.isnan(aurocs[1]) and math.isnan(column(learn, "valid_loss")[1])
        messages = _undefined(caught)
        assert len(messages) == 1 and "not finite" in messages[0]
        n_valid = len(breast_dls.valid_ds)
        assert f"{n_valid} of {n_valid}" in messages[0]  # how many outputs were non-finite
    if train:
        assert math.isnan(column(learn, "train_loss")[1])
    if not train:  # NaN in validation only: training is untouched
        assert all(torch.isfinite(p).all() for p in learn.model.parameters()) and math.isfinite(aurocs[-1])
    assert (tmp_path / "models" / "best.pth").exists()
    learn.load("best")
    assert save.best == max(a for a in aurocs if not math.isnan(a))


def test_nan_outputs_stop_cleanly_with_terminate_on_nan(breast_dls, tmp_path):
    learn = _learner(breast_dls, tmp_path)
    save = SaveModelCallback(monitor="auroc", fname="best")
    with quiet(learn), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit(4, 1e-2, cbs=[TerminateOnNaNCallback(), save, _InjectNaN(1, True, False)])
    assert len(learn.recorder.values) == 1  # epoch 1 kept, the fit stopped in epoch 2
    assert all(math.isfinite(v) for v in learn.recorder.values[0])
    assert (tmp_path / "models" / "best.pth").exists()
    learn.load("best")
    with learn.no_bar():
        assert learn.validate()[1] == pytest.approx(save.best, abs=1e-9)


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("shape, reduction", [((16,), "mean"), ((16, 2), "sum"), ((16, 3), "none")])
def test_loss_of_non_finite_outputs_is_nan_with_a_working_backward(shape, reduction, validate):
    target = torch.arange(16) % shape[-1] if len(shape) == 2 else torch.arange(16) % 2
    preds = torch.randn(*shape, requires_grad=True)
    bad = preds.detach().clone()
    bad[0] = math.inf
    bad.requires_grad_()
    loss = AUMLossFlat(reduction=reduction, validate=validate)(bad, target)
    assert loss.shape == ((16,) if reduction == "none" else ())
    assert torch.isnan(loss).all()
    loss.sum().backward()
    assert bad.grad is not None and (bad.grad == 0).all()  # the outputs get no gradient from it
    good = AUMLossFlat(reduction=reduction, validate=validate)(preds, target)  # finite outputs: the AUM itself
    assert torch.isfinite(good).all()
    ref = aum(preds, target)
    assert good.sum().item() == pytest.approx(ref.item(), abs=1e-6)


def test_loss_still_raises_on_bad_labels_and_functional_api_on_nan():
    with pytest.raises(ValueError, match="target"):
        AUMLossFlat()(torch.randn(8), torch.tensor([0, 1, 2, 0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match="target"):
        AUMLossFlat()(torch.randn(8) * math.nan, torch.tensor([0, 1, 2, 0, 1, 0, 1, 0]))
    nan = torch.tensor([0.1, math.nan, 0.3, 0.4])
    with pytest.raises(ValueError, match="non-finite"):
        aum(nan, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="non-finite"):
        auroc(nan, torch.tensor([0, 1, 0, 1]))


def test_checks_on_the_cpu_read_back_a_few_scalars_whatever_the_batch_size(monkeypatch):
    """On the CPU, where reading back is free, the checked loss reads the label range and the value
    (a few scalars, never one per example) and raises at once on bad labels."""
    calls = count_host_reads(monkeypatch)
    counts = {}
    for n in (32, 4096):
        for k, average in ((2, "micro"), (3, "micro"), (3, "macro")):
            preds, target = torch.randn(n, k if k > 2 else 1), torch.arange(n) % k
            loss = AUMLossFlat(average=average)
            loss(preds, target)  # a multiclass loss finds out once whether its outputs are probabilities
            calls.clear()
            loss(preds.requires_grad_(), target)
            counts[n, k, average] = len(calls)
    assert max(counts.values()) <= 8, counts  # a few scalars per batch, never one per example
    with pytest.raises(ValueError, match="target"):
        AUMLossFlat()(torch.randn(8), torch.tensor([0, 1, 2, 0, 1, 0, 1, 0]))


@pytest.mark.parametrize("shape, average", [((64,), "micro"), ((64, 1), "micro"), ((64, 2), "micro"),
                                            ((64, 4), "micro"), ((64, 4), "macro")])
def test_default_loss_never_reads_back_off_the_cpu(monkeypatch, shape, average):
    """Where a read-back costs a sync (a GPU), `AUMLossFlat()` with default arguments does none per
    batch, forward and backward: forced here on the CPU by treating it like such a device."""
    import fastai_aum.functional.aum_loss as aum_loss
    import fastai_aum.losses as losses
    monkeypatch.setattr(losses, "_SYNC_IS_FREE_ON", ())
    monkeypatch.setattr(aum_loss, "_SPARSE_TIES_ON", ())
    g = torch.Generator().manual_seed(0)
    k = shape[1] if len(shape) == 2 and shape[1] > 2 else 2
    target = torch.arange(shape[0]) % k
    loss = AUMLossFlat(average=average)
    loss(torch.randn(*shape, generator=g), target)  # a multiclass loss learns its outputs' kind once
    calls = count_host_reads(monkeypatch)
    for _ in range(3):
        preds = torch.randn(*shape, generator=g).round(decimals=1).requires_grad_()  # ties too
        value = loss(preds, target)
        value.backward()
        nan_value = loss(preds.detach() * math.nan, target)
    assert calls == []
    expected = aum(preds.detach(), target, average=average)
    assert value.item() == pytest.approx(expected.item(), abs=1e-6) and math.isnan(nan_value.item())
    with pytest.raises(RuntimeError, match="labels that are not class indices"):  # the asynchronous assert
        loss(preds.detach(), target + k)


def test_metric_records_nan_with_one_warning_per_message():
    metric = AUROC()
    preds = torch.tensor([[0.1], [math.nan], [0.3], [math.inf]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            metric.reset()
            metric.add(preds, torch.tensor([0, 1, 0, 1]))
            assert math.isnan(metric.value)
    messages = _undefined(caught)
    assert len(messages) == 1 and "2 of 4" in messages[0] and "not finite" in messages[0]


# ------------------------------------------------------------ 2. one-class validation set ---

@pytest.mark.parametrize("tracker", [SaveModelCallback, EarlyStoppingCallback])
def test_one_class_validation_with_a_tracker_is_a_clear_error_before_training(breast_df, tmp_path, tracker):
    dls = _one_class_valid_dls(breast_df)
    learn = _learner(dls, tmp_path)
    before = _weights(learn)
    with quiet(learn), pytest.raises(ValueError, match=r"one class only.*'benign'.*monitor='auroc'"):
        learn.fit(5, 1e-2, cbs=tracker(monitor="auroc"))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(learn)))  # no training happened
    with quiet(learn), warnings.catch_warnings():  # monitoring the loss works, with the one warning
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        learn.fit(2, 1e-2, cbs=tracker(monitor="valid_loss"))
    assert len(learn.recorder.values) == 2


def test_one_class_validation_without_a_tracker_warns_once_naming_the_class(breast_df):
    learn = _learner(_one_class_valid_dls(breast_df))
    with quiet(learn), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn.fit(2, 1e-2)
        learn.fit(1, 1e-2)
    messages = _undefined(caught)
    assert len(messages) == 1
    assert "'benign'" in messages[0] and "one class" in messages[0] and "monitor='auroc'" in messages[0]
    assert len(learn.recorder.values) == 1 and math.isnan(column(learn, "auroc")[0])


# -------------------------------------------------------- 3. callbacks given to one `fit` ---

def test_fit_cbs_leave_the_metrics_as_they_found_them(breast_dls):
    learn = _learner(breast_dls, cbs=[])
    with quiet(learn):
        learn.fit(1, 1e-2, cbs=AUROCCallback(train=True))
        assert list(learn.recorder.metric_names).count("train_auroc") == 1 and len(learn.metrics) == 0
        learn.fit(2, 1e-2)
        assert "train_auroc" not in learn.recorder.metric_names and "auroc" not in learn.recorder.metric_names
        learn.fit(1, 1e-2, cbs=AUROCCallback())
        learn.fit(1, 1e-2, cbs=AUROCCallback())
        assert list(learn.recorder.metric_names).count("auroc") == 1 and len(learn.metrics) == 0


class _Boom(Callback):
    def after_epoch(self):
        raise RuntimeError("boom")


def test_fit_cbs_leave_the_metrics_when_the_fit_is_cancelled_or_raises(breast_dls):
    learn = _learner(breast_dls, cbs=[])
    with quiet(learn):
        learn.fit(3, 1e-2, cbs=[AUROCCallback(), EarlyStoppingCallback(monitor="valid_loss", min_delta=10)])
        assert len(learn.recorder.values) < 3 and len(learn.metrics) == 0  # cancelled by early stopping
        with pytest.raises(RuntimeError, match="boom"):
            learn.fit(1, 1e-2, cbs=[AUROCCallback(), _Boom()])
        assert len(learn.metrics) == 0


def test_learner_cbs_keep_their_column_across_fits(breast_dls):
    learn = _learner(breast_dls, train=True)
    with quiet(learn):
        learn.fit(1, 1e-2)
        learn.fit(2, 1e-2)
    names = list(learn.recorder.metric_names)
    assert names.count("auroc") == 1 and names.count("train_auroc") == 1
    assert len(set(column(learn, "train_auroc"))) == 2  # measured again, not frozen


# ------------------------------------------------------------ 4. per-class AUROC columns ---

def test_per_class_columns_and_a_scalar_to_monitor(wine_dls, tmp_path):
    learn = _learner(wine_dls, tmp_path, loss=None, average=None)
    learn.loss_func = AUMLossFlat(average="macro")
    stop = EarlyStoppingCallback(monitor="auroc", patience=5)
    with quiet(learn):
        learn.fit(2, 1e-3, cbs=[stop, SaveModelCallback(monitor="auroc")])
    per_class = [f"auroc_{c}" for c in wine_dls.vocab]
    names = list(learn.recorder.metric_names)
    assert all(names.count(n) == 1 for n in per_class + ["auroc"])
    values = [column(learn, n)[-1] for n in per_class]
    hist = learn.auroc.history
    assert list(hist.columns) == ["epoch", "auroc"] + per_class
    assert all(isinstance(v, float) for v in column(learn, "auroc"))
    assert column(learn, "auroc")[-1] == pytest.approx(np.mean(values), abs=1e-12)
    assert hist[per_class].iloc[-1].tolist() == values
    assert stop.best == max(column(learn, "auroc"))


# ---------------------------------------------------------- 5. options that fit no problem ---

@pytest.mark.parametrize("kwargs, match", [({"max_fpr": 0.1}, "max_fpr"),
                                           ({"multi_class": "ovo", "average": "micro"}, "average"),
                                           ({"multi_class": "ovo", "average": None}, "average")])
def test_options_invalid_for_the_data_fail_before_training(wine_dls, kwargs, match):
    learn = _learner(wine_dls, **kwargs)
    before = _weights(learn)
    with quiet(learn), pytest.raises(ValueError, match=match):
        learn.fit(1, 1e-2)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(learn)))


# ------------------------------------------------------------ 8. an unlabelled pass: no ROC ---

def test_unlabelled_get_preds_leaves_no_stale_roc(breast_dls, breast_df):
    learn = _learner(breast_dls)
    with learn.no_bar():
        learn.validate()
    assert learn.auroc.roc is not None
    dl = learn.dls.test_dl(breast_df.drop(columns="label").iloc[:50])
    with learn.no_bar():
        learn.get_preds(dl=dl)
    assert learn.auroc.value is None and learn.auroc.roc is None
    with pytest.raises(RuntimeError, match="no labels"):
        learn.auroc.plot()
    with learn.no_bar():
        learn.validate()
    assert learn.auroc.roc is not None and len(learn.auroc.plot().lines) == 2


# -------------------------------------------------------------- 13. a one-row validation set ---

def test_one_row_validation_set_warns_like_one_class(breast_df):
    learn = _learner(_tabular_dls(breast_df, [5]))
    with learn.no_bar(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = learn.validate()[1]
    assert math.isnan(value)
    messages = _undefined(caught)
    assert len(messages) == 1 and "one class" in messages[0]
    two = _learner(_tabular_dls(breast_df, np.flatnonzero(breast_df["label"].to_numpy() == "benign")[:2].tolist()))
    with two.no_bar(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two.validate()
    assert len(_undefined(caught)) == 1 and "one class" in _undefined(caught)[0]
    with warnings.catch_warnings(record=True) as caught, learn.no_bar():
        warnings.simplefilter("always")
        learn.predict(breast_df.iloc[3])
    assert not _undefined(caught)
