"""`AUROCCallback` and the `AUROC` metric inside fastai Learners (tabular data: fast on a CPU).

Every recorded AUROC is checked against `sklearn.metrics.roc_auc_score` on the same model's outputs
from `learn.get_preds`, in float64 (the raw outputs: score, `z1 - z0` or a float64 softmax)."""
from __future__ import annotations

import math
import os
import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.block import CategoryBlock
from fastai.learner import Learner, load_learner
from fastai.losses import CrossEntropyLossFlat
from fastai.tabular.all import Normalize, TabularPandas, tabular_learner
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from fastai_aum import AUROC, AUMLossFlat, AUROCCallback, AUROCUndefinedWarning
from fastai_fixtures import (CollectTrainBatches, WithSoftmax, breast_df, breast_dls, close_figures,  # noqa: F401
                             column, last_linear, quiet, raw_preds, single_torch_thread, sk_auroc, sk_scores,
                             softmax64, wine_data, wine_dls)


def _fit(learn, n=1, lr=1e-2, **kwargs):
    with quiet(learn):
        learn.fit(n, lr, **kwargs)
    return learn


def _binary_learner(dls, n_out=1, loss=None, **cb_kwargs):
    set_seed(0)
    return tabular_learner(dls, n_out=n_out, loss_func=loss or AUMLossFlat(), cbs=AUROCCallback(**cb_kwargs))


def _auroc_metrics(learn):
    return [m for m in learn.metrics if isinstance(m, AUROC)]


# ------------------------------------------------------------------ the column in the table ---

def _table_headers(text: str) -> list[list[str]]:
    """The header rows of the progress tables fastprogress printed."""
    return [m.group(0).split() for m in re.finditer(r"epoch +train_loss[^\n\r]*?time", text)]


def test_cbs_alone_adds_an_auroc_column_once(breast_dls, capsys):
    learn = _binary_learner(breast_dls)
    for n_epochs in (2, 1, 1):
        learn.fit(n_epochs, 1e-2)  # with the progress bar: its table is under test
        assert list(learn.recorder.metric_names) == ["epoch", "train_loss", "valid_loss", "auroc", "time"]
        assert len(learn.recorder.values) == n_epochs
        assert all(len(row) == 3 for row in learn.recorder.values)
        assert len(_auroc_metrics(learn)) == 1
    with learn.no_bar():
        learn.validate()
        learn.get_preds()
    _fit(learn)
    assert learn.recorder.metric_names.count("auroc") == 1 and len(_auroc_metrics(learn)) == 1
    headers = _table_headers(capsys.readouterr().out)
    assert len(headers) == 3
    assert all(h == ["epoch", "train_loss", "valid_loss", "auroc", "time"] for h in headers)


def test_recorded_value_is_sklearn_on_get_preds_one_output(breast_dls):
    learn = _fit(_binary_learner(breast_dls, n_out=1), 2)
    recorded = column(learn, "auroc")
    raw, y = raw_preds(learn)  # note: get_preds resets learn.recorder.values
    assert raw.shape == (len(breast_dls.valid_ds), 1)
    assert recorded[-1] == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    with learn.no_bar():
        probs, _ = learn.get_preds()
    # what get_preds returns: both classes' probabilities, in vocabulary order, from the sigmoid of the one output
    torch.testing.assert_close(probs, torch.cat([torch.sigmoid(-raw), torch.sigmoid(raw)], 1))


def test_recorded_value_two_outputs_cross_entropy(breast_dls):
    learn = _fit(_binary_learner(breast_dls, n_out=2, loss=CrossEntropyLossFlat()), 2)
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert raw.shape[1] == 2
    assert recorded == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    # the float64 softmax probability of the positive class ranks exactly like z1 - z0
    assert recorded == pytest.approx(roc_auc_score(y.numpy(), softmax64(raw.numpy())[:, 1]), abs=1e-6)


