"""`AUMLossFlat` in fastai's loss conventions: shapes, flattening, activation, decodes, pickling,
the one-class batch counter, `reduction='none'`, and its use in tabular Learners.

Values are checked against `fastai_aum.functional.aum` (the loss must only wrap it) and against a
brute-force evaluation of AUM's definition (fastai_fixtures.brute_aum)."""
from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.tabular.all import TabularModel, tabular_learner
from fastai.torch_core import set_seed
from torch import nn

from fastai_aum import AUMLossFlat, AUROCCallback
from fastai_aum.functional import aum
from oracles import brute_directional_derivatives
from fastai_fixtures import (WithSoftmax, breast_df, breast_dls, brute_aum,  # noqa: F401
                             brute_multiclass_aum, column, last_linear, quiet, raw_preds, single_torch_thread,
                             sk_auroc, wine_data, wine_dls)


def _binary(n=40, seed=0, ties=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    if ties:
        z = z.mul(2).round()
    y = torch.cat([torch.tensor([0, 1]), torch.randint(0, 2, (n - 2,), generator=g)])
    return z, y


def _multi(n=60, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 2, torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=g)])


# --------------------------------------------------------------------------------- values ---

@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("ties", [False, True])
def test_binary_one_output_shapes(normalize, ties):
    z, y = _binary(ties=ties)
    s = z[:, 1]
    expected = brute_aum(s.numpy(), y.numpy(), normalize)
    loss = AUMLossFlat(normalize=normalize)
    for preds in (s, s[:, None]):
        for targ in (y, y[:, None]):
            got = loss(preds, targ)
            assert got.ndim == 0
            assert got.item() == pytest.approx(aum(s, y, normalize=normalize).item(), abs=1e-6)
            assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("normalize", ["rate", "count"])
def test_binary_two_outputs_scores_z1_minus_z0(normalize):
    z, y = _binary(seed=3)
    got = AUMLossFlat(normalize=normalize)(z, y)
    assert got.item() == pytest.approx(aum(z, y, normalize=normalize).item(), abs=1e-6)
    expected = brute_aum((z[:, 1] - z[:, 0]).numpy(), y.numpy(), normalize)
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("normalize", ["rate", "count"])
def test_multiclass_micro_macro(average, normalize):
    z, y = _multi()
    got = AUMLossFlat(normalize=normalize, average=average)(z, y)
    assert got.item() == pytest.approx(aum(z, y, normalize=normalize, average=average).item(), abs=1e-6)
    expected = brute_multiclass_aum(z.numpy(), y.numpy(), normalize, average)
    assert got.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_micro_and_macro_differ():
    z, y = _multi(seed=5)
    micro, macro = AUMLossFlat(average="micro")(z, y), AUMLossFlat(average="macro")(z, y)
    assert abs(micro.item() - macro.item()) > 1e-4


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_segmentation_like_input_is_flattened_pixel_by_pixel(average):
    """(N, C, H, W) outputs with (N, H, W) targets and axis=1, as in fastai's segmentation losses: every
    pixel is one example whose class scores are the C channels at that pixel."""
    g = torch.Generator().manual_seed(0)
    n, c, h, w = 2, 3, 4, 5
    preds, targ = torch.randn(n, c, h, w, generator=g), torch.randint(0, c, (n, h, w), generator=g)
    flat_preds, flat_targ = preds.permute(0, 2, 3, 1).reshape(-1, c), targ.reshape(-1)
    expected = aum(flat_preds, flat_targ, average=average).item()
    assert expected == pytest.approx(brute_multiclass_aum(flat_preds.numpy(), flat_targ.numpy(), average=average),
                                     rel=1e-4)
    # fastai's own flattening loss pairs the same pixels this way
    fastai_ce = CrossEntropyLossFlat(axis=1)(preds, targ).item()
    assert fastai_ce == pytest.approx(F.cross_entropy(preds, targ).item(), rel=1e-6)
    assert AUMLossFlat(average=average, axis=1)(preds, targ).item() == pytest.approx(expected, abs=1e-6)


