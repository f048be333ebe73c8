"""Multi-label (multi-hot) targets in the fastai layer: `AUMLossFlat`, `AUROCCallback`/`AUROC` and
`aum_learner` on a `MultiCategoryBlock` tabular data set with rare labels.

AUROC is checked against `sklearn.metrics.roc_auc_score` on the raw outputs of `get_preds`, the loss
against `fastai_aum.functional.aum` on the same batch."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from fastai.learner import load_learner
from fastai.losses import BCEWithLogitsLossFlat
from fastai.tabular.all import tabular_learner
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score

from fastai_aum import AUMLossFlat, AUROCCallback, aum_learner
from fastai_aum.vocab import is_multilabel, multi_hot_labels
from fastai_aum.datasets import multilabel_df, tabular_dls
from fastai_aum.functional import aum
from fastai_fixtures import (CollectTrainBatches, breast_df, breast_dls, close_figures, column,  # noqa: F401
                             count_host_reads, quiet, raw_preds, single_torch_thread)


@pytest.fixture(scope="module")
def ml_df():
    return multilabel_df(n=300)


@pytest.fixture(scope="module")
def labels(ml_df):
    return [c for c in ml_df.columns if not c.startswith("x")]


@pytest.fixture(scope="module")
def ml_dls(ml_df, labels):
    set_seed(0)
    return tabular_dls(ml_df, labels, bs=64)


def _fit(learn, epochs=2, lr=1e-2):
    with quiet(learn), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit(epochs, lr)
    return learn


def _sk_macro(learn):
    p, y = raw_preds(learn)
    return roc_auc_score(y.numpy(), p.double().numpy(), average="macro"), p, y


# ------------------------------------------------------------------------------------ data ---

def test_generated_data_has_rare_labels(ml_df, labels, ml_dls):
    shares = ml_df[labels].mean()
    assert shares.min() <= 0.06 and shares.max() > 0.2
    assert ml_dls.vocab == labels and is_multilabel(ml_dls)
    y = multi_hot_labels(ml_dls, 1)
    assert y.shape == (len(ml_dls.valid_ds), len(labels)) and bool((y.sum(0) > 0).all())


def test_single_label_dls_are_not_multilabel(breast_dls):
    assert not is_multilabel(breast_dls)


# ------------------------------------------------------------------------------------ loss ---

def _batch(n=40, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g), (torch.rand(n, k, generator=g) < 0.4).float()


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_loss_equals_functional_aum(average):
    z, y = _batch()
    loss = AUMLossFlat(average=average, multilabel=True)
    assert loss(z, y).item() == pytest.approx(aum(z, y, average=average).item(), abs=1e-7)
    assert loss(z, y.long()).item() == pytest.approx(aum(z, y, average=average).item(), abs=1e-7)
    assert AUMLossFlat(reduction="none", multilabel=True)(z, y).shape == (len(z),)


def test_activation_and_decodes_per_label():
    z, y = _batch(n=6)
    loss = AUMLossFlat(multilabel=True)
    p = loss.activation(z)
    assert torch.allclose(p, torch.sigmoid(z))
    assert torch.equal(loss.decodes(p), p > 0.5)
    loss.thresh = [0.1, 0.9, 0.5, 0.3]
    assert torch.equal(loss.decodes(p), p > torch.tensor([0.1, 0.9, 0.5, 0.3]))
    loss.thresh = torch.tensor([0.2, 0.2, 0.8, 0.8])
    assert torch.equal(loss.decodes(p), p > torch.tensor([0.2, 0.2, 0.8, 0.8]))
    loss.thresh = [0.5, 0.5]
    with pytest.raises(ValueError, match="one threshold per label"):
        loss.decodes(p)


def test_nan_output_gives_nan_loss_without_exception():
    z, y = _batch()
    z = z.requires_grad_()
    bad = z.detach().clone()
    bad[3, 1] = math.nan
    bad.requires_grad_()
    for average in ("micro", "macro"):
        value = AUMLossFlat(average=average, multilabel=True)(bad, y)
        assert math.isnan(value.item())
        value.backward()
        assert bool(torch.isfinite(bad.grad).all())


def test_bad_multi_hot_values_raise():
    z, y = _batch()
    with pytest.raises(ValueError, match="0 and 1"):
        AUMLossFlat(multilabel=True)(z, y * 2)


def test_one_class_batches_count_batches_without_a_two_class_label():
    z, _ = _batch(n=8)
    loss = AUMLossFlat(multilabel=True)
    loss(z.requires_grad_(), torch.zeros(8, 4))  # no label has both classes
    loss(z, torch.eye(8)[:, :4])  # every label has both
    assert loss.one_class_batches == 1


def test_positive_is_refused_for_multilabel():
    with pytest.raises(ValueError, match="multi-label"):
        AUMLossFlat(multilabel=True, pos_label="a")


# -------------------------------------------------------------------------------- learners ---

def test_aum_learner_multilabel(ml_dls, labels):
    set_seed(0)
    learn = aum_learner(ml_dls, layers=[32])
    assert isinstance(learn.loss_func, AUMLossFlat) and learn.loss_func.multilabel
    collect = CollectTrainBatches()
    learn.add_cb(collect)
    _fit(learn)
    recorded = column(learn, "auroc")  # before `get_preds`, which leaves the Recorder its own row
    assert learn.auroc.history["auroc"].tolist() == recorded
    expected, p, y = _sk_macro(learn)
    assert p.shape == (len(ml_dls.valid_ds), len(labels))
    assert recorded[-1] == pytest.approx(expected, abs=1e-9)
    assert learn.auroc.value == pytest.approx(expected, abs=1e-9)
    preds, targs = collect.preds[-1], collect.targs[-1]  # the loss of a training batch is `aum` of it
    assert learn.loss_func(preds, targs).item() == pytest.approx(aum(preds, targs.float()).item(), abs=1e-7)
    probs, _, decoded = learn.get_preds(with_decoded=True)
    assert torch.allclose(probs, torch.sigmoid(p), atol=1e-6) and torch.equal(decoded, probs > 0.5)


def test_tabular_learner_per_label_columns(ml_dls, labels):
    set_seed(0)
    learn = tabular_learner(ml_dls, layers=[32], loss_func=AUMLossFlat(), cbs=AUROCCallback(average=None))
    _fit(learn)
    names = [f"auroc_{c}" for c in labels]
    assert all(n in learn.recorder.metric_names for n in names)
    recorded = [column(learn, n)[-1] for n in names]
    p, y = raw_preds(learn)
    per_label = roc_auc_score(y.numpy(), p.double().numpy(), average=None)
    np.testing.assert_allclose(learn.auroc.per_class, per_label, atol=1e-9)
    np.testing.assert_allclose(recorded, per_label, atol=1e-9)
    np.testing.assert_allclose(learn.auroc.history[names].iloc[-1].to_numpy(), per_label, atol=1e-9)
    assert learn.auroc.value == pytest.approx(per_label.mean(), abs=1e-9)


def test_macro_auroc_metric_equals_sklearn(ml_dls):
    set_seed(1)
    learn = tabular_learner(ml_dls, layers=[32], loss_func=AUMLossFlat(average="macro"), cbs=AUROCCallback())
    _fit(learn, epochs=1)
    recorded = column(learn, "auroc")[-1]
    expected, _, _ = _sk_macro(learn)
    assert recorded == pytest.approx(expected, abs=1e-9)


def test_plot_one_line_per_label(ml_dls, labels):
    set_seed(0)
    learn = _fit(aum_learner(ml_dls, layers=[16]), epochs=1)
    ax = learn.auroc.plot()
    named = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(named) == len(labels)
    assert [n.split(":")[0] for n in named] == labels
    assert len(learn.auroc.roc) == len(labels)


def test_positive_refused_in_callback_and_learner(ml_dls):
    with pytest.raises(ValueError, match="multi-label"):
        aum_learner(ml_dls, layers=[8], pos_label="sports")
    learn = tabular_learner(ml_dls, layers=[8], loss_func=AUMLossFlat(), cbs=AUROCCallback(pos_label="sports"))
    with pytest.raises(ValueError, match="pos_label"):
        _fit(learn, epochs=1)


def test_validation_one_class_check_does_not_misfire(ml_dls):
    set_seed(0)
    learn = tabular_learner(ml_dls, layers=[8], loss_func=AUMLossFlat(), cbs=AUROCCallback())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no one-class warning (each label has both classes in validation)
        with quiet(learn):
            learn.fit(1, 1e-2)


@pytest.mark.parametrize("loss", ["ce", "weighted_ce"])
def test_cross_entropy_losses_are_bce(ml_dls, labels, loss):
    learn = aum_learner(ml_dls, layers=[16], loss=loss)
    assert isinstance(learn.loss_func, BCEWithLogitsLossFlat)
    y = multi_hot_labels(ml_dls, 0)
    pos_weight = learn.loss_func.func.pos_weight
    if loss == "ce":
        assert pos_weight is None
    else:
        np.testing.assert_allclose(pos_weight.numpy(), ((len(y) - y.sum(0)) / y.sum(0)).numpy(), rtol=1e-6)
    _fit(learn, epochs=1)
    recorded = column(learn, "auroc")[-1]
    expected, p, _ = _sk_macro(learn)
    assert p.shape[1] == len(labels)
    assert recorded == pytest.approx(expected, abs=1e-9)


def test_nan_outputs_in_a_fit_give_nan_without_exception(ml_dls):
    set_seed(0)
    learn = aum_learner(ml_dls, layers=[8])
    with torch.no_grad():
        learn.model.layers[-1][0].bias.fill_(math.nan)
    _fit(learn, epochs=1)
    assert math.isnan(learn.recorder.values[-1][1])  # valid_loss
    assert math.isnan(column(learn, "auroc")[-1])


def test_export_load_learner_round_trip(ml_dls, tmp_path):
    set_seed(0)
    learn = _fit(aum_learner(ml_dls, layers=[16]), epochs=1)
    learn.loss_func.thresh = [0.3, 0.4, 0.5, 0.6, 0.7]
    path = tmp_path / "ml.pkl"
    learn.export(path)
    loaded = load_learner(path)
    assert loaded.loss_func.multilabel and loaded.loss_func.thresh == [0.3, 0.4, 0.5, 0.6, 0.7]
    row = ml_dls.valid_ds.items.iloc[[0]]
    dl = loaded.dls.test_dl(row)
    with loaded.no_bar():
        probs, _, decoded = loaded.get_preds(dl=dl, with_decoded=True)
    assert probs.shape == (1, 5)
    assert torch.equal(decoded, probs > torch.tensor([0.3, 0.4, 0.5, 0.6, 0.7]))
    with quiet(learn):
        expected = learn.get_preds(dl=learn.dls.test_dl(row))[0]
    assert torch.allclose(probs, expected, atol=1e-6)
    with loaded.no_bar():
        _, decoded_one, probs_one = loaded.predict(row.iloc[0])
    assert torch.equal(decoded_one, probs_one > torch.tensor([0.3, 0.4, 0.5, 0.6, 0.7]))


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_multilabel_loss_never_reads_back_off_the_cpu(monkeypatch, average):
    """Where a read-back costs a sync (a GPU), the multi-label loss does none per batch, forward and
    backward (forced on the CPU by treating it like such a device); NaN and bad labels as in the binary path."""
    import fastai_aum.functional.aum_loss as aum_loss
    import fastai_aum.losses as losses
    monkeypatch.setattr(losses, "_SYNC_IS_FREE_ON", ())
    monkeypatch.setattr(aum_loss, "_SPARSE_TIES_ON", ())
    z, y = _batch(n=64, k=5, seed=2)
    loss = AUMLossFlat(average=average, multilabel=True)
    calls = count_host_reads(monkeypatch)
    preds = z.clone().requires_grad_()
    value = loss(preds, y)
    value.backward()
    nan_value = loss(preds.detach() * math.nan, y)
    loss(preds, torch.zeros_like(y))  # a batch where no label has both classes
    assert calls == []
    monkeypatch.undo()
    assert value.item() == pytest.approx(aum(z, y, average=average).item(), abs=1e-6)
    assert math.isnan(nan_value.item()) and loss.one_class_batches == 1
    monkeypatch.setattr(losses, "_SYNC_IS_FREE_ON", ())
    with pytest.raises(RuntimeError, match="other than 0 and 1"):  # the asynchronous assert
        loss(z, y * 2)


def _best_cut_value(score: np.ndarray, y: np.ndarray) -> float:
    """The best F1 of any cut `score > t` of one label's float64 logits, by enumeration."""
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(score)]):
        pred = score > t
        tp = np.sum(pred & y)
        best = max(best, 2 * tp / (2 * tp + np.sum(pred & ~y) + np.sum(~pred & y)))
    return best


