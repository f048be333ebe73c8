"""AUM's recipes in the fastai layer: `AUMLossFlat(margin=, ce_weight=)`, `WarmStartCallback` (aum_learner's
`warm_start`), `LastLayerScaleCallback` (`last_layer_scale`), and recipes in `compare_losses`.

Values are checked against `aum` on shifted scores and torch's own cross-entropy, computed here from the
outputs; the warm start is checked batch by batch against both losses of the batch's outputs."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed

from fastai_aum import AUMLossFlat, LastLayerScaleCallback, WarmStartCallback, aum_learner, compare_losses_on_df
from fastai_aum.functional import aum
from fastai_aum.learner import make_loss
from fastai_aum.recipes import last_layer
from fastai_fixtures import breast_df, breast_dls, quiet, single_torch_thread, wine_data, wine_dls  # noqa: F401
from oracles import brute_aum


def _data(k: int, n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.cat([torch.arange(max(k, 2)), torch.randint(0, max(k, 2), (n - max(k, 2),), generator=g)])
    return (z[:, 0] if k == 1 else z), y


# ------------------------------------------------------------------------------- the loss ---


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("pos_label", [None, "b", "a"])
def test_binary_margin_holds_back_the_named_positive_class(k, pos_label):
    z, y = _data(k)
    loss = AUMLossFlat(margin=0.75, pos_label=pos_label, vocab=["a", "b"])
    pos = 0 if pos_label == "a" else 1
    score = (z if k == 1 else z[:, pos] - z[:, 1 - pos]).numpy()
    label = (y == pos).long().numpy() if k == 2 or pos == 1 else (y == 0).long().numpy()
    assert loss(z, y).item() == pytest.approx(brute_aum(score - 0.75 * label, label), abs=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_hybrid_is_aum_plus_lambda_cross_entropy(k, reduction):
    z, y = _data(k)
    lam = 0.3
    loss = AUMLossFlat(ce_weight=lam, reduction=reduction, margin=0.5 if k == 1 else 0.0)
    if k == 1:
        ce = F.binary_cross_entropy_with_logits(z, y.double(), reduction="none")
    else:
        ce = F.cross_entropy(z, y, reduction="none")
    value = aum(z, y, margin=0.5 if k == 1 else 0.0)
    n = len(y)
    expected = {"mean": value + lam * ce.mean(), "sum": value + lam * ce.sum(), "none": (value + lam * ce) / n}[reduction]
    torch.testing.assert_close(loss(z, y), expected)
    if reduction == "none":  # each example's share of the mean loss: the shares sum to it
        torch.testing.assert_close(loss(z, y).sum(), value + lam * ce.mean())


@pytest.mark.parametrize("k", [2, 3])
def test_hybrid_on_probabilities_uses_their_log(k):
    z, y = _data(k)
    p = torch.softmax(z, 1)
    torch.testing.assert_close(AUMLossFlat(ce_weight=1.0)(p, y), aum(p, y) + F.nll_loss(p.log(), y))


def test_multiclass_margin_of_one_or_more_is_refused(wine_dls):  # noqa: F811
    z, y = _data(3)
    for margin in (1.0, 2.5):
        with pytest.raises(ValueError, match="`margin` must be below 1 for multiclass scores"):
            aum(z, y, margin=margin)
        with pytest.raises(ValueError, match="`margin` must be below 1 for multiclass"):
            aum_learner(wine_dls, margin=margin)
    assert aum(z, y, margin=0.99).item() > 0
    multi_hot = torch.randint(0, 2, (40, 3))
    assert aum(z, multi_hot, margin=2.0).item() >= 0  # multi-label scores are logits: any margin


def test_hybrid_multilabel_is_aum_plus_mean_binary_cross_entropy():
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(30, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (30, 3), generator=g)
    loss = AUMLossFlat(ce_weight=2.0, margin=0.25, average="macro")
    expected = aum(z, y, average="macro", margin=0.25) + 2.0 * F.binary_cross_entropy_with_logits(z, y.double())
    torch.testing.assert_close(loss(z, y), expected)


@pytest.mark.parametrize("k", [1, 2])
def test_one_class_batch_margin_is_zero_and_hybrid_is_its_cross_entropy(k):
    """AUM is 0 without a negative, margin or not; the hybrid's cross-entropy still teaches (as torch computes it)."""
    z, _ = _data(k)
    y = torch.ones(len(z), dtype=torch.long)
    x = z.clone().requires_grad_(True)
    assert AUMLossFlat(margin=1.0)(x, y).item() == 0
    ce = F.binary_cross_entropy_with_logits(z, y.double()) if k == 1 else F.cross_entropy(z, y)
    torch.testing.assert_close(AUMLossFlat(margin=1.0, ce_weight=0.5)(x, y), 0.5 * ce)