def test_binary_segmentation_like_input_is_flattened_pixel_by_pixel():
    g = torch.Generator().manual_seed(1)
    preds, targ = torch.randn(2, 1, 4, 5, generator=g), torch.randint(0, 2, (2, 4, 5), generator=g)
    expected = brute_aum(preds.permute(0, 2, 3, 1).reshape(-1).numpy(), targ.reshape(-1).numpy())
    assert AUMLossFlat(axis=1)(preds, targ).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_flows_and_matches_functional():
    z, y = _multi(seed=2)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    AUMLossFlat(average="macro")(a, y).backward()
    aum(b, y, average="macro").backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    torch.testing.assert_close(a.grad, b.grad)


# --------------------------------------------------------------------- activation/decodes ---

def test_activation_of_one_output_gives_both_classes():
    """fastai's categorical machinery (predict, interpretation) expects one probability per class."""
    x = torch.tensor([[-2.0], [0.0], [3.0]])
    loss = AUMLossFlat()
    expected = torch.cat([1 - torch.sigmoid(x), torch.sigmoid(x)], 1)
    torch.testing.assert_close(loss.activation(x), expected)
    torch.testing.assert_close(loss.activation(x[:, 0]), expected)
    # the one output is the logit of the positive class, wherever it is in the vocabulary
    first = AUMLossFlat(pos_label="a", vocab=["a", "b"])
    torch.testing.assert_close(first.activation(x), expected.flip(1))


def test_activation_softmax_for_several_outputs():
    loss = AUMLossFlat()
    for k in (2, 4):
        x = torch.randn(5, k) * 3
        torch.testing.assert_close(loss.activation(x), torch.softmax(x, dim=-1))


def test_activation_identity_on_probability_rows():
    p = torch.softmax(torch.randn(6, 3), dim=-1)
    out = AUMLossFlat().activation(p)
    torch.testing.assert_close(out, p)
    assert not torch.allclose(torch.softmax(p, -1), p)  # applying softmax again would have changed them


def test_activation_and_decodes_along_axis():
    x = torch.randn(2, 3, 4, 5)
    loss = AUMLossFlat(axis=1)
    torch.testing.assert_close(loss.activation(x), torch.softmax(x, dim=1))
    torch.testing.assert_close(loss.decodes(loss.activation(x)), x.argmax(dim=1))


def test_decodes_class_index():
    loss = AUMLossFlat()
    p1 = torch.tensor([[0.2], [0.7], [0.5], [0.51]])
    assert loss.decodes(p1).tolist() == [0, 1, 0, 1]
    assert loss.decodes(p1[:, 0]).tolist() == [0, 1, 0, 1]
    assert AUMLossFlat(thresh=0.8).decodes(p1).tolist() == [0, 0, 0, 0]
    pk = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    assert loss.decodes(pk).tolist() == [1, 0]


def test_y_int():
    assert AUMLossFlat.y_int is True
    assert AUMLossFlat().y_int is True


def test_pickle_round_trip_keeps_options():
    loss = AUMLossFlat(normalize="count", average="macro")
    z, y = _binary(seed=4)
    loss(z.requires_grad_(), torch.zeros_like(y))  # one degenerate training batch
    back = pickle.loads(pickle.dumps(loss))
    assert back.func.normalize == "count" and back.func.average == "macro"
    assert back.reduction == "mean" and back.axis == loss.axis
    assert back.one_class_batches == 1
    m, t = _multi(seed=1)
    assert back(m, t).item() == pytest.approx(loss(m, t).item(), abs=1e-7)


# ------------------------------------------------------------------------ one_class_batches ---

def test_one_class_batches_counts_training_batches_only():
    loss = AUMLossFlat()
    z, y = _binary(seed=6)
    ones, zeros = torch.ones_like(y), torch.zeros_like(y)
    for targ in (ones, zeros):  # one class, with grad: counted
        value = loss(z.clone().requires_grad_(), targ)
        assert value.item() == 0.0
        value.backward()  # still attached to the graph
    assert loss.one_class_batches == 2
    loss(z.clone().requires_grad_(), y)  # both classes: not counted
    leaf = z.clone().requires_grad_()
    with torch.no_grad():
        loss(leaf * 1, ones)  # a validation batch (computed without grad): not counted
    loss(z, zeros)  # an input without grad: not counted
    assert loss.one_class_batches == 2


def test_one_class_batches_macro_and_micro():
    z = torch.randn(8, 3, requires_grad=True)
    y = torch.zeros(8, dtype=torch.long)
    macro, micro = AUMLossFlat(average="macro"), AUMLossFlat(average="micro")
    macro(z, y)
    micro(z, y)  # pooled over classes, a micro batch always has positives and negatives
    assert macro.one_class_batches == 1
    assert micro.one_class_batches == 0


