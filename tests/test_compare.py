"""compare_losses: paired runs, selection by validation AUROC, and an honest summary."""
from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from fastai.losses import CrossEntropyLossFlat
from scipy.stats import wilcoxon

from fastai_aum.compare import compare_losses
from fastai_aum.datasets import breast_cancer_df, stratified_split, tabular_dls

matplotlib.use("Agg")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    df = breast_cancer_df(pos_frac=0.15)
    dev, test = stratified_split(df["label"], 0.25, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = tabular_dls(df.iloc[dev].reset_index(drop=True), bs=32)
    return dls, df.iloc[test]


@pytest.fixture(scope="module")
def result(data):
    dls, test = data
    with pytest.warns(UserWarning, match="tied at its maximum"):
        return compare_losses(dls, test=test, seeds=[0, 1, 2], epochs=3, lr=1e-2, show_progress=False, layers=[16])


def test_results_are_tidy(result):
    r = result.results
    assert list(r.columns[:3]) == ["loss", "seed", "epoch"]
    assert len(r) == 3 * 3 * 3  # losses x seeds x epochs
    assert set(r["loss"]) == {"aum", "ce", "weighted_ce"}
    assert r.groupby(["loss", "seed"])["selected"].sum().eq(1).all()


def test_selection_is_the_best_validation_epoch_ties_to_the_lowest_validation_loss(result):
    for (_, _), run in result.results.groupby(["loss", "seed"]):
        chosen = run[run["selected"]].iloc[0]
        tied = run[run["valid_auroc"] == run["valid_auroc"].max()]
        assert chosen["valid_auroc"] == run["valid_auroc"].max()
        assert chosen["valid_loss"] == tied["valid_loss"].min()
        assert chosen["best_ties"] == len(tied)
        assert 0 <= chosen["test_auroc_low"] <= chosen["test_auroc"] <= chosen["test_auroc_high"] <= 1
        assert run[~run["selected"]]["test_auroc"].isna().all()


def test_identical_losses_give_identical_runs(data):
    """Pairing: the same seed gives the same initial weights and the same batches, so the same loss
    under two names must trace exactly the same curve."""
    dls, test = data
    r = compare_losses(dls, test=test, losses=["ce", CrossEntropyLossFlat()], seeds=[3, 4], epochs=2,
                       show_progress=False, layers=[16]).results
    named = r[r["loss"] == "ce"].reset_index(drop=True)
    other = r[r["loss"] != "ce"].reset_index(drop=True)
    for column in ("seed", "epoch", "train_loss", "valid_loss", "valid_auroc", "test_auroc"):
        pd.testing.assert_series_equal(named[column], other[column], check_names=False)


def test_summary_matches_an_independent_computation(result):
    summary = result.summary()
    sel = result.results[result.results["selected"]]
    ce = sel[sel["loss"] == "ce"].set_index("seed")["test_auroc"]
    for loss in ("aum", "weighted_ce"):
        mine = sel[sel["loss"] == loss].set_index("seed")["test_auroc"]
        diff = (mine - ce.loc[mine.index]).to_numpy()
        assert summary.loc[loss, "test_auroc_mean"] == pytest.approx(mine.mean())
        assert summary.loc[loss, "test_auroc_std"] == pytest.approx(mine.std())
        assert summary.loc[loss, "wins_vs_ce"] == f"{(diff > 0).sum()}/{len(diff)}"
        expected_p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
        assert summary.loc[loss, "wilcoxon_p"] == pytest.approx(expected_p)
    assert np.isnan(summary.loc["ce", "wilcoxon_p"])


def test_plot_has_epochs_and_roc_curves(result):
    fig = result.plot()
    ax_epochs, ax_roc = fig.axes
    assert len(ax_epochs.get_lines()) == 3  # one mean line per loss
    assert len(ax_roc.get_lines()) == 3 * 3 + 1  # a ROC per loss and seed, and the diagonal


def test_without_test_data_it_reports_validation(data):
    dls, _ = data
    r = compare_losses(lambda seed: dls, losses=["aum"], seeds=[0], epochs=1, show_progress=False, layers=[8])
    assert r.results["test_auroc"].isna().all()
    assert len(r.rocs) == 1


def test_duplicate_loss_names_are_refused(data):
    with pytest.raises(ValueError, match="distinct names"):
        compare_losses(data[0], losses=["ce", "ce"], seeds=[0], epochs=1)


def test_positive_class_by_name(data):
    """The named class is the positive one: the test ROC's true positive rates count benign rows."""
    dls, test = data
    n_benign, n_malignant = int((test["label"] == "benign").sum()), int((test["label"] == "malignant").sum())
    for positive, n_pos, n_neg in (("benign", n_benign, n_malignant), (None, n_malignant, n_benign)):
        result = compare_losses(dls, test=test, losses=["ce"], seeds=[0], epochs=1, show_progress=False, layers=[8],
                                positive=positive)
        roc = result.rocs[("ce", 0)]
        assert np.allclose((roc.tpr * n_pos).numpy(), (roc.tpr * n_pos).round().numpy())
        assert np.allclose((roc.fpr * n_neg).numpy(), (roc.fpr * n_neg).round().numpy())
        assert result.positive == (positive or "malignant")
        assert repr(result.positive) in result.plot().axes[1].get_title()


@pytest.mark.parametrize("kwargs, message", [
    (dict(seeds=[]), r"`seeds` must hold at least one seed .* got none"),
    (dict(seeds=()), r"`seeds` must hold at least one seed"),
    (dict(losses=[]), r"`losses` must name at least one loss .* got none"),
    (dict(epochs=0), r"`epochs` must be an integer >= 1, got 0"),
    (dict(epochs=-2), r"`epochs` must be an integer >= 1, got -2"),
    (dict(epochs=2.5), r"`epochs` must be an integer >= 1, got 2.5"),
    (dict(epochs=True), r"`epochs` must be an integer >= 1, got True"),
    (dict(seeds=[0, 0]), r"`seeds` must be distinct \(runs are paired by seed\), got \[0, 0\]"),
    (dict(seeds=[0, 1.5]), r"`seeds` must be integers, got 1.5 in \[0, 1.5\]"),
    (dict(seeds=["0"]), r"`seeds` must be integers, got '0'"),
    (dict(lr=0), r"`lr` must be a positive finite number, got 0"),
    (dict(lr=-1e-3), r"`lr` must be a positive finite number, got -0.001"),
    (dict(lr=float("nan")), r"`lr` must be a positive finite number, got nan"),
    (dict(lr=float("inf")), r"`lr` must be a positive finite number, got inf"),
    (dict(lr="1e-2"), r"`lr` must be a positive finite number, got '1e-2'"),
])
def test_bad_arguments_are_refused_before_training(kwargs, message):
    """These used to train for nothing and end in `KeyError: 'selected'` from pandas."""
    with pytest.raises(ValueError, match=message):
        compare_losses(None, show_progress=False, **kwargs)  # refused before `dls` is touched


def test_numpy_integer_seeds_are_fine():
    from fastai_aum.compare import _check_arguments
    assert _check_arguments(iter(["ce"]), np.arange(2), np.int64(3), np.float32(1e-2)) == (["ce"], [0, 1])
