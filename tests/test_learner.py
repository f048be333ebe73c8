"""`aum_learner`: the application picked from the DataLoaders, binary vs multiclass, the number of
outputs, the loss, exactly one AUROCCallback, keyword pass-through and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.callback.tracker import SaveModelCallback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.losses import CrossEntropyLossFlat, FocalLossFlat
from fastai.metrics import accuracy
from fastai.tabular.model import TabularModel
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import SentenceEncoder, SequentialRNN
from fastai.torch_core import set_seed
from fastai.vision.learner import has_pool_type
from sklearn.metrics import accuracy_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from fastai_aum import AUMLossFlat, AUROCCallback, aum_learner
from fastai_aum.learner import data_kind, make_loss
from fastai_fixtures import (VISION_KW, breast_df, breast_dls, column, digits10_dls, digits7_dls,  # noqa: F401
                             digits_dir, last_linear, quiet, raw_preds, single_torch_thread, sk_auroc, text2_df,
                             text2_dls, text3_df, text3_dls, text_kw, wine_data, wine_dls)

KINDS = {"breast_dls": "tabular", "wine_dls": "tabular", "digits7_dls": "vision", "digits10_dls": "vision",
         "text2_dls": "text", "text3_dls": "text"}
N_CLASSES = {"breast_dls": 2, "wine_dls": 3, "digits7_dls": 2, "digits10_dls": 10, "text2_dls": 2, "text3_dls": 3}


def _kw(kind: str) -> dict:
    return {"tabular": {}, "vision": dict(VISION_KW), "text": text_kw()}[kind]


def _learner(dls, kind, **kwargs):
    set_seed(0)
    return aum_learner(dls, **{**_kw(kind), **kwargs})


def _auroc_cbs(learn):
    return [cb for cb in learn.cbs if isinstance(cb, AUROCCallback)]


def _train_labels(dls, kind, source_df) -> np.ndarray:
    """The class index of every training example, read from the data frames (the label strings) and
    the class vocabulary, not from the tensors fastai makes."""
    if kind == "tabular":  # TabularPandas keeps the source frame's index; its label column holds codes
        names, vocab = source_df.loc[dls.train_ds.items.index, "label"], dls.vocab
    else:
        names, vocab = dls.train_ds.items["label"], (dls.vocab[1] if kind == "text" else dls.vocab)
    return np.array([list(vocab).index(n) for n in names])


# ---------------------------------------------------------------------------- application ---

@pytest.mark.parametrize("name", list(KINDS))
def test_data_kind(request, name):
    assert data_kind(request.getfixturevalue(name)) == KINDS[name]


@pytest.mark.parametrize("name", list(KINDS))
def test_model_type_and_outputs(request, name):
    dls, kind, k = request.getfixturevalue(name), KINDS[name], N_CLASSES[name]
    learn = _learner(dls, kind)
    if kind == "tabular":
        assert isinstance(learn.model, TabularModel)
    elif kind == "text":
        assert isinstance(learn.model, SequentialRNN)
        assert isinstance(learn.model[0], SentenceEncoder) and isinstance(learn.model[0].module, AWD_LSTM)
        assert learn.model[0].module.encoder.embedding_dim == 32  # the config passed through
    else:
        assert isinstance(learn.model, nn.Sequential) and isinstance(learn.model[0][0], nn.Conv2d)
        assert has_pool_type(learn.model[1])  # vision_learner's head
    assert isinstance(learn.loss_func, AUMLossFlat)
    # a binary AUM model gets one output (the logit of the second class), a multiclass one K
    assert last_linear(learn.model).out_features == (1 if k == 2 else k)
    assert learn.dls is dls
    learn_ce = _learner(dls, kind, loss="ce")
    assert isinstance(learn_ce.loss_func, CrossEntropyLossFlat)
    assert last_linear(learn_ce.model).out_features == dls.c == k
    xb = dls.one_batch()[:dls.n_inp]
    with torch.no_grad():
        out = learn.model.eval()(*xb)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (len(xb[0]), 1 if k == 2 else k)


def test_vision_default_arch_is_resnet18(digits7_dls):
    from torchvision.models import resnet18
    set_seed(0)
    learn = aum_learner(digits7_dls, pretrained=False)
    body = sum(p.numel() for p in learn.model[0].parameters())
    expected = sum(p.numel() for n, p in resnet18().named_parameters() if not n.startswith("fc."))
    assert body == expected
    assert last_linear(learn.model).out_features == 1


def test_text_default_arch_is_awd_lstm(text3_dls):
    set_seed(0)
    learn = aum_learner(text3_dls, drop_mult=0.1, pretrained=False)
    assert isinstance(learn.model[0].module, AWD_LSTM)
    assert learn.model[0].module.encoder.embedding_dim == 400  # AWD_LSTM's default config
    assert last_linear(learn.model).out_features == 3


# ---------------------------------------------------------------------------------- losses ---

def test_aum_options_pass_to_the_loss(wine_dls):
    learn = aum_learner(wine_dls, normalize="count", average="macro")
    assert (learn.loss_func.func.normalize, learn.loss_func.func.average) == ("count", "macro")
    assert isinstance(make_loss("aum", wine_dls), AUMLossFlat)


@pytest.mark.parametrize("name", ["breast_dls", "wine_dls", "digits7_dls", "text3_dls"])
def test_weighted_ce_weights_are_inverse_class_frequencies(request, name, breast_df, wine_data):
    dls, kind, k = request.getfixturevalue(name), KINDS[name], N_CLASSES[name]
    source = breast_df if name == "breast_dls" else wine_data
    y = _train_labels(dls, kind, source)
    assert len(y) == len(dls.train_ds)
    expected = compute_class_weight("balanced", classes=np.arange(k), y=y)  # n / (K * count_k)
    np.testing.assert_allclose(expected, len(y) / (k * np.bincount(y, minlength=k)))
    learn = _learner(dls, kind, loss="weighted_ce")
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)
    np.testing.assert_allclose(learn.loss_func.func.weight.numpy(), expected, rtol=1e-6)
    assert last_linear(learn.model).out_features == k
    if k == 2:
        assert expected[1] > 3 * expected[0]  # the rare positive class weighs more


def test_any_loss_object(breast_dls):
    focal = FocalLossFlat()
    learn = aum_learner(breast_dls, loss=focal)
    assert learn.loss_func is focal
    assert last_linear(learn.model).out_features == 2
    own = AUMLossFlat(normalize="count")
    learn = aum_learner(breast_dls, loss=own)
    assert learn.loss_func is own and last_linear(learn.model).out_features == 1


def test_unknown_loss_name(breast_dls):
    with pytest.raises(ValueError, match=r"`loss` must be one of 'aum', 'ce', 'weighted_ce'.*got 'focal'"):
        aum_learner(breast_dls, loss="focal")


def test_unknown_dataloaders():
    floats = DataLoaders(DataLoader([0.1 * i for i in range(8)], bs=4), DataLoader([0.5] * 8, bs=4))
    with pytest.raises(TypeError, match=r"`dls` must be fastai DataLoaders for tabular, text or vision.*Tensor"):
        aum_learner(floats)
    with pytest.raises(TypeError, match=r"`dls` must be fastai DataLoaders.*list"):
        aum_learner([1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- AUROCCallback ---

def test_adds_exactly_one_auroc_callback(breast_dls, tmp_path):
    learn = aum_learner(breast_dls)
    assert len(_auroc_cbs(learn)) == 1
    mine = AUROCCallback(name="mine")
    other = SaveModelCallback(monitor="mine")
    user_cbs = [mine, other]
    learn = aum_learner(breast_dls, cbs=user_cbs, path=tmp_path)
    assert _auroc_cbs(learn) == [mine]
    assert other in learn.cbs
    assert user_cbs == [mine, other]  # the caller's list is left alone
    with quiet(learn):
        learn.fit(1, 1e-2)
    names = list(learn.recorder.metric_names)
    assert names.count("mine") == 1 and "auroc" not in names


def test_a_single_callback_not_in_a_list(breast_dls):
    """fastai accepts `cbs=SomeCallback()` as well as a list; so must the helper that wraps it."""
    mine = AUROCCallback(name="mine")
    learn = aum_learner(breast_dls, cbs=mine)
    assert _auroc_cbs(learn) == [mine]


def test_auroc_kwargs(breast_dls):
    learn = aum_learner(breast_dls, auroc_kwargs=dict(name="pauc", max_fpr=0.2))
    (cb,) = _auroc_cbs(learn)
    assert cb.metric.name == "pauc" and cb.metric.max_fpr == 0.2
    with learn.no_bar():
        value = learn.validate()[1]
    raw, y = raw_preds(learn)
    assert value == pytest.approx(sk_auroc(raw, y, max_fpr=0.2), abs=1e-6)


# ---------------------------------------------------------------------- keyword pass-through ---

def test_tabular_kwargs_pass_through(breast_dls):
    set_seed(0)
    learn = aum_learner(breast_dls, loss="ce", layers=[8], metrics=accuracy, lr=0.02)
    linears = [m for m in learn.model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [8, 2]
    assert learn.lr == 0.02
    with quiet(learn):
        learn.fit(2)
    names = list(learn.recorder.metric_names)
    assert names == ["epoch", "train_loss", "valid_loss", "accuracy", "auroc", "time"]
    acc, auc = column(learn, "accuracy")[-1], column(learn, "auroc")[-1]
    raw, y = raw_preds(learn)
    assert acc == pytest.approx(accuracy_score(y.numpy().reshape(-1), raw.argmax(1).numpy()), abs=1e-6)
    assert auc == pytest.approx(sk_auroc(raw, y), abs=1e-6)


def test_vision_and_text_kwargs_pass_through(digits10_dls, text2_dls):
    set_seed(0)
    learn = aum_learner(digits10_dls, metrics=accuracy, **VISION_KW)
    assert learn.model[0][0].out_channels == 16  # the tiny body, cut where asked
    assert learn.metrics[0].name == "accuracy"
    set_seed(0)
    learn = aum_learner(text2_dls, config=text_kw()["config"], drop_mult=0.1, pretrained=False, wd=0.3)
    assert learn.wd == 0.3
    assert learn.model[0].module.n_hid == 64


def test_any_public_name_brings_the_whole_package_and_what_it_adds_to_fastai():
    """The package loads its names on first use; whichever comes first, the Learner it builds has
    fastai's `fit_one_cycle` and `no_bar` and the package's `tune_threshold` and `calibrate`."""
    import subprocess
    import sys
    code = ("import sys, fastai_aum; assert 'fastai' not in sys.modules; "
            "from fastai_aum import aum_learner; from fastai.learner import Learner; "
            "print(all(hasattr(Learner, a) for a in ('fit_one_cycle', 'no_bar', 'tune_threshold', 'calibrate')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == "True", run.stdout + run.stderr


def test_import_fastai_aum_alone_adds_the_learner_methods_whichever_is_imported_first():
    """`import fastai_aum` before or after fastai: `learn.tune_threshold()` works on a plain fastai Learner
    without any other name of the package being used, and equals the module function's result."""
    import subprocess
    import sys
    script = """
import warnings
warnings.simplefilter("ignore")
from fastai.tabular.all import CategoryBlock, TabularDataLoaders, tabular_learner
from sklearn.datasets import load_breast_cancer
df = load_breast_cancer(as_frame=True).frame
df["target"] = df["target"].map({0: "malignant", 1: "benign"})
dls = TabularDataLoaders.from_df(df, y_names="target", cont_names=list(df.columns[:5]), y_block=CategoryBlock(), bs=64)
learn = tabular_learner(dls, layers=[8])
assert "fastai_aum.decisions" not in sys.modules
with learn.no_bar(), learn.no_logging():
    tuned = learn.tune_threshold()
    from fastai_aum.decisions import tune_threshold
    print(tuned == tune_threshold(learn), type(tuned).__name__)
"""
    for first in ("import sys, fastai_aum\nassert 'fastai' not in sys.modules\n", "import sys, fastai.learner, fastai_aum\n"):
        run = subprocess.run([sys.executable, "-c", first + script], capture_output=True, text=True, timeout=300)
        assert run.stdout.strip().splitlines()[-1:] == ["True TunedThreshold"], run.stdout + run.stderr


def test_pretrained_weights_offline_is_one_clear_error(digits10_dls, monkeypatch, tmp_path):
    """fastai's default `pretrained=True` downloads weights; offline that is one error naming the fix."""
    from urllib.error import URLError

    import torch.hub

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConnectionError, match=r"^aum_learner: downloading the pretrained weights of resnet18 failed "
                                              r"\(\[Errno -2\] Name or service not known\); offline, pass pretrained=False"):
        aum_learner(digits10_dls)
    with pytest.raises(URLError):  # a failure with pretrained=False is not ours to rename
        aum_learner(digits10_dls, arch=lambda **kw: offline(), pretrained=False)