def test_per_label_thresholds(ml_dls, labels):
    """`tune_threshold` on a multi-label Learner (AUM, or fastai's BCE wrapped once) tunes one cut per label,
    each the best F1 cut of that label's logits (brute force); `decodes` applies them, and calibrating is refused."""
    for loss in ("aum", "ce"):
        set_seed(0)
        learn = _fit(aum_learner(ml_dls, loss=loss, layers=[16]))
        with quiet(learn):
            tuned = learn.tune_threshold("f1")
            raw, targs = raw_preds(learn)
            _, _, decoded = learn.get_preds(with_decoded=True)
        assert [t.pos_label for t in tuned] == labels
        logits, y = raw.double().numpy(), targs.numpy() != 0
        for j, t in enumerate(tuned):
            assert t.value == pytest.approx(_best_cut_value(logits[:, j], y[:, j]), abs=1e-12), (loss, labels[j])
            assert t.thresh == pytest.approx(1 / (1 + math.exp(-t.score_thresh)))
        expected = logits > np.array([t.score_thresh for t in tuned])
        np.testing.assert_array_equal(decoded.numpy().astype(bool), expected)
        with pytest.raises(ValueError, match="calibrate is for binary Learners; this one is multi-label"):
            learn.calibrate()


def test_samples_average_equals_sklearn(ml_df, labels):
    """`AUROCCallback(average='samples')`: each example's AUROC across its labels, averaged, as scikit-learn's.
    The last label is made the complement of the first, so that every example has both classes."""
    df = ml_df.copy()
    df[labels[-1]] = 1 - df[labels[0]]
    set_seed(0)
    learn = _fit(aum_learner(tabular_dls(df, labels, bs=64), layers=[16], auroc_kwargs=dict(average="samples")))
    p, y = raw_preds(learn)
    with learn.no_bar():
        value = learn.validate()[1]
    assert value == pytest.approx(roc_auc_score(y.numpy(), p.double().numpy(), average="samples"), abs=1e-9)
