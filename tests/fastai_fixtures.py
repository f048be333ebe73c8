"""Shared helpers and fixtures for the fastai integration tests (test_callback, test_losses_fastai,
test_learner, test_end_to_end).

The references here are independent of fastai_aum: scikit-learn for AUROC and ROC points, and a
literal numpy evaluation of DESIGN.md's definition for AUM. Test modules import the fixtures they
use by name, so that pytest registers them there (module scope: each DataLoaders is built once per
module).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot with an interactive backend

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize
from torch import nn

from fastai_aum.datasets import breast_cancer_df, digits_dls, tabular_dls, text_dls, text_df, wine_df

# ------------------------------------------------------------------------------ small models ---


def tiny(pretrained=False):
    """A tiny CNN body for `vision_learner(..., arch=tiny, cut=-1, pretrained=False)`."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))


VISION_KW = dict(arch=tiny, cut=-1, pretrained=False)


def text_config() -> dict:
    """A small AWD-LSTM classifier config (drop_mult=0 crashes fastai's WeightDropout with this torch)."""
    from fastai.text.models.awdlstm import awd_lstm_clas_config
    cfg = dict(awd_lstm_clas_config)
    cfg.update(emb_sz=32, n_hid=64, n_layers=1)
    return cfg


def text_kw() -> dict:
    return dict(config=text_config(), drop_mult=0.1, pretrained=False)


class WithSoftmax(nn.Module):
    """Wraps a model (of any number of inputs, e.g. TabularModel's cats and conts) and applies softmax last."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *x):
        return torch.softmax(self.model(*x), dim=-1)


def last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


# ------------------------------------------------------------------------------- references ---


def softmax64(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def as_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def sk_scores(raw, probabilities: bool = False) -> np.ndarray:
    """What scikit-learn should rank, in float64: the score for one output, `z1 - z0` (or `p1` when the
    outputs are probabilities) for two, probability rows (softmax in float64 of logits) for more."""
    z = as_np(raw).astype(np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim == 1:
        return z
    if z.shape[1] == 2:
        return z[:, 1] if probabilities else z[:, 1] - z[:, 0]
    return z if probabilities else softmax64(z)


def sk_auroc(raw, y, average="macro", multi_class="ovr", max_fpr=None, probabilities=False):
    """scikit-learn's AUROC of raw model outputs (see `sk_scores`)."""
    s, y = sk_scores(raw, probabilities), as_np(y).reshape(-1)
    if s.ndim == 1:
        return roc_auc_score(y, s, max_fpr=max_fpr)
    k = s.shape[1]
    if multi_class == "ovr" and average in ("micro", None):
        return roc_auc_score(label_binarize(y, classes=list(range(k))), s, average=average)
    return roc_auc_score(y, s, multi_class=multi_class, average=average, labels=list(range(k)))


def brute_aum(scores, labels, normalize="rate") -> float:
    """AUM by its definition: integrate min(FP(c), FN(c)) over c, predicting positive where s + c > 0.
    FP and FN are constant between consecutive thresholds -s, so evaluate them at the midpoints."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(labels).reshape(-1) == 1
    t = np.unique(-s)
    if len(t) < 2:
        return 0.0
    mid = (t[1:] + t[:-1]) / 2
    predicted = s[None, :] + mid[:, None] > 0
    fp = (predicted & ~pos).sum(1).astype(np.float64)
    fn = (~predicted & pos).sum(1).astype(np.float64)
    if normalize == "rate":
        fp, fn = fp / max((~pos).sum(), 1), fn / max(pos.sum(), 1)
    return float((np.diff(t) * np.minimum(fp, fn)).sum())


def brute_multiclass_aum(logits, labels, normalize="rate", average="micro") -> float:
    p, y = softmax64(logits), np.asarray(labels).reshape(-1)
    onehot = y[:, None] == np.arange(p.shape[1])
    if average == "micro":
        return brute_aum(p.reshape(-1), onehot.reshape(-1).astype(int), normalize)
    values = [brute_aum(p[:, k], onehot[:, k].astype(int), normalize) for k in range(p.shape[1])
              if 0 < onehot[:, k].sum() < len(y)]
    return float(np.mean(values)) if values else 0.0


# ---------------------------------------------------------------------------- learner helpers ---


@contextlib.contextmanager
def quiet(learn):
    """No progress bar, no printed table."""
    with learn.no_bar(), learn.no_logging():
        yield


def column(learn, name: str) -> list:
    """The recorded values of column `name` of the progress table, one per epoch."""
    i = learn.recorder.metric_names.index(name) - 1  # `values` rows have no 'epoch' entry
    return [row[i] for row in learn.recorder.values]


def raw_preds(learn, **kwargs):
    """Validation outputs as the model produced them (no activation) and the targets."""
    with learn.no_bar():
        return learn.get_preds(act=lambda x: x, **kwargs)


class CollectTrainBatches(Callback):
    """Keeps the raw outputs and targets of every training batch of the current epoch."""
    order = 100

    def before_train(self):
        self.preds, self.targs = [], []

    def after_batch(self):
        if self.training and len(self.yb):
            self.preds.append(self.learn.pred.detach().clone())
            self.targs.append(self.learn.y.detach().clone())

    @property
    def all(self):
        return torch.cat(self.preds), torch.cat(self.targs)


# --------------------------------------------------------------------------------- fixtures ---


@pytest.fixture(autouse=True)
def close_figures():
    """Each test's matplotlib figures closed after it (autouse in the modules that import it)."""
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """These models are tiny: with two intra-op threads on a 2-core machine, synchronisation costs
    far more than the arithmetic (25x on a busy machine), so run them on one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def breast_df():
    return breast_cancer_df()  # malignant (positive) rows subsampled to 10%


@pytest.fixture(scope="module")
def breast_dls(breast_df):
    set_seed(0)
    return tabular_dls(breast_df)


@pytest.fixture(scope="module")
def wine_data():
    return wine_df()


@pytest.fixture(scope="module")
def wine_dls(wine_data):
    set_seed(0)
    return tabular_dls(wine_data, bs=32)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    """One folder of digit PNGs for the whole session (digits_dls writes only missing files)."""
    return tmp_path_factory.getbasetemp() / "fastai_aum_digits"


@pytest.fixture(scope="module")
def digits7_dls(digits_dir):
    set_seed(0)
    return digits_dls(digits_dir, positive_digit=7, size=8, bs=128)


@pytest.fixture(scope="module")
def digits10_dls(digits_dir):
    set_seed(0)
    return digits_dls(digits_dir, size=8, bs=128)


@pytest.fixture(scope="module")
def text2_df():
    return text_df(n=400)


@pytest.fixture(scope="module")
def text2_dls(text2_df):
    set_seed(0)
    return text_dls(text2_df)


@pytest.fixture(scope="module")
def text3_df():
    return text_df(n=400, n_classes=3)


@pytest.fixture(scope="module")
def text3_dls(text3_df):
    set_seed(0)
    return text_dls(text3_df)


def count_host_reads(monkeypatch) -> list[str]:
    """Record every read of a tensor's value back to the host (what costs a sync on a GPU) until the
    monkeypatch is undone; returns the list the reads are appended to."""
    calls = []
    for method in ("item", "tolist", "__bool__", "__int__", "__float__", "numpy"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *a, _o=original, _m=method, **k: calls.append(_m) or _o(self, *a, **k))
    return calls
