"""The streaming AUROC (`functional.streaming`, `AUROCCallback(bins=...)`): within its reported bound of
scikit-learn's exact value, equal to a brute-force pair count over the same bins, and its bad input.

The brute-force oracle bins float32 scores with numpy's own view of their bits (not the package's key
function) and credits each positive-negative pair 1 (positive's bin above), 1/2 (same bin) or 0.
"""
from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from fastai.tabular.all import tabular_learner
from fastai.torch_core import set_seed
from sklearn.metrics import roc_auc_score

from fastai_aum import AUMLossFlat, AUROCCallback, AUROCUndefinedWarning
from fastai_aum.functional import AUROCHistogram, auroc, streaming_auroc
from fastai_aum.functional.streaming import order_keys
from fastai_fixtures import breast_df, breast_dls, column, quiet, raw_preds, wine_data, wine_dls  # noqa: F401


def _np_bins(scores, bins: int) -> np.ndarray:
    """Bin of each score: its float32 bits made monotone (negatives flipped), top log2(bins) bits."""
    f = np.asarray(scores, dtype=np.float32) + np.float32(0.0)
    u = f.view(np.uint32).astype(np.uint64)
    key = np.where(u >= 2 ** 31, 2 ** 32 - 1 - u, u + 2 ** 31)
    return key >> np.uint64(32 - int(math.log2(bins)))


def _brute(scores, labels, bins):
    b, y = _np_bins(scores, bins), np.asarray(labels).astype(bool)
    bp, bn = b[y][:, None], b[~y][None, :]
    pairs = bp.size * bn.size
    return ((bp > bn).sum() + 0.5 * (bp == bn).sum()) / pairs, 0.5 * (bp == bn).sum() / pairs


def _data(n, seed=0, decimals=None, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < 0.2
    s = (torch.randn(n, generator=g) + y * 0.8) * scale
    return (s if decimals is None else torch.round(s, decimals=decimals)), y


# ---------------------------------------------------------------------------- functional ---

@pytest.mark.parametrize("bins", [2, 4, 64, 2 ** 12, 2 ** 20])
@pytest.mark.parametrize("decimals", [None, 1])
def test_equals_brute_force_over_bins_and_exact_is_within_the_bound(bins, decimals):
    s, y = _data(700, seed=bins, decimals=decimals)
    value, bound = streaming_auroc(s, y, bins)
    want, want_bound = _brute(s.numpy(), y.numpy(), bins)
    assert value.item() == pytest.approx(want, abs=1e-14) and bound.item() == pytest.approx(want_bound, abs=1e-14)
    exact = roc_auc_score(y.numpy(), s.numpy())
    assert abs(value.item() - exact) <= bound.item() + 1e-15
    assert value.dtype == torch.float64 and 0 <= bound.item() <= 0.5


def test_the_bound_is_attained_so_it_cannot_be_smaller():
    """All scores in one bin, the classes perfectly separated: exact 1, histogram 1/2, bound 1/2."""
    s, y = torch.tensor([1.2, 1.5, 1.9, 1.1]), torch.tensor([1, 1, 1, 0])
    value, bound = streaming_auroc(s, y, bins=2)
    assert roc_auc_score(y, s) == 1.0 and value.item() == 0.5 and bound.item() == 0.5


def test_one_float32_value_per_bin_is_exact_with_ties():
    """Scores rounded to 2 decimals (many ties) in 2**22 bins: each bin holds one value, so ties are the
    only within-bin pairs and half credit is exact: = scikit-learn, though the bound is not 0."""
    s, y = _data(20_000, decimals=2)
    assert len(np.unique(_np_bins(s.numpy(), 2 ** 22))) == len(torch.unique(s))
    value, bound = streaming_auroc(s, y, bins=2 ** 22)
    assert value.item() == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert bound.item() > 0


def test_order_keys_are_monotone_over_every_kind_of_float32():
    tiny = torch.finfo(torch.float32).tiny
    v = torch.tensor([-math.inf, -3e38, -1.5, -1.0, -tiny, -1e-45, -0.0, 0.0, 1e-45, tiny, 1.0, 1.5, 3e38, math.inf])
    keys = order_keys(v)
    assert keys[6] == keys[7]  # -0.0 == 0.0
    diffs = torch.cat([keys[1:7] - keys[:6], keys[8:] - keys[7:-1]])
    assert bool((diffs > 0).all()) and int(keys.min()) >= 0 and int(keys.max()) < 2 ** 32


def test_negative_zero_and_zero_tie():
    value, bound = streaming_auroc(torch.tensor([-0.0, 0.0]), torch.tensor([1, 0]), bins=2)
    assert value.item() == 0.5 == roc_auc_score([1, 0], [-0.0, 0.0]) and bound.item() == 0.5


def test_batches_added_and_merged_equal_one_histogram_and_two_columns_are_z1_minus_z0():
    s, y = _data(5000, seed=3)
    whole = streaming_auroc(s, y, 2 ** 16)
    h, other = AUROCHistogram(2 ** 16), AUROCHistogram(2 ** 16)
    for part in torch.arange(4000).chunk(7):
        h.update(s[part], y[part].long())
    other.update(s[4000:], y[4000:])
    h += other
    assert tuple(h.compute()) == tuple(whole) and h.count == (int((~y).sum()), int(y.sum()))
    z0 = torch.randn(5000, dtype=torch.float64)
    two = streaming_auroc(torch.stack([z0, z0 + s.double()], 1), y, 2 ** 16)
    assert abs(two.auroc.item() - whole.auroc.item()) <= two.bound.item() + whole.bound.item()
    assert abs(two.auroc.item() - roc_auc_score(y.numpy(), s.numpy())) <= two.bound.item() + 1e-12
    h.reset()
    assert h.count == (0, 0)


def test_float64_scores_are_within_the_bound_of_their_exact_auroc():
    s, y = _data(3000, seed=4)
    s = s.double() + torch.linspace(0, 1e-9, 3000, dtype=torch.float64)  # differences float32 cannot hold
    value, bound = streaming_auroc(s, y, 2 ** 20)
    assert abs(value.item() - auroc(s, y).item()) <= bound.item()


@pytest.mark.slow
def test_ten_million_rows_within_the_reported_bound_of_sklearn():
    s, y = _data(10 ** 7, seed=7)
    value, bound = streaming_auroc(s, y, bins=2 ** 20)
    exact = roc_auc_score(y.numpy(), s.numpy())
    assert abs(value.item() - exact) <= bound.item() < 1e-4


@pytest.mark.parametrize("bins, error", [(3, ValueError), (1, ValueError), (0, ValueError), (-4, ValueError),
                                         (1000, ValueError), (2 ** 29, ValueError), (2.0 ** 10, TypeError),
                                         (True, TypeError), ("1024", TypeError)])
def test_bad_bins(bins, error):
    with pytest.raises(error, match="`bins`"):
        streaming_auroc(torch.randn(4), torch.tensor([0, 1, 0, 1]), bins)
    with pytest.raises(error, match="`bins`"):
        AUROCCallback(bins=bins)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_an_error_naming_the_count(bad):
    s = torch.randn(10)
    s[[2, 5]] = bad
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\) \(NaN or inf\) out of 10"):
        streaming_auroc(s, torch.tensor([0, 1] * 5))