def test_one_class_batches_in_a_fit(breast_df):
    """Small batches of a 10%-positive set: many training batches hold no positive. The loss counts
    exactly those (seen independently in after_batch), and validation or get_preds add nothing."""
    from fastai_aum.datasets import tabular_dls

    class CountOneClass(Callback):
        n = 0

        def after_batch(self):
            if self.training and len(self.yb) and len(torch.unique(self.learn.y)) < 2:
                self.n += 1

    set_seed(0)
    dls = tabular_dls(breast_df, bs=8)
    loss = AUMLossFlat()
    counter = CountOneClass()
    learn = tabular_learner(dls, loss_func=loss, cbs=[AUROCCallback(), counter])
    with quiet(learn):
        learn.fit(1, 1e-3)
    assert counter.n > 0
    assert loss.one_class_batches == counter.n
    with quiet(learn):
        learn.validate()
        learn.get_preds()
        learn.get_preds(with_loss=True)
    assert loss.one_class_batches == counter.n


# --------------------------------------------------------------------------- reduction ---

def test_reduction_none_sums_to_batch_aum():
    for z, y in (_binary(seed=7), _multi(seed=7)):
        loss = AUMLossFlat(reduction="none")
        per_item = loss(z, y)
        assert per_item.shape == (len(y),)
        assert per_item.sum().item() == pytest.approx(aum(z, y).item(), abs=1e-6)
    loss = AUMLossFlat()
    loss.reduction = "none"  # as fastai's `loss_not_reduced` does it
    z, y = _binary(seed=8)
    assert loss(z, y).shape == (len(y),)
    loss.reduction = "mean"
    assert loss(z, y).ndim == 0


def test_get_preds_with_loss(breast_dls):
    set_seed(0)
    loss = AUMLossFlat()
    learn = tabular_learner(breast_dls, n_out=1, loss_func=loss, cbs=AUROCCallback())
    with quiet(learn):
        learn.fit(1, 1e-2)
        preds, targs, losses = learn.get_preds(with_loss=True)
    raw, _ = raw_preds(learn)
    n = len(breast_dls.valid_ds)
    assert preds.shape == (n, 2) and losses.shape == (n,)
    assert loss.reduction == "mean"  # restored
    torch.testing.assert_close(preds[:, 1:], torch.sigmoid(raw))
    bs = breast_dls.valid.bs
    for start in range(0, n, bs):  # each batch's per-example losses add up to that batch's AUM
        chunk = slice(start, start + bs)
        expected = brute_aum(raw[chunk, 0].numpy(), targs[chunk].numpy())
        assert losses[chunk].sum().item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------- in a Learner ---

def test_tabular_learner_with_fastai_default_two_outputs(breast_df, breast_dls):
    set_seed(0)
    learn = tabular_learner(breast_dls, loss_func=AUMLossFlat(), cbs=AUROCCallback())
    assert isinstance(learn.model, TabularModel)
    assert last_linear(learn.model).out_features == 2
    with quiet(learn):
        learn.fit_one_cycle(3, 1e-2)
    assert "auroc" in learn.recorder.metric_names
    assert all(np.isfinite(v) for v in column(learn, "train_loss"))
    recorded, valid_loss = column(learn, "auroc")[-1], column(learn, "valid_loss")[-1]
    raw, y = raw_preds(learn)  # (get_preds and validate reset learn.recorder.values)
    assert raw.shape == (len(breast_dls.valid_ds), 2)
    assert recorded == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    assert recorded > 0.95  # it learned (untrained: anywhere from 0.05 to 0.75)
    # valid_loss is the mean over batches of the batch AUM of z1 - z0
    bs = breast_dls.valid.bs
    batches = [brute_aum((raw[i:i + bs, 1] - raw[i:i + bs, 0]).numpy(), y[i:i + bs].numpy())
               for i in range(0, len(y), bs)]
    sizes = [len(y[i:i + bs]) for i in range(0, len(y), bs)]
    assert valid_loss == pytest.approx(np.average(batches, weights=sizes), rel=1e-5, abs=1e-6)
    with quiet(learn):
        row, clas, probs = learn.predict(breast_df.iloc[0])
    assert probs.shape == (2,) and int(clas) == int(probs.argmax())
    assert breast_dls.vocab[int(clas)] in ("benign", "malignant")


