"""AUM's recipes in the fastai layer: `AUMLossFlat(margin=, ce_weight=)`, `LastLayerScaleCallback`
(`last_layer_scale`), and recipes in `compare_losses`.

Values are checked against `aum` on shifted scores and torch's own cross-entropy, computed here from the
outputs."""
from __future__ import annotations

import pickle
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed

from fastai_aum import AUMLossFlat, LastLayerScaleCallback, aum_learner, compare_losses_on_df
from fastai_aum.functional import aum
from fastai_aum.learner import check_learner_options, make_loss
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
    loss = AUMLossFlat(ce_weight=2.0, margin=0.25, average="macro", multilabel=True)
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
    back = pickle.loads(pickle.dumps(loss))
    assert (back.margin, back.ce_weight) == (0.5, 0.1)
    assert "margin=0.5" in repr(loss) and "ce_weight=0.1" in repr(loss)
    assert "margin" not in repr(AUMLossFlat())


def test_recipe_options_are_refused_for_other_losses(breast_dls):  # noqa: F811
    with pytest.raises(ValueError, match="`margin`=1.0 is an option of the AUM loss, but `loss` is 'ce'"):
        check_learner_options(breast_dls, "ce", margin=1.0)
    with pytest.raises(ValueError, match="`ce_weight`=0.5 .* CrossEntropyLossFlat; set it on the loss object"):
        aum_learner(breast_dls, loss=CrossEntropyLossFlat(), ce_weight=0.5)
    loss = make_loss("aum", breast_dls, margin=1.0, ce_weight=0.5)
    assert (loss.margin, loss.ce_weight) == (1.0, 0.5)


# ---------------------------------------------------------------------- last layer scale ---


def _learner(dls, **kwargs):
    set_seed(0)
    return aum_learner(dls, n_out=2, layers=[16], **kwargs)


class Stop(Callback):
    def __init__(self, exc):
        self.exc = exc

    def after_batch(self):
        raise self.exc


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
    losses = {"ce": "ce", "aum_m": {"margin": 1.0}, "aum_z": {"loss": "aum", "last_layer_scale": 0.0},
              "aum_h": {"ce_weight": 0.5}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = compare_losses_on_df(breast_df, losses=losses, seeds=[0, 1], epochs=2, show_progress=False,
                                   layers=[8])
    assert list(dict.fromkeys(cmp.results["loss"])) == list(losses)
    assert set(cmp.summary().index) == set(losses)
    # each recipe trains with its own loss
    r = cmp.results.set_index(["loss", "seed", "epoch"])["train_loss"]
    for seed in (0, 1):
        assert len({round(r[(loss, seed, 0)], 6) for loss in losses}) == len(losses)


@pytest.mark.parametrize("losses, match", [
    ({"x": {"n_out": 3}}, "the recipe 'x' must be a dict of aum_learner arguments other than n_out"),
    ({"x": {"margn": 1.0}}, "the recipe 'x' must be a dict of aum_learner arguments .* got 'margn'"),
    ({"x": {"margin": -1}}, "`margin` must be a finite number >= 0"),
    ({"x": {"ce_weight": "a"}}, "`ce_weight` must be a finite number >= 0"),
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
    assert _loss_name({"ce_weight": 3}) == "aum(ce_weight=3)"


def test_last_layer_scale_leaves_loaded_weights_alone_outside_training(breast_dls, tmp_path):  # noqa: F811
    learn = _learner(breast_dls, last_layer_scale=0.0)
    layer = last_layer(learn.model)
    before = layer.weight.detach().clone()
    with quiet(learn):
        learn.validate()
        learn.get_preds()
        learn.lr_find(num_it=12, show_plot=False)
    torch.testing.assert_close(layer.weight.detach(), before)  # nothing scaled outside a training fit
    with quiet(learn):
        learn.fit(1, 0.0)  # lr 0: the weights stay as the callback left them
    assert torch.equal(layer.weight.detach(), torch.zeros_like(before))


def test_last_layer_scale_acts_once_per_model_and_again_for_another_learner(breast_dls):  # noqa: F811
    cb = LastLayerScaleCallback(0.5)
    first, second = _learner(breast_dls), _learner(breast_dls)
    w1, w2 = (last_layer(learn.model).weight.detach().clone() for learn in (first, second))
    with quiet(first):
        first.fit(1, 0.0, cbs=cb)
        first.fit(1, 0.0, cbs=cb)  # the same model: scaled once, not twice
    torch.testing.assert_close(last_layer(first.model).weight.detach(), 0.5 * w1)
    with quiet(second):
        second.fit(1, 0.0, cbs=cb)  # the callback reused for another Learner scales that one too
    torch.testing.assert_close(last_layer(second.model).weight.detach(), 0.5 * w2)


def test_last_layer_scale_of_a_given_layer(breast_dls):  # noqa: F811
    learn = _learner(breast_dls)
    first = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Linear))
    w = first.weight.detach().clone()
    with quiet(learn):
        learn.fit(1, 0.0, cbs=LastLayerScaleCallback(0.5, layer=first))
    torch.testing.assert_close(first.weight.detach(), 0.5 * w)


def test_compare_losses_resumes_only_what_it_plans_and_refuses_a_changed_recipe(breast_df):  # noqa: F811
    kwargs = dict(show_progress=False, layers=[8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = compare_losses_on_df(breast_df, losses={"ce": "ce", "aum_m": {"margin": 1.0}}, seeds=[0, 1],
                                     epochs=2, **kwargs)
        previous = (first.results, first.scores)
        with pytest.raises(ValueError, match="'aum_m' was 'aum\\(margin=1.0\\)' in the finished runs, but is "
                                             "'aum\\(ce_weight=1\\)' now"):
            compare_losses_on_df(breast_df, losses={"ce": "ce", "aum_m": {"ce_weight": 1}}, seeds=[0, 1], epochs=2,
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