def test_cross_entropy_only_is_the_cross_entropy_and_its_gradient():
    z, y = _data(2)
    loss = AUMLossFlat(ce_weight=0.5, margin=1.0)
    loss.cross_entropy_only = True
    x, ref = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    value = loss(x, y)
    torch.testing.assert_close(value, F.cross_entropy(z, y))
    value.backward()
    F.cross_entropy(ref, y).backward()
    torch.testing.assert_close(x.grad, ref.grad)


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu_checks", "sync_free_path"])
def test_hybrid_with_non_finite_outputs_is_nan_with_zero_gradient(device_path, monkeypatch):
    if device_path:  # the path every non-CPU device takes, exercised on the CPU
        monkeypatch.setattr("fastai_aum.losses._SYNC_IS_FREE_ON", ())
    z, y = _data(1)
    z[3] = float("nan")
    x = z.clone().requires_grad_(True)
    loss = AUMLossFlat(ce_weight=1.0)
    value = loss(x, y)
    assert torch.isnan(value)
    value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_recipe_options_are_checked_by_name_and_survive_pickling():
    for name in ("margin", "ce_weight"):
        for bad in (-1.0, float("nan"), "0.5", True):
            with pytest.raises(ValueError, match=f"`{name}` must be a finite number >= 0"):
                AUMLossFlat(**{name: bad})
    loss = AUMLossFlat(margin=0.5, ce_weight=0.1)
    loss.cross_entropy_only = True
    back = pickle.loads(pickle.dumps(loss))
    assert (back.margin, back.ce_weight, back.cross_entropy_only) == (0.5, 0.1, False)
    assert "margin=0.5" in repr(loss) and "ce_weight=0.1" in repr(loss)
    assert "margin" not in repr(AUMLossFlat())


def test_a_loss_pickled_before_the_recipes_loads_as_plain_aum():
    loss = AUMLossFlat()
    for attr in ("ce_weight", "cross_entropy_only"):
        del loss.__dict__[attr]
    del loss.func.__dict__["margin"]
    back = pickle.loads(pickle.dumps(loss))
    z, y = _data(1)
    assert back(z, y).item() == aum(z, y).item()


def test_make_loss_refuses_recipe_options_for_other_losses(breast_dls):  # noqa: F811
    with pytest.raises(ValueError, match="`margin`=1.0 is an option of the AUM loss, but `loss` is 'ce'"):
        make_loss("ce", breast_dls, margin=1.0)
    with pytest.raises(ValueError, match="`ce_weight`=0.5 .* CrossEntropyLossFlat; set it on the loss object"):
        make_loss(CrossEntropyLossFlat(), breast_dls, ce_weight=0.5)
    loss = make_loss("aum", breast_dls, margin=1.0, ce_weight=0.5)
    assert (loss.margin, loss.ce_weight) == (1.0, 0.5)


# --------------------------------------------------------------------------- warm start ---