def test_multiclass_tabular_learner(wine_dls):
    set_seed(0)
    learn = tabular_learner(wine_dls, loss_func=AUMLossFlat(average="macro"), cbs=AUROCCallback())
    with quiet(learn):
        learn.fit_one_cycle(2, 1e-2)
    recorded = column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert raw.shape == (len(wine_dls.valid_ds), 3)
    assert recorded == pytest.approx(sk_auroc(raw, y), abs=1e-6)
    with quiet(learn):
        probs, _, decoded = learn.get_preds(with_decoded=True)
    torch.testing.assert_close(probs, torch.softmax(raw, -1))
    assert decoded.tolist() == raw.argmax(-1).tolist()


def test_model_with_probability_outputs_is_not_softmaxed_again(wine_dls):
    set_seed(0)
    learn = tabular_learner(wine_dls, loss_func=AUMLossFlat(), cbs=AUROCCallback())
    learn.model = WithSoftmax(learn.model)
    x_cat, x_cont, y = wine_dls.one_batch()
    with torch.no_grad():
        p = learn.model.eval()(x_cat, x_cont)
    loss = learn.loss_func
    assert loss(p, y).item() == pytest.approx(brute_multiclass_aum(np.log(p.double().numpy()), y.numpy()), rel=1e-4)
    torch.testing.assert_close(loss.activation(p), p)



def test_plain_learner_with_aum_flat():
    """Outside the applications: a plain `Learner` on a linear model of synthetic scores."""
    from fastai.data.core import DataLoaders
    from torch.utils.data import TensorDataset
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(600, generator=g)) > 1.0).long()
    dls = DataLoaders.from_dsets(TensorDataset(x[:400], y[:400]), TensorDataset(x[400:], y[400:]), bs=50)
    set_seed(0)
    learn = Learner(dls, nn.Linear(5, 1), loss_func=AUMLossFlat(), cbs=AUROCCallback())
    with quiet(learn), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        learn.fit(3, 0.05)
    recorded = column(learn, "auroc")[-1]
    raw, t = raw_preds(learn)
    assert recorded == pytest.approx(sk_auroc(raw, t), abs=1e-6)
    assert recorded > 0.9


# ------------------------------------------------------------------- the one forward path ---