def test_one_class_and_empty_are_nan_with_a_warning():
    for s, y, message in ((torch.randn(5), torch.zeros(5), "only one class"), (torch.randn(5), torch.ones(5), "one class"),
                          (torch.zeros(0), torch.zeros(0), "empty")):
        with pytest.warns(AUROCUndefinedWarning, match=message):
            value, bound = streaming_auroc(s, y)
        assert math.isnan(value) and math.isnan(bound)


@pytest.mark.parametrize("preds, target, match", [
    (torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), "binary problems only"),
    (torch.randn(6, 3), torch.ones(6, 3), "binary problems only"),
    (torch.randn(6), torch.ones(6, 3), "no multi-hot"),
    (torch.randn(6), torch.tensor([0, 1, 2, 0, 1, 0]), r"\{0, 1\}, got values from 0 to 2"),
    (torch.randn(6), torch.tensor([0, 1, -1, 0, 1, 0]), r"\{0, 1\}"),
    (torch.randn(6), torch.tensor([0, 0.5, 1, 0, 1, 0]), r"\{0, 1\}"),
    (torch.randn(6), torch.tensor([0, 1, 0]), "one label per row"),
])
def test_multiclass_multilabel_and_bad_labels_are_refused(preds, target, match):
    with pytest.raises(ValueError, match=match):
        streaming_auroc(preds, target)


def test_histograms_of_different_bins_do_not_add():
    h = AUROCHistogram(2 ** 8)
    with pytest.raises(ValueError, match="same `bins` \\(256\\)"):
        h += AUROCHistogram(2 ** 9)
    with pytest.raises(RuntimeError, match="not initialised"):
        h.all_reduce()


# ------------------------------------------------------------------------- the callback ---

def _streaming_learner(dls, n_out=1, **kw):
    set_seed(0)
    loss = AUMLossFlat() if n_out == 1 else None
    return tabular_learner(dls, n_out=n_out, loss_func=loss, cbs=AUROCCallback(**kw))


def _score(raw):
    return raw[:, 0].double() if raw.shape[1] == 1 else raw[:, 1].double() - raw[:, 0].double()