def test_recorded_value_multiclass_ovr_macro(wine_dls):
    set_seed(0)
    learn = _fit(tabular_learner(wine_dls, cbs=AUROCCallback()), 1, 1e-3)  # cross-entropy, 3 outputs
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert raw.shape == (len(wine_dls.valid_ds), 3)
    assert recorded == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    assert recorded == pytest.approx(roc_auc_score(y.numpy(), softmax64(raw.numpy()), multi_class="ovr"), abs=1e-6)


@pytest.mark.parametrize("n_out", [2, 3])
def test_model_that_already_applies_softmax(breast_dls, wine_dls, n_out):
    dls = breast_dls if n_out == 2 else wine_dls
    set_seed(0)
    learn = tabular_learner(dls, loss_func=AUMLossFlat(), cbs=AUROCCallback())
    learn.model = WithSoftmax(learn.model)
    _fit(learn, 1, 1e-3)
    recorded = column(learn, "auroc")[-1]
    probs, y = raw_preds(learn)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)  # the outputs are probabilities
    assert recorded == pytest.approx(sk_auroc(probs, y, probabilities=True), abs=1e-6)
    with learn.no_bar():
        again, _ = learn.get_preds()  # AUMLossFlat's activation leaves probability rows alone
    torch.testing.assert_close(again, probs)


def test_metric_form(breast_dls, wine_dls):
    """`metrics=AUROC()` measures the same thing as the callback."""
    set_seed(0)
    learn = tabular_learner(breast_dls, n_out=1, loss_func=AUMLossFlat(), metrics=[AUROC(), AUROC(name="roc_auc")])
    _fit(learn)
    assert list(learn.recorder.metric_names) == ["epoch", "train_loss", "valid_loss", "auroc", "roc_auc", "time"]
    recorded, other = column(learn, "auroc")[-1], column(learn, "roc_auc")[-1]
    raw, y = raw_preds(learn)
    assert recorded == other == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    set_seed(0)
    learn = tabular_learner(wine_dls, metrics=AUROC(multi_class="ovo"))
    _fit(learn, 1, 1e-3)
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert recorded == pytest.approx(sk_auroc(raw, y, multi_class="ovo"), abs=1e-6)


# ------------------------------------------------------------------------------- options ---

@pytest.mark.parametrize("multi_class, average", [("ovr", "macro"), ("ovr", "weighted"), ("ovr", "micro"),
                                                  ("ovo", "macro"), ("ovo", "weighted")])
def test_multiclass_options(wine_dls, multi_class, average):
    set_seed(0)
    learn = _fit(tabular_learner(wine_dls, cbs=AUROCCallback(average=average, multi_class=multi_class)), 1, 1e-3)
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert recorded == pytest.approx(sk_auroc(raw, y, average=average, multi_class=multi_class), abs=1e-6)


def test_per_class_values(wine_dls):
    set_seed(0)
    learn = tabular_learner(wine_dls, cbs=AUROCCallback(average=None))
    with learn.no_bar():
        learn.validate()
    values = learn.auroc.per_class
    raw, y = raw_preds(learn)
    expected = sk_auroc(raw, y, average=None)
    assert len(values) == 3
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert learn.auroc.value == pytest.approx(np.mean(expected), abs=1e-6)  # a number to monitor


@pytest.mark.parametrize("max_fpr", [0.1, 0.5])
def test_max_fpr(breast_dls, max_fpr):
    learn = _fit(_binary_learner(breast_dls, n_out=1, max_fpr=max_fpr), 1, 1e-3)
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    expected = sk_auroc(raw, y, max_fpr=max_fpr)
    assert recorded == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(sk_auroc(raw, y), abs=1e-4)  # a partial AUROC, not the full one


def test_max_fpr_on_multiclass_is_a_clear_error(wine_dls):
    set_seed(0)
    learn = tabular_learner(wine_dls, cbs=AUROCCallback(max_fpr=0.5))
    with learn.no_bar(), pytest.raises(ValueError, match="max_fpr"):
        learn.validate()