def _cases():
    """(name, loss options, outputs, target, the reference: a function of the outputs built from
    `fastai_aum.functional.aum` and torch's own cross-entropy)."""
    g = torch.Generator().manual_seed(11)
    z1, z2 = torch.randn(50, 1, generator=g), torch.randn(50, 2, generator=g)
    y2 = torch.cat([torch.tensor([0, 1]), torch.randint(0, 2, (48,), generator=g)])
    zk = torch.randn(60, 4, generator=g).mul(2).round()  # ties too
    yk = torch.cat([torch.arange(4), torch.randint(0, 4, (56,), generator=g)])
    zl = torch.randn(40, 3, generator=g, dtype=torch.float64)
    yl = (torch.rand(40, 3, generator=g) < 0.4).double()
    ab = dict(vocab=["a", "b"])
    bce = lambda s, t: F.binary_cross_entropy_with_logits(s, t.to(s.dtype), reduction="none")  # noqa: E731
    ce = lambda s, t: F.cross_entropy(s, t, reduction="none")  # noqa: E731
    return [
        ("one output", {}, z1, y2, lambda x: aum(x, y2)),
        ("one output, positive first", dict(pos_label="a", **ab), z1, y2, lambda x: aum(x, 1 - y2)),
        ("one output, positive second", dict(pos_label="b", **ab), z1, y2, lambda x: aum(x, y2)),
        ("two outputs", {}, z2, y2, lambda x: aum(x, y2)),
        ("two outputs, positive first", dict(pos_label="a", **ab), z2, y2, lambda x: aum(x.flip(1), 1 - y2)),
        ("one output, margin", dict(margin=0.5), z1, y2, lambda x: aum(x, y2, margin=0.5)),
        ("one output, ce_weight", dict(ce_weight=0.3), z1, y2,
         lambda x: aum(x, y2) + 0.3 * bce(x.reshape(-1), y2).mean()),
        ("two outputs, margin, ce_weight, sum", dict(margin=0.25, ce_weight=2.0, reduction="sum"), z2, y2,
         lambda x: aum(x, y2, margin=0.25) + 2.0 * ce(x, y2).sum()),
        ("multiclass micro", {}, zk, yk, lambda x: aum(x, yk)),
        ("multiclass macro, count", dict(average="macro", normalize="count"), zk, yk,
         lambda x: aum(x, yk, "count", "macro")),
        ("multiclass probabilities micro", {}, torch.softmax(zk, 1), yk, lambda x: aum(x, yk)),
        ("multiclass probabilities macro, margin", dict(average="macro", margin=0.2), torch.softmax(zk, 1), yk,
         lambda x: aum(x, yk, average="macro", margin=0.2)),
        ("multiclass macro, ce_weight, none", dict(average="macro", ce_weight=0.5, reduction="none"), zk, yk,
         lambda x: aum(x, yk, average="macro").expand(60) / 60 + 0.5 * (ce(x, yk) / 60)),  # each one's share
        ("multi-label micro", dict(multilabel=True), zl, yl, lambda x: aum(x, yl)),
        ("multi-label macro, margin, ce_weight", dict(multilabel=True, average="macro", margin=0.8, ce_weight=1.5),
         zl, yl, lambda x: aum(x, yl, average="macro", margin=0.8) + 1.5 * bce(x, yl).mean(-1).mean()),
    ]


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu_checks", "sync_free_path"])
def test_loss_and_gradient_are_bit_identical_to_the_functional_aum(device_path, monkeypatch):
    """The loss only wraps `aum` (and adds torch's cross-entropy): the same bits for value and gradient,
    whether it checks on the host or (as on a GPU, forced here) keeps every flag on the device."""
    if device_path:
        monkeypatch.setattr("fastai_aum.losses._SYNC_IS_FREE_ON", ())
    for name, options, z, y, reference in _cases():
        loss = AUMLossFlat(**options)
        x, r = z.clone().requires_grad_(), z.clone().requires_grad_()
        value, expected = loss(x, y), reference(r)
        assert value.dtype == expected.dtype and torch.equal(value, expected), name
        value.sum().backward()
        expected.sum().backward()
        assert x.grad.abs().sum() > 0 and torch.equal(x.grad, r.grad), name
        assert loss.one_class_batches == 0, name


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu_checks", "sync_free_path"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_output_gives_nan_with_a_zero_gradient(device_path, bad, monkeypatch):
    """Any non-finite output, in every kind of problem and on either path: NaN (the functional `aum`
    without its checks is non-finite there too) and a zero gradient; nor is the batch counted as one-class."""
    if device_path:
        monkeypatch.setattr("fastai_aum.losses._SYNC_IS_FREE_ON", ())
    for name, options, z, y, reference in _cases():
        poisoned = z.clone()
        poisoned[3, -1] = bad
        x = poisoned.clone().requires_grad_()
        loss = AUMLossFlat(**options)
        value = loss(x, torch.zeros_like(y))  # one class too: not counted, its loss is not 0
        assert torch.isnan(value).all() and value.shape == reference(z).shape, name
        value.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x)), name
        assert loss.one_class_batches == 0, name
        if bad != -math.inf or "multiclass" not in name:  # softmax turns a -inf logit into a probability of 0
            assert not math.isfinite(aum(poisoned, y, validate=False).item()), name


def test_one_class_batches_are_counted_alike_on_both_paths(monkeypatch):
    z1, z2, z4 = torch.randn(8, 1), torch.randn(8, 2), torch.randn(8, 4)
    batches = [({}, z1, torch.ones(8, dtype=torch.long)), ({}, z1, torch.tensor([0, 1] * 4)),
               (dict(margin=0.5), z2, torch.zeros(8, dtype=torch.long)), (dict(margin=0.5), z2, torch.arange(8) % 2),
               (dict(average="macro"), z4, torch.zeros(8, dtype=torch.long)),
               (dict(average="macro"), z4, torch.arange(8) % 4),
               (dict(multilabel=True), z4, torch.zeros(8, 4)), (dict(multilabel=True), z4, torch.eye(8)[:, :4]),
               (dict(validate=False), z1, -torch.ones(8)), (dict(validate=False), z1, torch.tensor([-1, 1] * 4))]
    counts = []
    for device_path in (False, True):
        if device_path:
            monkeypatch.setattr("fastai_aum.losses._SYNC_IS_FREE_ON", ())
        losses = [AUMLossFlat(**o) for o, _, _ in batches]
        for loss, (_, x, y) in zip(losses, batches):
            loss(x.clone().requires_grad_(), y)
        counts.append([loss.one_class_batches for loss in losses])
    assert counts == [[1, 0, 1, 0, 1, 0, 1, 0, 1, 0]] * 2  # binary {-1, 1} labels read as {0, 1}