class CheckEachBatchLoss(Callback):
    """Per epoch, which loss each training and validation batch's loss equals: 'ce', 'aum' or '?'."""
    order = 1  # after the loss, before anything else reads it

    def before_fit(self):
        self.epochs = []

    def before_epoch(self):
        self.epochs.append(set())

    def after_loss(self):
        pred, y = self.learn.pred.detach().float(), self.learn.yb[0].reshape(-1).long()
        score = pred[:, 1] - pred[:, 0]
        ce, value = F.cross_entropy(pred, y).item(), aum(score, y).item()
        got = self.learn.loss.item()
        self.epochs[-1].add("ce" if got == pytest.approx(ce, rel=1e-5) else
                            "aum" if got == pytest.approx(value, rel=1e-5, abs=1e-7) else "?")


def _learner(dls, **kwargs):
    set_seed(0)
    return aum_learner(dls, n_out=2, layers=[16], **kwargs)


def test_warm_start_switches_loss_at_the_right_epoch(breast_dls):  # noqa: F811
    learn = _learner(breast_dls, warm_start=2)
    check = CheckEachBatchLoss()
    with quiet(learn):
        learn.fit(4, 1e-2, cbs=check)
    assert check.epochs == [{"ce"}, {"ce"}, {"aum"}, {"aum"}]
    assert learn.loss_func.cross_entropy_only is False
    with quiet(learn):  # reused for a second fit: warm again for its first 2 epochs
        learn.fit(3, 1e-2, cbs=check)
    assert check.epochs == [{"ce"}, {"ce"}, {"aum"}]


def test_warm_start_callback_given_to_fit(breast_dls):  # noqa: F811
    learn = _learner(breast_dls)
    check = CheckEachBatchLoss()
    with quiet(learn):
        learn.fit(3, 1e-2, cbs=[WarmStartCallback(1), check])
        assert check.epochs == [{"ce"}, {"aum"}, {"aum"}]
        learn.fit(1, 1e-2, cbs=check)  # the callback left with its fit
    assert check.epochs == [{"aum"}]


class Stop(Callback):
    def __init__(self, exc):
        self.exc = exc

    def after_batch(self):
        raise self.exc


@pytest.mark.parametrize("exc", [CancelFitException(), RuntimeError("boom")], ids=["cancelled", "raised"])
@pytest.mark.parametrize("attached", [True, False], ids=["learner_cb", "fit_cb"])
def test_an_interrupted_warm_start_leaves_the_loss_as_aum(breast_dls, exc, attached):  # noqa: F811
    learn = _learner(breast_dls, warm_start=3) if attached else _learner(breast_dls)
    cbs = [Stop(exc)] + ([] if attached else [WarmStartCallback(3)])
    with quiet(learn):
        if isinstance(exc, RuntimeError):
            with pytest.raises(RuntimeError, match="boom"):
                learn.fit(4, 1e-2, cbs=cbs)
        else:
            learn.fit(4, 1e-2, cbs=cbs)
    if isinstance(exc, RuntimeError) and attached:
        # fastai calls no after_fit when a fit raises: the Learner's callback resets the loss at its next fit
        check = CheckEachBatchLoss()
        with quiet(learn):
            learn.fit(4, 1e-2, cbs=check)
        assert check.epochs == [{"ce"}, {"ce"}, {"ce"}, {"aum"}]
    assert learn.loss_func.cross_entropy_only is False


def test_warm_start_is_checked(breast_dls):  # noqa: F811
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`epochs` must be an integer >= 0"):
            WarmStartCallback(bad)
        with pytest.raises(ValueError, match="`warm_start` must be an integer >= 0"):
            _learner(breast_dls, warm_start=bad)
    with pytest.raises(ValueError, match="`last_layer_scale` must be a finite number >= 0"):
        _learner(breast_dls, last_layer_scale=-1)
    with pytest.raises(ValueError, match="`warm_start`=2 trains with cross-entropy, then AUM: it needs loss='aum'"):
        _learner(breast_dls, loss="ce", warm_start=2)
    learn = _learner(breast_dls, loss="ce")
    with quiet(learn), pytest.raises(TypeError, match="must be AUMLossFlat .* got CrossEntropyLossFlat"):
        learn.fit(1, cbs=WarmStartCallback(1))
    learn = _learner(breast_dls, warm_start=3)
    with quiet(learn), pytest.warns(UserWarning, match="covers the whole fit of 2 epochs, so AUM never trains"):
        learn.fit(2, 1e-2)