def test_bad_options_are_clear_errors(wine_dls):
    with pytest.raises(ValueError, match="multi_class"):
        AUROCCallback(multi_class="ovx")
    with pytest.raises(ValueError, match="max_fpr"):
        AUROCCallback(max_fpr=1.5)
    with pytest.raises(ValueError, match="average"):
        AUROCCallback(average="sample")
    set_seed(0)
    learn = tabular_learner(wine_dls, cbs=AUROCCallback(average="samples"))
    with learn.no_bar(), pytest.raises(ValueError, match="average='samples' .* is for multi-label data"):
        learn.validate()
    learn = tabular_learner(wine_dls, cbs=AUROCCallback(multi_class="ovo", average="micro"))  # sklearn refuses it too
    with learn.no_bar(), pytest.raises(ValueError, match="average"):
        learn.validate()


def test_custom_name(breast_dls):
    learn = _fit(_binary_learner(breast_dls, name="val_auc"), 2)
    names = list(learn.recorder.metric_names)
    assert "val_auc" in names and "auroc" not in names
    recorded = column(learn, "val_auc")
    assert list(learn.auroc.history.columns) == ["epoch", "val_auc"]
    assert learn.auroc.history["val_auc"].tolist() == recorded
    raw, y = raw_preds(learn)
    assert recorded[-1] == pytest.approx(sk_auroc(raw, y), abs=1e-6)


def test_train_auroc_column(breast_dls):
    collect = CollectTrainBatches()
    set_seed(0)
    learn = tabular_learner(breast_dls, n_out=1, loss_func=AUMLossFlat(), cbs=[AUROCCallback(train=True), collect])
    _fit(learn, 2, 1e-3)
    names = list(learn.recorder.metric_names)
    assert names.count("auroc") == 1 and names.count("train_auroc") == 1
    train_recorded, valid_recorded = column(learn, "train_auroc"), column(learn, "auroc")
    preds, targs = collect.all  # the last epoch's training batches, raw
    assert len(targs) == len(breast_dls.train) * breast_dls.train.bs
    assert train_recorded[-1] == pytest.approx(sk_auroc(preds, targs), abs=1e-6)
    assert learn.auroc.history["train_auroc"].tolist() == train_recorded
    raw, y = raw_preds(learn)
    assert valid_recorded[-1] == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    assert train_recorded[-1] != pytest.approx(valid_recorded[-1], abs=1e-9)
    stored = learn.auroc.train_metric.preds
    assert stored.shape == (len(targs), 1) and not stored.requires_grad


# ---------------------------------------------------------------------------- tracking ---

class _Scripted(nn.Module):
    """A fixed linear scorer of the continuous columns whose sign a callback sets per epoch (a buffer,
    so `SaveModelCallback` saves and restores it)."""

    def __init__(self, n_cont: int):
        super().__init__()
        self.lin = nn.Linear(n_cont, 1)
        self.register_buffer("sign", torch.ones(()))

    def forward(self, x_cat, x_cont):
        return self.sign * self.lin(x_cont)


class _SignSchedule(Callback):
    def __init__(self, signs):
        self.signs = signs

    def before_train(self):
        self.learn.model.sign.fill_(self.signs[self.epoch])


def _scripted_learner(dls, tmp_path):
    set_seed(0)
    learn = Learner(dls, _Scripted(len(dls.cont_names)), loss_func=AUMLossFlat(), cbs=AUROCCallback(), path=tmp_path)
    with learn.no_bar():
        a = learn.validate()[1]
    assert abs(a - 0.5) > 0.05  # sign +1 gives `a`, sign -1 gives 1 - a
    return learn, a