# --------------------------------------------------------------------- multi-label binding ---

def test_a_multi_hot_target_for_a_single_label_loss_is_an_error_naming_multilabel():
    z = torch.randn(20, 3)
    multi_hot = (torch.rand(20, 3) < 0.5).float()
    loss = AUMLossFlat()
    with pytest.raises(ValueError, match=r"`target` of shape \(20, 3\).*multi-hot.*`multilabel=True`"):
        loss(z, multi_hot)
    assert not loss.multilabel  # a batch never changes the loss's kind
    torch.testing.assert_close(loss.activation(z), torch.softmax(z, -1))
    with pytest.raises(ValueError, match=r"`target` of shape \(20, 2\).*`multilabel=True`"):
        loss(z[:, :2], multi_hot[:, :2])  # a one-hot-looking (N, 2) target too: as multi-label, or labels (N,)


def test_single_label_targets_of_shape_n_1_stay_valid():
    """(N, 1) targets, with one output or two, and (N,) targets with two outputs, are class labels."""
    g = torch.Generator().manual_seed(2)
    z2, y = torch.randn(30, 2, generator=g), torch.cat([torch.tensor([0, 1]), torch.randint(0, 2, (28,), generator=g)])
    for preds in (z2[:, 1:], z2):
        expected = aum(preds, y)
        for target in (y, y[:, None]):
            assert torch.equal(AUMLossFlat()(preds, target), expected)


def test_bind_sets_multilabel_and_none_keeps_it():
    z, y = torch.randn(20, 3), (torch.rand(20, 3) < 0.5).float()
    y[:2] = torch.tensor([[0.0, 1, 0], [1, 0, 1]])
    loss = AUMLossFlat()
    assert loss.bind(["x", "y", "z"]) is loss and not loss.multilabel
    assert loss.bind(["x", "y", "z"], multilabel=True) is loss and loss.multilabel
    assert loss.bind(["x", "y", "z"]).multilabel  # None keeps it
    assert torch.equal(loss(z, y), aum(z, y))
    torch.testing.assert_close(loss.activation(z), torch.sigmoid(z))
    assert "multilabel=True" in repr(loss)
    back = pickle.loads(pickle.dumps(loss))
    assert back.multilabel and torch.equal(back(z, y), aum(z, y))
    assert not loss.bind(["x", "y", "z"], multilabel=False).multilabel
    with pytest.raises(ValueError, match=r"`target` of shape \(20, 3\)"):
        loss(z, y)


def test_bind_refuses_multilabel_with_a_positive_class_and_non_booleans():
    loss = AUMLossFlat(pos_label="b", vocab=["a", "b"])
    with pytest.raises(ValueError, match=r"AUMLossFlat: `pos_label`='b' names the positive class .* multi-label"):
        loss.bind(["a", "b"], multilabel=True)
    assert not loss.multilabel and loss.pos_index == 1
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match=rf"AUMLossFlat: `multilabel` must be True or False, got {bad!r}"):
            AUMLossFlat(multilabel=bad)
    with pytest.raises(TypeError, match=r"`multilabel` must be True or False, got 'yes'"):
        AUMLossFlat().bind(["a", "b"], multilabel="yes")


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu_checks", "sync_free_path"])
def test_an_empty_batch_is_the_functional_error(device_path, monkeypatch):
    if device_path:
        monkeypatch.setattr("fastai_aum.losses._SYNC_IS_FREE_ON", ())
    for options, preds, target in [({}, torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)),
                                   ({}, torch.zeros(0, 3), torch.zeros(0)),
                                   (dict(multilabel=True), torch.zeros(0, 3), torch.zeros(0, 3))]:
        with pytest.raises(ValueError, match="`preds` and `target` are empty"):
            aum(preds, target)
        with pytest.raises(ValueError, match="`preds` and `target` are empty"):
            AUMLossFlat(**options)(preds, target)