@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("bins", [2 ** 20, 16])
def test_callback_records_a_value_within_its_bound_of_sklearn(breast_dls, n_out, bins):
    learn = _streaming_learner(breast_dls, n_out, bins=bins, train=True)
    with quiet(learn):
        learn.fit(2, 1e-2)
    assert list(learn.recorder.metric_names)[3:-1] == ["auroc", "auroc_bound", "train_auroc"]
    value, bound = column(learn, "auroc")[-1], column(learn, "auroc_bound")[-1]
    assert (learn.auroc.value, learn.auroc.bound) == (value, bound)
    assert list(learn.auroc.history.columns) == ["epoch", "auroc", "auroc_bound", "train_auroc"]
    raw, y = raw_preds(learn)
    exact = roc_auc_score(y.numpy().ravel(), _score(raw).numpy())
    assert abs(learn.auroc.value - exact) <= learn.auroc.bound + 1e-15
    if bins == 16:
        assert learn.auroc.bound > 1e-3  # few bins: a real approximation, still inside its bound
    hist = learn.auroc.metric.hist
    assert hist.counts.shape == (bins, 2) and sum(hist.count) == len(breast_dls.valid_ds)
    assert learn.auroc.metric.preds is None  # nothing kept per row


def test_callback_positive_class_by_name(breast_dls):
    learn = _streaming_learner(breast_dls, 2, bins=2 ** 20, pos_label="benign")
    with quiet(learn):
        learn.fit(1, 1e-2)
    raw, y = raw_preds(learn)
    exact = roc_auc_score(y.numpy().ravel() == 0, -_score(raw).numpy())
    assert abs(learn.auroc.value - exact) <= learn.auroc.bound + 1e-15 and learn.auroc.positive_class == "benign"


def test_callback_nan_outputs_give_nan_one_warning_and_the_fit_goes_on(breast_dls):
    learn = _streaming_learner(breast_dls, 1, bins=2 ** 10)
    with torch.no_grad():
        list(learn.model.parameters())[-1].fill_(math.nan)
    with quiet(learn), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn.fit(2, 0.0)
    undefined = [str(w.message) for w in caught if issubclass(w.category, AUROCUndefinedWarning)]
    n = len(breast_dls.valid_ds)
    assert len(undefined) == 1 and f"{n} of {n} model outputs are not finite" in undefined[0]
    assert all(math.isnan(v) for v in column(learn, "auroc") + column(learn, "auroc_bound"))
    assert len(learn.recorder.values) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(average=None), "average=None"), (dict(max_fpr=0.1), "max_fpr=0.1"),
    (dict(average_precision=True), "average_precision=True"), (dict(multi_class="ovo"), "multi_class='ovo'")])
def test_callback_refuses_options_that_need_kept_outputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AUROCCallback(bins=2 ** 20, **kwargs)


def test_callback_refuses_multiclass_before_training_and_plots_nothing(wine_dls, breast_dls):
    set_seed(0)
    learn = tabular_learner(wine_dls, cbs=AUROCCallback(bins=2 ** 20))
    with quiet(learn), pytest.raises(ValueError, match=r"for binary problems, but the DataLoaders are 3 classes"):
        learn.fit(1, 1e-2)
    learn = _streaming_learner(breast_dls, 1, bins=2 ** 12)
    with quiet(learn):
        learn.validate()
    assert learn.auroc.roc is None
    with pytest.raises(RuntimeError, match="keeps no outputs"):
        learn.auroc.plot()


def test_callback_pickles_without_its_counts_and_is_reused(breast_dls):
    learn = _streaming_learner(breast_dls, 1, bins=2 ** 12)
    with quiet(learn):
        learn.fit(1, 1e-2)
        first = learn.validate()[1]
        learn.fit(1, 1e-2)
    copy = pickle.loads(pickle.dumps(learn.auroc.metric))
    assert copy.hist is None and copy.bins == 2 ** 12
    with quiet(learn):
        again = learn.validate()[1]
    assert not math.isnan(first) and not math.isnan(again)
    assert sum(learn.auroc.metric.hist.count) == len(breast_dls.valid_ds)  # each pass counted afresh


# -------------------------------------------------------------------- the exact mode's keep ---

def test_exact_mode_keeps_one_byte_labels_and_can_keep_them_on_the_cpu(breast_dls):
    learn = _streaming_learner(breast_dls, 2, cpu=True)
    with quiet(learn):
        learn.fit(1, 1e-2)
    m = learn.auroc.metric
    assert m.targs.dtype == torch.uint8 and m.preds.dtype == torch.float32 and m.preds.device.type == "cpu"
    raw, y = raw_preds(learn)
    assert learn.auroc.value == pytest.approx(roc_auc_score(y.numpy().ravel(), _score(raw).numpy()), abs=1e-12)


def test_streaming_metric_reads_nothing_back_per_batch(monkeypatch):
    """Counting a batch reads no tensor value back to the host (a sync on a GPU); the pass's end does."""
    from fastai_aum.metrics import StreamingAUROC
    from fastai_aum.reading import Reading
    from fastai_fixtures import count_host_reads
    metric = StreamingAUROC(bins=2 ** 10)
    metric.reading, metric._ready = Reading(classes=["no", "yes"]), True
    metric.reset()
    calls = count_host_reads(monkeypatch)
    for _ in range(5):
        metric.add(torch.randn(64, 2), torch.randint(0, 2, (64,)))
    assert calls == []
    assert 0 <= metric.value <= 1 and calls