def test_warm_start_multiclass_uses_softmax_cross_entropy(wine_dls):  # noqa: F811
    learn = aum_learner(wine_dls, layers=[8], warm_start=1)
    seen = []

    class Record(Callback):
        order = 1

        def after_loss(self):
            pred, y = self.learn.pred.detach(), self.learn.yb[0].reshape(-1).long()
            seen.append((self.epoch, self.learn.loss.item(), F.cross_entropy(pred, y).item(), aum(pred, y).item()))

    with quiet(learn):
        learn.fit(2, 1e-2, cbs=Record())
    for epoch, got, ce, value in seen:
        assert got == pytest.approx(ce if epoch == 0 else value, rel=1e-5)


# ---------------------------------------------------------------------------- last layer ---


def test_last_layer_scale_zeroes_the_outputs_once(breast_dls):  # noqa: F811
    learn = _learner(breast_dls, last_layer_scale=0.0)
    layer = last_layer(learn.model)
    assert layer is learn.model.layers[-1][0]
    first = []

    class FirstOutputs(Callback):
        def after_pred(self):
            if not first:
                first.append(self.learn.pred.detach().clone())

    with quiet(learn):
        learn.fit(1, 1e-2, cbs=FirstOutputs())
    assert torch.equal(first[0], torch.zeros_like(first[0]))
    trained = layer.weight.detach().clone()
    assert trained.abs().sum() > 0  # AUM's tie gradient moved it off zero
    with quiet(learn):
        learn.fit(1, 0.0)  # a later fit keeps the trained weights
    torch.testing.assert_close(layer.weight.detach(), trained)


def test_last_layer_scale_multiplies_weights_and_bias(breast_dls):  # noqa: F811
    learn = _learner(breast_dls, last_layer_scale=0.1)
    layer = last_layer(learn.model)
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    with quiet(learn):
        learn.fit(1, 0.0)  # lr 0: the weights stay as the callback left them
    torch.testing.assert_close(layer.weight.detach(), 0.1 * w)
    torch.testing.assert_close(layer.bias.detach(), 0.1 * b)
    with pytest.raises(ValueError, match="`scale` must be a finite number >= 0"):
        LastLayerScaleCallback(-1)
    with pytest.raises(ValueError, match="has no layer with a weight matrix"):
        last_layer(torch.nn.ReLU())


# ------------------------------------------------------------------------- compare_losses ---