def test_save_model_callback_keeps_the_highest_auroc(breast_dls, tmp_path):
    learn, a = _scripted_learner(breast_dls, tmp_path)
    best_sign = 1 if a > 0.5 else -1
    save = SaveModelCallback(monitor="auroc", fname="best")
    with quiet(learn), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Better model found" is printed, not warned
        learn.fit(3, 0.0, cbs=[save, _SignSchedule([-best_sign, best_sign, -best_sign])])
    recorded = column(learn, "auroc")
    assert recorded == pytest.approx([1 - max(a, 1 - a), max(a, 1 - a), 1 - max(a, 1 - a)], abs=1e-9)
    assert save.best == max(recorded)
    assert (tmp_path / "models" / "best.pth").exists()
    assert learn.model.sign.item() == best_sign  # the best epoch's model was loaded back
    with learn.no_bar():
        assert learn.validate()[1] == pytest.approx(max(recorded), abs=1e-12)


def test_save_model_callback_on_a_real_fit(breast_dls, tmp_path):
    learn = _binary_learner(breast_dls)
    learn.path = tmp_path
    save = SaveModelCallback(monitor="auroc", fname="best_auroc")
    with quiet(learn):
        learn.fit(4, 3e-2, cbs=save)
    recorded = column(learn, "auroc")
    assert save.best == max(recorded)
    assert (tmp_path / "models" / "best_auroc.pth").exists()
    with learn.no_bar():
        assert learn.validate()[1] == pytest.approx(max(recorded), abs=1e-9)


def test_early_stopping_treats_higher_as_better(breast_dls, tmp_path):
    learn, a = _scripted_learner(breast_dls, tmp_path)
    good = 1 if a > 0.5 else -1
    stop = EarlyStoppingCallback(monitor="auroc", patience=1)
    with quiet(learn):
        learn.fit(6, 0.0, cbs=[stop, _SignSchedule([-good] + [good] * 5)])
    # epoch 0 sets the best, epoch 1 improves on it (higher), epoch 2 does not: stop after 3 epochs.
    # (Lower-is-better would have stopped after 2.)
    assert len(learn.recorder.values) == 3
    assert stop.best == pytest.approx(max(a, 1 - a), abs=1e-12)


# ---------------------------------------------------------------------- plot and history ---

def test_plot_binary(breast_dls):
    learn = _fit(_binary_learner(breast_dls), 1)
    ax = learn.auroc.plot()
    assert len(ax.lines) == 2  # the ROC curve and the chance diagonal
    raw, y = raw_preds(learn)
    fpr, tpr, _ = roc_curve(y.numpy(), sk_scores(raw), drop_intermediate=False)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), fpr, atol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr, atol=1e-12)
    np.testing.assert_allclose(ax.lines[1].get_xydata(), [[0, 0], [1, 1]])
    fig, own = plt.subplots()
    assert learn.auroc.plot(ax=own) is own


def test_plot_titles_and_labels_fit_in_the_figure(breast_dls, wine_dls):
    """Rendered at the default size, every text of the plot (title, axis labels, ticks) lies inside the figure."""
    set_seed(0)
    learns = [_fit(_binary_learner(breast_dls), 1), _fit(tabular_learner(wine_dls, cbs=AUROCCallback()), 1, 1e-3)]
    for learn in learns:
        for kind in ("roc", "pr"):
            ax = learn.auroc.plot(kind=kind)
            fig = ax.figure
            fig.canvas.draw()
            renderer, box = fig.canvas.get_renderer(), fig.bbox
            ticks = [t for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim()))
                     for loc, t in zip(axis.get_ticklocs(), axis.get_ticklabels()) if lim[0] <= loc <= lim[1]]
            texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ticks]
            assert "last pass" in ax.title.get_text()
            for text in texts:
                if text.get_text():
                    extent = text.get_window_extent(renderer)
                    assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1, \
                        (kind, text.get_text(), extent, box)
            plt.close(fig)