@pytest.mark.parametrize("options", [{}, dict(normalize="count"), dict(margin=1.0), dict(ce_weight=0.5),
                                     dict(reduction="none", margin=0.5, ce_weight=1.0), dict(validate=False)],
                         ids=["rate", "count", "margin", "hybrid", "none_margin_hybrid", "no_validate"])
def test_the_one_pass_binary_path_gives_the_general_paths_bits(options, monkeypatch):
    """On the CPU a binary batch takes a one-pass path; forced off, the general path gives the same value,
    gradient and one-class count, with ties, one class, non-finite outputs, bool and int8 labels, float64."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for n in (2, 3, 64, 1000, 9000):
        for shape in ((n,), (n, 1), (n, 2)):
            for dtype in (torch.float32, torch.float64):
                z = torch.randn(*shape, generator=g, dtype=dtype)
                y = (torch.rand(n, generator=g) < 0.3).long()
                batches += [(z, y), ((z * 2).round() / 2, y), (z, torch.ones_like(y)), (z, y.bool()),
                            (z, y.to(torch.int8)), (z, y.to(torch.uint8))]  # fastai's targets are int8
                bad = z.clone()
                bad.view(-1)[n // 2] = math.nan if n % 2 else math.inf
                batches.append((bad, y))
    results = []
    for general in (False, True):
        if general:
            monkeypatch.setattr("fastai_aum.losses._binary_on_host", lambda *args: None)
        loss, out = AUMLossFlat(**options), []
        for z, y in batches:
            x = z.clone().requires_grad_()
            value = loss(x, y)
            value.sum().backward()
            out.append((value.detach(), x.grad))
        results.append((out, loss.one_class_batches))
    (fast, fast_count), (slow, slow_count) = results
    assert fast_count == slow_count > 0
    for (v1, g1), (v2, g2) in zip(fast, slow):
        assert v1.dtype == v2.dtype and torch.equal(v1.isnan(), v2.isnan())
        assert torch.equal(v1.nan_to_num(), v2.nan_to_num()) and torch.equal(g1, g2)


@pytest.mark.parametrize("margin", [0.0, 0.5])
@pytest.mark.parametrize("shape", [(50,), (50, 1), (50, 2)])
def test_the_one_pass_binary_path_under_torch_func_grad(shape, margin):
    """Two outputs are differenced inside the AUM's autograd node under plain autograd, and by autograd
    ops under torch.func: the same gradient, equal to the oracle's mean derivative of `z1 - z0`."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.arange(50) % 3 == 0
    loss = AUMLossFlat(margin=margin)
    functional = torch.func.grad(lambda t: loss(t, y.long()))(z)
    x = z.clone().requires_grad_()
    loss(x, y.long()).backward()
    assert torch.equal(functional, x.grad)
    s = (z[:, 1] - z[:, 0] if len(shape) == 2 and shape[1] == 2 else z.reshape(-1)) - margin * y.double()
    expected = brute_directional_derivatives(s.numpy(), y.numpy(), "rate").mean(1)
    got = x.grad[:, 1] if len(shape) == 2 and shape[1] == 2 else x.grad.reshape(-1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)
    if len(shape) == 2 and shape[1] == 2:
        assert torch.equal(x.grad[:, 0], -x.grad[:, 1])


@pytest.mark.parametrize("shape", [(4,), (4, 1), (4, 2)])
@pytest.mark.parametrize("pos_label", ["a", "b"])
def test_a_bad_label_is_shown_as_given_whichever_class_is_positive(shape, pos_label):
    """Issue 20: with the positive class first the loss flips the labels (1 - target), and a label of 5 was
    reported as 'values from -4 to 1'. The message shows the labels the loss was given."""
    loss = AUMLossFlat(pos_label=pos_label, vocab=["a", "b"])
    with pytest.raises(ValueError, match=r"`target` labels must be in \{0, 1\}, got values from 0 to 5$"):
        loss(torch.zeros(shape), torch.tensor([0, 1, 5, 0]))
    good = torch.tensor([0, 1, 1, 0])
    scores = torch.tensor([0.5, 2.0, -1.0, 0.0]).reshape(shape[0], -1) if len(shape) == 1 or shape[1] == 1 else None
    if scores is not None:  # one output is the positive class's logit: AUM of the labels oriented that way
        expected = aum(scores.reshape(-1), good if pos_label == "b" else 1 - good)
        torch.testing.assert_close(loss(scores.reshape(shape), good), expected)