def test_compare_losses_runs_named_recipes(breast_df):  # noqa: F811
    losses = {"ce": "ce", "aum_m": {"margin": 1.0}, "aum_ws": {"loss": "aum", "warm_start": 1},
              "aum_h": {"ce_weight": 0.5}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = compare_losses_on_df(breast_df, losses=losses, seeds=[0, 1], epochs=2, show_progress=False,
                                   layers=[8])
    assert list(dict.fromkeys(cmp.results["loss"])) == list(losses)
    assert set(cmp.summary().index) == set(losses)
    # each recipe trains with its own loss; the warm start's first epoch is cross-entropy from the same
    # initial weights over the same batches as the 'ce' run, so its training loss is the same
    r = cmp.results.set_index(["loss", "seed", "epoch"])["train_loss"]
    for seed in (0, 1):
        first = {loss: r[(loss, seed, 0)] for loss in losses}
        assert first["aum_ws"] == pytest.approx(first["ce"], rel=1e-6)
        assert len({round(first[loss], 6) for loss in ("ce", "aum_m", "aum_h")}) == 3
        assert r[("aum_ws", seed, 1)] != pytest.approx(r[("ce", seed, 1)], rel=1e-3)


@pytest.mark.parametrize("losses, match", [
    ({"x": {"n_out": 3}}, "the recipe 'x' must be a dict of aum_learner arguments other than n_out"),
    ({"x": {"margn": 1.0}}, "the recipe 'x' must be a dict of aum_learner arguments .* got 'margn'"),
    ({"x": {"margin": -1}}, "`margin` must be a finite number >= 0"),
    ({"x": {"ce_weight": "a"}}, "`ce_weight` must be a finite number >= 0"),
    ({"x": {"warm_start": 1.5}}, "`warm_start` must be an integer >= 0"),
    ({"x": {"last_layer_scale": float("inf")}}, "`last_layer_scale` must be a finite number >= 0"),
    ({1: "aum"}, "names must be strings"),
])
def test_compare_losses_refuses_bad_recipes_before_training(breast_df, losses, match):  # noqa: F811
    def never(seed):
        raise AssertionError("trained")
    from fastai_aum import compare_losses
    with pytest.raises(ValueError, match=match):
        compare_losses(never, losses=losses, seeds=[0])


def test_recipe_names_without_a_dict():
    from fastai_aum.compare.run import _loss_name
    assert _loss_name({"loss": "aum", "margin": 1.0}) == "aum(margin=1.0)"
    assert _loss_name({"warm_start": 3}) == "aum(warm_start=3)"


class FlagsAtLoss(Callback):
    """The loss's `cross_entropy_only` at every batch, as (training, flag)."""
    order = 1

    def __init__(self):
        self.flags = []

    def after_loss(self):
        self.flags.append((self.training, self.learn.loss_func.cross_entropy_only))


def test_warm_start_is_off_outside_a_training_fit(breast_dls):  # noqa: F811
    learn = _learner(breast_dls, warm_start=3)
    flags = FlagsAtLoss()
    with quiet(learn), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "covers the whole fit" warning from validate's one-epoch "fit"
        learn.validate(cbs=flags)
        learn.get_preds(cbs=flags, with_loss=True)
    assert flags.flags and not any(flag for _, flag in flags.flags)
    flags = FlagsAtLoss()
    with quiet(learn):
        with learn.added_cbs(flags):
            learn.lr_find(num_it=12, show_plot=False)
    assert flags.flags and not any(flag for _, flag in flags.flags)  # lr_find's curve is AUM's


def test_warm_start_after_ctrl_c_validates_with_aum(breast_dls):  # noqa: F811
    learn = _learner(breast_dls, warm_start=3)
    with quiet(learn), pytest.raises(KeyboardInterrupt):
        learn.fit(4, 1e-2, cbs=Stop(KeyboardInterrupt()))
    assert learn.loss_func.cross_entropy_only is True  # fastai ran no after_fit
    flags = FlagsAtLoss()
    with quiet(learn):
        learn.validate(cbs=flags)
    assert flags.flags and not any(flag for _, flag in flags.flags)
    assert pickle.loads(pickle.dumps(learn.loss_func)).cross_entropy_only is False


def test_last_layer_scale_leaves_loaded_weights_alone_outside_training(breast_dls, tmp_path):  # noqa: F811
    learn = _learner(breast_dls, last_layer_scale=0.0)
    layer = last_layer(learn.model)
    before = layer.weight.detach().clone()
    with quiet(learn):
        learn.validate()
        learn.get_preds()
        learn.lr_find(num_it=12, show_plot=False)
    torch.testing.assert_close(layer.weight.detach(), before)  # nothing scaled outside a training fit
    cb = next(c for c in learn.cbs if isinstance(c, LastLayerScaleCallback))
    assert not cb.done
    with quiet(learn):
        learn.fit(1, 0.0)  # lr 0: the weights stay as the callback left them
    assert torch.equal(layer.weight.detach(), torch.zeros_like(before))


def test_last_layer_scale_of_a_given_layer(breast_dls):  # noqa: F811
    learn = _learner(breast_dls)
    first = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Linear))
    w = first.weight.detach().clone()
    with quiet(learn):
        learn.fit(1, 0.0, cbs=LastLayerScaleCallback(0.5, layer=first))
    torch.testing.assert_close(first.weight.detach(), 0.5 * w)