def test_plot_multiclass_one_line_per_class(wine_dls):
    set_seed(0)
    learn = _fit(tabular_learner(wine_dls, cbs=AUROCCallback()), 1, 1e-3)
    ax = learn.auroc.plot()
    assert len(ax.lines) == 3 + 1
    raw, y = raw_preds(learn)
    p = softmax64(raw.numpy())
    labels = ax.get_legend_handles_labels()[1]
    for k, name in enumerate(wine_dls.vocab):
        fpr, tpr, _ = roc_curve(y.numpy() == k, p[:, k], drop_intermediate=False)
        np.testing.assert_allclose(ax.lines[k].get_xdata(), fpr, atol=1e-12)
        np.testing.assert_allclose(ax.lines[k].get_ydata(), tpr, atol=1e-12)
        assert labels[k].startswith(f"{name}:")
        area = float(re.search(r"AUROC ([0-9.]+)", labels[k]).group(1))
        assert area == pytest.approx(roc_auc_score(y.numpy() == k, p[:, k]), abs=6e-4)


def test_plot_before_any_validation_is_a_clear_error(breast_dls):
    learn = _binary_learner(breast_dls)
    with pytest.raises(RuntimeError, match="no validation pass"):
        learn.auroc.plot()


def test_history_one_row_per_epoch_of_the_last_fit(breast_dls):
    learn = _fit(_binary_learner(breast_dls), 3)
    recorded = column(learn, "auroc")
    hist = learn.auroc.history
    assert isinstance(hist, pd.DataFrame)
    assert hist["epoch"].tolist() == [0, 1, 2]
    assert hist["auroc"].tolist() == recorded
    with learn.no_bar():
        learn.validate()
        learn.get_preds()
    pd.testing.assert_frame_equal(learn.auroc.history, hist)
    _fit(learn, 2)
    assert learn.auroc.history["epoch"].tolist() == [0, 1]
    assert learn.auroc.history["auroc"].tolist() == column(learn, "auroc")


# --------------------------------------------------------------------- one-class validation ---

def _one_class_valid_dls(df):
    neg = np.flatnonzero(df["label"].to_numpy() == "benign")
    valid = sorted(neg[::3].tolist())
    train = sorted(set(range(len(df))) - set(valid))
    to = TabularPandas(df, procs=[Normalize], cont_names=[c for c in df.columns if c != "label"], y_names="label",
                       y_block=CategoryBlock(), splits=(train, valid))
    return to.dataloaders(bs=64)