class _FakeRecorder:
    metric_names = ["epoch", "train_loss", "valid_loss", "auroc", "time"]

    def __init__(self):
        self.values = []


def test_keep_best_breaks_a_tie_across_warm_start_phases_towards_the_later_phase():
    """Validation losses of the cross-entropy phase and of AUM's do not compare; within a phase they do."""
    from types import SimpleNamespace
    from fastai_aum.compare.run import _KeepBest

    def run(aurocs, losses, warm):
        model = torch.nn.Linear(1, 1)
        learn = SimpleNamespace(cbs=[WarmStartCallback(warm)] if warm else [], recorder=_FakeRecorder(), model=model,
                                auroc=SimpleNamespace(metric=SimpleNamespace(value=None)), epoch=0)
        keep = _KeepBest()
        keep.learn = learn
        keep.before_fit()
        for epoch, (value, loss) in enumerate(zip(aurocs, losses)):
            learn.epoch, learn.auroc.metric.value = epoch, value
            learn.recorder.values.append([0.0, loss, value])
            keep.after_epoch()
        return keep.best_epoch

    # epochs 0-1 cross-entropy (losses ~0.3), 2-3 AUM (losses ~0.05); all tied at AUROC 0.9
    assert run([0.9, 0.9, 0.9, 0.9], [0.30, 0.20, 0.06, 0.05], warm=2) == 3
    assert run([0.9, 0.9, 0.9, 0.9], [0.01, 0.20, 0.06, 0.05], warm=2) == 3  # a low CE loss does not win
    assert run([0.9, 0.9, 0.8, 0.8], [0.30, 0.20, 0.06, 0.05], warm=2) == 1  # no tie across phases
    assert run([0.9, 0.9, 0.9, 0.9], [0.01, 0.20, 0.06, 0.05], warm=0) == 0  # one loss: the lowest wins


def test_compare_losses_resumes_only_what_it_plans_and_refuses_a_changed_recipe(breast_df):  # noqa: F811
    kwargs = dict(show_progress=False, layers=[8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = compare_losses_on_df(breast_df, losses={"ce": "ce", "aum_m": {"margin": 1.0}}, seeds=[0, 1],
                                     epochs=2, **kwargs)
        previous = (first.results, first.scores)
        with pytest.raises(ValueError, match="'aum_m' was 'aum\\(margin=1.0\\)' in the finished runs, but is "
                                             "'aum\\(warm_start=1\\)' now"):
            compare_losses_on_df(breast_df, losses={"ce": "ce", "aum_m": {"warm_start": 1}}, seeds=[0, 1], epochs=2,
                                 previous=previous, **kwargs)
        with pytest.raises(ValueError, match="has 2 epochs, but this comparison trains 3"):
            compare_losses_on_df(breast_df, losses={"ce": "ce"}, seeds=[0], epochs=3, previous=previous, **kwargs)
        again = compare_losses_on_df(breast_df, losses={"ce": "ce", "aum_m": {"margin": 1.0}}, seeds=[1], epochs=2,
                                     previous=previous, on_run=lambda *a: pytest.fail("trained again"), **kwargs)
    assert set(again.results["seed"]) == {1}  # seed 0's runs are not part of this comparison
    kept = first.results[first.results["seed"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.results.reset_index(drop=True), kept)


def test_compare_losses_refuses_a_multiclass_margin_before_training(wine_data):  # noqa: F811
    with pytest.raises(ValueError, match="the recipe 'm': `margin` must be below 1 for multiclass"):
        compare_losses_on_df(wine_data, losses={"ce": "ce", "m": {"margin": 1.0}}, seeds=[0], epochs=1,
                             on_run=lambda *a: pytest.fail("trained"), show_progress=False)