def test_one_class_validation_set_gives_nan_and_one_warning(breast_df, capsys):
    dls = _one_class_valid_dls(breast_df)
    assert dls.vocab == ["benign", "malignant"] and set(dls.valid_ds.ys["label"]) == {0}
    learn = _binary_learner(dls)
    with learn.no_bar(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn.fit(4, 1e-2)
    undefined = [w for w in caught if issubclass(w.category, AUROCUndefinedWarning)]
    assert len(undefined) == 1, [str(w.message) for w in undefined]
    assert "auroc" in str(undefined[0].message) and "one class" in str(undefined[0].message)
    assert len(learn.recorder.values) == 4  # training went on
    assert all(math.isnan(v) for v in column(learn, "auroc"))
    assert all(np.isfinite(v) for v in column(learn, "train_loss"))
    assert all(math.isnan(v) for v in learn.auroc.history["auroc"])
    printed = capsys.readouterr().out
    assert printed.count("nan") >= 4  # the logged rows show it


class _CountingLabel:
    """`get_y` that counts its calls: how many labels a check reads."""

    def __init__(self):
        self.calls = 0

    def __call__(self, row):
        self.calls += 1
        return row["label"]


def _block_dls(labels, n_train=40):
    """A generic DataBlock (labels read item by item, as for images or texts) whose validation set holds
    `labels` in this order; the training set has both classes."""
    from fastai.data.block import DataBlock, TransformBlock
    from fastai.data.transforms import ColReader, IndexSplitter
    rng = np.random.default_rng(0)
    y = ["no", "yes"] * (n_train // 2) + list(labels)
    df = pd.DataFrame({"x": list(rng.normal(size=(len(y), 3)).astype("float32")), "label": y})
    get_y = _CountingLabel()
    block = DataBlock(blocks=(TransformBlock(type_tfms=lambda v: torch.as_tensor(v)), CategoryBlock),
                      get_x=ColReader("x"), get_y=get_y, splitter=IndexSplitter(range(n_train, len(y))))
    return block.dataloaders(df, bs=16), get_y


@pytest.mark.parametrize("order", ["sorted", "reversed", "middle", "shuffled"])
def test_validation_classes_are_read_from_a_few_labels(order):
    """The one-class check reads labels from both ends inwards and stops at the second class; its answer
    is the set of classes present (a brute-force read of every label), and a one-class set is read whole."""
    from fastai_aum.reading import valid_classes, valid_labels
    labels = {"sorted": ["no"] * 300 + ["yes"] * 300, "reversed": ["yes"] * 300 + ["no"] * 300,
              "middle": ["no"] * 299 + ["yes"] + ["no"] * 300,
              "shuffled": list(np.random.default_rng(1).permutation(["no"] * 540 + ["yes"] * 60))}[order]
    dls, get_y = _block_dls(labels)
    get_y.calls = 0
    present, n = valid_classes(dls)
    assert (present, n) == (sorted(set(valid_labels(dls))), 600) == ([0, 1], 600)
    assert get_y.calls - 600 <= (600 if order == "middle" else 40)  # valid_labels itself read all 600
    get_y.calls = 0
    valid_classes(dls)
    assert get_y.calls <= (600 if order == "middle" else 40)
    one, get_one = _block_dls(["no"] * 50)
    get_one.calls = 0
    assert valid_classes(one) == ([0], 50) and get_one.calls == 50


def test_one_class_block_validation_set_warns_and_a_tracker_refuses_before_training(tmp_path):
    dls, _ = _block_dls(["no"] * 30)
    set_seed(0)
    learn = Learner(dls, nn.Linear(3, 2), loss_func=CrossEntropyLossFlat(), cbs=AUROCCallback(), path=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(learn)
    undefined = [str(w.message) for w in caught if issubclass(w.category, AUROCUndefinedWarning)]
    assert len(undefined) == 1 and "validation set (30 example(s)) holds one class only, ['no']" in undefined[0]
    assert math.isnan(column(learn, "auroc")[0])
    with pytest.raises(ValueError, match=r"one class only.*monitor='auroc'"):
        _fit(learn, cbs=SaveModelCallback(monitor="auroc"))


# ---------------------------------------------------------------- outside fit: validate etc ---

def test_validate_and_get_preds_outside_fit(breast_dls, breast_df):
    learn = _binary_learner(breast_dls)
    with learn.no_bar():
        loss, value = learn.validate()
    raw, y = raw_preds(learn)
    assert value == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    assert learn.auroc.value == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    with learn.no_bar():
        train_raw, train_y = learn.get_preds(ds_idx=0, act=lambda x: x)
    assert len(train_y) == len(breast_dls.train_ds)
    assert learn.auroc.value == pytest.approx(sk_auroc(train_raw, train_y), abs=1e-6)
    with warnings.catch_warnings(record=True) as caught, learn.no_bar():
        warnings.simplefilter("always")
        _, clas, probs = learn.predict(breast_df.iloc[3])
    assert not [w for w in caught if issubclass(w.category, AUROCUndefinedWarning)]
    assert probs.shape == (2,) and int(clas) == int(probs[1] > 0.5)  # one probability per class


# ------------------------------------------------------------- raw outputs, detached, exact ---

def test_stored_outputs_are_raw_and_detached(breast_dls):
    learn = _fit(_binary_learner(breast_dls, n_out=1), 1)
    stored = learn.auroc.metric.preds
    raw, y = raw_preds(learn)
    assert stored.shape == raw.shape == (len(breast_dls.valid_ds), 1)
    assert not stored.requires_grad and stored.dtype == torch.float32
    torch.testing.assert_close(stored, raw)  # logits, not sigmoid probabilities
    assert (stored < 0).any() and (stored > 1).any()
    metric = AUROC()
    metric.add(torch.randn(4, 1, requires_grad=True) * 2, torch.tensor([0, 1, 0, 1]))
    assert not metric._preds[0].requires_grad


def test_huge_logits_are_ranked_exactly(breast_dls):
    """Scaling the last layer by 1e3 saturates a float32 sigmoid: many probabilities tie at 0 or 1.
    The AUROC must still be that of the float64 scores."""
    learn = _fit(_binary_learner(breast_dls, n_out=1), 1, 1e-3)
    lin = last_linear(learn.model)
    with torch.no_grad():
        lin.weight.mul_(1e3)
        lin.bias.mul_(1e3)
    with learn.no_bar():
        value = learn.validate()[1]
    raw, y = raw_preds(learn)
    p32 = torch.sigmoid(raw[:, 0])
    assert len(torch.unique(p32)) < len(torch.unique(raw))  # false ties in float32
    exact = roc_auc_score(y.numpy(), raw[:, 0].double().numpy())
    squashed = roc_auc_score(y.numpy(), p32.numpy())
    assert abs(exact - squashed) > 1e-3
    assert value == pytest.approx(exact, abs=1e-9)
    assert learn.auroc.value == pytest.approx(exact, abs=1e-9)


# ------------------------------------------------------------------------------------ export ---

@pytest.mark.filterwarnings("ignore:load_learner` uses Python's insecure pickle")
def test_export_and_load_learner(breast_dls, breast_df, tmp_path):
    learn = _binary_learner(breast_dls, train=True)
    learn.path = tmp_path
    learn.export("fresh.pkl")
    _fit(learn, 1)
    with learn.no_bar():  # a large pass: the metric keeps about 2000 outputs and targets
        learn.get_preds(dl=learn.dls.test_dl(pd.concat([breast_df] * 5, ignore_index=True)))
    assert len(learn.auroc.metric.preds) == 5 * len(breast_df)
    learn.export("trained.pkl")
    assert learn.auroc.metric.preds is not None  # exporting leaves the live learner alone
    fresh, trained = os.path.getsize(tmp_path / "fresh.pkl"), os.path.getsize(tmp_path / "trained.pkl")
    assert abs(trained - fresh) < 4000, (fresh, trained)  # the outputs alone would take > 30 kB
    loaded = load_learner(tmp_path / "trained.pkl")
    assert loaded.auroc.metric.preds is None and loaded.auroc.metric.targs is None
    assert loaded.auroc.train_metric.preds is None
    row = breast_df.iloc[7]
    with loaded.no_bar(), learn.no_bar(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, clas, probs = loaded.predict(row)
        _, clas0, probs0 = learn.predict(row)
    assert not [w for w in caught if issubclass(w.category, AUROCUndefinedWarning)]
    assert int(clas) == int(clas0)
    torch.testing.assert_close(probs, probs0)


@pytest.mark.slow
def test_multiclass_text_plot_has_one_labelled_curve_per_class():
    import matplotlib
    matplotlib.use("Agg")
    from fastai.text.models.awdlstm import awd_lstm_clas_config

    from fastai_aum import aum_learner
    from fastai_aum.datasets import text_df, text_dls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = text_dls(text_df(n=200, n_classes=3))
        config = {**awd_lstm_clas_config, "emb_sz": 16, "n_hid": 16, "n_layers": 1}
        learn = aum_learner(dls, pretrained=False, config=config, drop_mult=0.1)
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
    labels = [line.get_label() for line in learn.auroc.plot().get_lines() if not line.get_label().startswith("_")]
    assert [label.split(":")[0] for label in labels] == ["negative", "neutral", "positive"]


# ------------------------------------------------------------------------- average precision ---

def test_average_precision_column_is_sklearn_from_the_same_kept_outputs(breast_dls, wine_dls):
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import label_binarize
    for dls, n_out in ((breast_dls, 1), (breast_dls, 2), (wine_dls, 3)):
        set_seed(0)
        cb = AUROCCallback(average_precision=True)
        learn = tabular_learner(dls, n_out=n_out, loss_func=AUMLossFlat(), cbs=cb)
        _fit(learn, 2)
        assert "average_precision" in learn.recorder.metric_names
        recorded = column(learn, "average_precision")[-1]
        raw, y = raw_preds(learn)
        y = y.reshape(-1).numpy()
        if n_out == 3:
            expected = average_precision_score(label_binarize(y, classes=[0, 1, 2]), softmax64(raw.numpy()))
        else:
            expected = average_precision_score(y, sk_scores(raw))
        assert recorded == pytest.approx(expected, abs=1e-9)
        assert list(cb.history.columns) == ["epoch", "auroc", "average_precision"]
        assert cb.ap_metric.parent is cb.metric  # read from the AUROC metric's outputs: no second copy
        ax = cb.plot(kind="pr")
        assert ax.get_xlabel() == "recall" and len(ax.get_lines()) == (1 if n_out < 3 else 3)
        plt.close("all")
    with pytest.raises(ValueError, match="`kind` must be one of 'roc', 'pr', got 'det'"):
        cb.plot(kind="det")


def test_a_pass_of_huge_finite_outputs_is_ranked_and_one_class_is_nan():
    """The end-of-pass checks read one sum and one aminmax: finite outputs whose sum overflows to inf are
    no NaN (counted exactly, then ranked as scikit-learn ranks them), and labels of one value (uint8 or bool)
    give NaN with the one-class warning."""
    metric = AUROC()
    scores = torch.tensor([[3e38], [-3e38], [3.1e38], [1.0], [-2.0], [3.2e38]])
    labels = torch.tensor([1, 0, 0, 1, 0, 1])
    metric.add(scores, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AUROCUndefinedWarning)
        assert metric.value == pytest.approx(roc_auc_score(labels.numpy(), scores[:, 0].numpy()), abs=1e-12)
    for one_class in (torch.ones(5, dtype=torch.uint8), torch.zeros(5, dtype=torch.bool)):
        metric = AUROC()
        metric.add(torch.randn(5, 1), one_class)
        with pytest.warns(AUROCUndefinedWarning, match=r"only one class \(\[(1|False)\]\)"):
            assert math.isnan(metric.value)


def test_a_subclass_gets_every_inner_loop_event_it_defines(breast_dls):
    """`AUROCCallback` returns at once from inner-loop events it has no method for (fastai's dispatch costs
    two lookups through the Learner per batch and event); a subclass's own methods still run, in training
    and validation batches as fastai's `run_train`/`run_valid` say, and the AUROC is still scikit-learn's."""
    class Counting(AUROCCallback):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seen = {}

        def _count(self, event):
            key = (event, self.training)
            self.seen[key] = self.seen.get(key, 0) + 1

        def after_pred(self):
            self._count("after_pred")

        def before_step(self):
            self._count("before_step")

    class ValidOnly(Counting):
        run_train = False

    set_seed(0)
    counting, valid_only = Counting(), ValidOnly(name="auroc_v")
    learn = tabular_learner(breast_dls, n_out=1, loss_func=AUMLossFlat(), cbs=[counting, valid_only])
    _fit(learn, 1, 1e-3)
    n_train, n_valid = len(breast_dls.train), len(breast_dls.valid)
    assert counting.seen == {("after_pred", True): n_train, ("before_step", True): n_train,
                             ("after_pred", False): n_valid}
    assert valid_only.seen == {("after_pred", False): n_valid}
    raw, y = raw_preds(learn)
    assert column(learn, "auroc")[-1] == pytest.approx(sk_auroc(raw, y), abs=1e-6)
