"""compare_losses: paired runs, selection by validation AUROC, and an honest summary."""
from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from fastai.losses import CrossEntropyLossFlat
import torch
from scipy.stats import wilcoxon
from sklearn.metrics import average_precision_score

from fastai_aum.compare.run import Comparison, compare_losses, compare_losses_on_df, tabular_splits
from fastai_aum.functional import auroc_ci
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
    for pos_label, n_pos, n_neg in (("benign", n_benign, n_malignant), (None, n_malignant, n_benign)):
        result = compare_losses(dls, test=test, losses=["ce"], seeds=[0], epochs=1, show_progress=False, layers=[8],
                                pos_label=pos_label)
        roc = result.rocs[("ce", 0)]
        assert np.allclose((roc.tpr * n_pos).numpy(), (roc.tpr * n_pos).round().numpy())
        assert np.allclose((roc.fpr * n_neg).numpy(), (roc.fpr * n_neg).round().numpy())
        assert result.pos_label == (pos_label or "malignant")
        assert repr(result.pos_label) in result.plot().axes[1].get_title()


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
    from fastai_aum.compare.run import _check_arguments
    assert _check_arguments(iter(["ce"]), np.arange(2), np.int64(3), np.float32(1e-2)) == ([("ce", {"loss": "ce"})], [0, 1])


def _synthetic(effect: float, seeds=range(6), n=400, n_classes=2, split="per_seed", rng_seed=0) -> Comparison:
    """A Comparison made without training: 'ce' scores y plus noise, 'aum' that plus `effect` times y."""
    rng = np.random.default_rng(rng_seed)
    rows, scores = [], []
    for seed in seeds:
        y = rng.integers(0, n_classes, n) if n_classes > 2 else (rng.random(n) < 0.2).astype(int)
        noise = rng.normal(size=(n, n_classes if n_classes > 2 else 1))
        for loss, extra in (("aum", effect), ("ce", 0.0)):
            if n_classes > 2:
                s = noise + (1 + extra) * np.eye(n_classes)[y]
                frame = {f"score_{k}": s[:, k] for k in range(n_classes)}
            else:
                frame = {"score": noise[:, 0] + (1 + extra) * y}
            scores.append(pd.DataFrame({"loss": loss, "seed": seed, "lr": 0.01, "row": np.arange(n), "target": y,
                                        **frame}))
            for epoch in range(3):
                rows.append({"loss": loss, "seed": seed, "epoch": epoch, "lr": 0.01, "valid_loss": 1.0 - epoch / 10,
                             "valid_auroc": 0.9, "run_best": epoch == 2, "selected": epoch == 2, "best_ties": 3,
                             "test_auroc": 0.9 + extra / 10 if epoch == 2 else np.nan, "test_auroc_se": 0.01,
                             "test_ap": 0.5, "valid_positives": 10, "test_positives": int(y.sum())})
    protocol = {"split": split, "evaluated": "test", "classes": [str(k) for k in range(max(n_classes, 2))]}
    return Comparison(pd.DataFrame(rows), {}, "ce", "yes" if n_classes == 2 else None, pd.concat(scores), protocol)


def test_per_seed_tests_pair_each_seeds_own_rows():
    """The report's DeLong is `functional.auroc_test`; what is checked here is that each seed's test pairs
    that seed's runs, row by row."""
    from fastai_aum.functional import auroc_test
    c = _synthetic(0.3, seeds=[0, 1])
    tests = c.tests()
    assert list(tests["seed"]) == [0, 1] and (tests["loss"] == "aum").all()
    for _, t in tests.iterrows():
        s = c.scores[c.scores["seed"] == t["seed"]]
        a, b = s[s["loss"] == "aum"], s[s["loss"] == "ce"]
        ref = auroc_test(torch.tensor(a["score"].to_numpy()), torch.tensor(b["score"].to_numpy()),
                         torch.tensor(a["target"].to_numpy()))
        assert t["z"] == pytest.approx(ref.z.item()) and t["p"] == pytest.approx(ref.p_value.item())
        assert t["diff"] == pytest.approx((ref.auroc_a - ref.auroc_b).item())
        assert t["se_diff"] == pytest.approx(ref.std_err.item())


@pytest.mark.parametrize("split, independent", [("per_seed", True), ("shared", False)])
def test_pooling_rule_depends_on_the_split(split, independent):
    c = _synthetic(0.02, split=split)
    t, row = c.tests(), c.summary().loc["aum"]
    k = len(t)
    se = np.sqrt((t["se_diff"] ** 2).sum()) / k if independent else t["se_diff"].mean()
    assert row["pooled_z"] == pytest.approx(t["diff"].mean() / se)
    assert row["pooled_low"] == pytest.approx(t["diff"].mean() - 1.959964 * se, abs=1e-6)
    expected = t["positives"].mean() * (1.959964 + 0.841621) ** 2 * (t["se_diff"] ** 2).mean() / 0.005 ** 2
    assert row["positives_needed"] == pytest.approx(expected, rel=1e-5)


def test_verdicts_claim_no_more_than_the_numbers():
    clear = _synthetic(1.0).summary().loc["aum", "verdict"]
    assert clear.startswith("higher than ce: +") and "pooled DeLong p=" in clear and "6/6 seeds" in clear
    faint = _synthetic(0.0).summary().loc["aum", "verdict"]
    assert faint.startswith("no detectable difference at this test size") and "test positives would be needed" in faint
    multi = _synthetic(0.5, n_classes=3).summary()
    assert multi.loc["aum", "verdict"].startswith("seed-level evidence only (DeLong tests are binary only)")
    assert np.isnan(multi.loc["aum"].get("pooled_p", np.nan))
    report = _synthetic(0.0).report()
    assert "positives per seed: validation 10, test" in report and "tied in 12 of 12 runs" in report
    assert "verdict" in report and "  aum: no detectable difference" in report


def test_plot_reads_well():
    import matplotlib.pyplot as plt
    fig = _synthetic(0.1).plot(log_fpr=True)
    ax_epochs, ax_roc = fig.axes
    assert all(float(t).is_integer() for t in ax_epochs.get_xticks())
    labels = [t.get_text() for t in ax_epochs.get_legend().get_texts()]
    assert "mean over seeds" in labels and "band: min to max over seeds" in labels
    assert ax_roc.get_xscale() == "log" and "'yes'" in ax_roc.get_title()
    plt.close(fig)
    fig = _synthetic(0.1, n_classes=3).plot()
    assert len(fig.axes) == 1 + 3 and "class '2' against the rest" in fig.axes[3].get_title()
    plt.close(fig)


def test_lr_grid_is_chosen_on_validation_data(data):
    dls, test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = compare_losses(dls, test=test, losses=["aum", "ce"], seeds=[0, 1], epochs=2, lr=[1e-3, 3e-2],
                           show_progress=False, layers=[8])
    r = c.results
    assert sorted(r["lr"].unique()) == [1e-3, 3e-2] and r.groupby(["loss", "seed", "lr"])["run_best"].sum().eq(1).all()
    best = r[r["run_best"]].groupby(["loss", "lr"])["valid_auroc"].mean()
    for loss, lr in c.chosen_lr.items():
        assert best[loss][lr] == best[loss].max()
    assert c.selected.groupby("loss")["lr"].nunique().eq(1).all() and len(c.selected) == 4
    assert c.summary().loc["aum", "lr"] == c.chosen_lr["aum"]


def test_per_seed_splits_and_the_run_hook(tmp_path):
    df = breast_cancer_df(pos_frac=0.15)
    per_seed, shared = tabular_splits(df, split="per_seed"), tabular_splits(df, split="shared")
    assert not per_seed(0)[1].index.equals(per_seed(1)[1].index)
    assert shared(0)[1].index.equals(shared(1)[1].index)
    seen = []
    kwargs = dict(losses=["aum", "ce"], seeds=[0, 1], epochs=1, show_progress=False, layers=[8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = compare_losses_on_df(df, on_run=lambda rows, scores: seen.append((rows, scores)), **kwargs)
        assert len(seen) == 4 and all(len(s) == len(per_seed(0)[1]) for _, s in seen)
        first = (seen[0][0], seen[0][1])
        resumed = compare_losses_on_df(df, previous=first, on_run=lambda rows, scores: seen.append(rows), **kwargs)
    assert len(seen) == 4 + 3
    pd.testing.assert_frame_equal(full.results, resumed.results)
    assert full.protocol["split"] == "per_seed"
    run = full.selected.iloc[0]
    s = full.scores[(full.scores["loss"] == run["loss"]) & (full.scores["seed"] == run["seed"])]
    ci = auroc_ci(torch.tensor(s["score"].to_numpy()), torch.tensor(s["target"].to_numpy()))
    assert run["test_auroc"] == pytest.approx(ci.auroc.item())
    assert run["test_auroc_se"] == pytest.approx(ci.std_err.item())
    assert run["test_ap"] == pytest.approx(average_precision_score(s["target"], s["score"]))
    assert run["test_positives"] == s["target"].sum()


def test_a_batch_larger_than_the_training_split_is_refused(data):
    dls, test = data
    big = tabular_dls(breast_cancer_df(pos_frac=0.15), bs=10_000)
    with pytest.raises(ValueError, match=r"batch size \(10000\) must be at most the \d+ training rows"):
        compare_losses(big, losses=["ce"], seeds=[0], epochs=1, show_progress=False)


def test_append_csv_keeps_the_files_own_columns(tmp_path):
    from fastai_aum.compare.run import append_csv
    path = tmp_path / "results.csv"
    append_csv(pd.DataFrame({"loss": ["ce"], "seed": [0]}), path)  # new file: header and row
    append_csv(pd.DataFrame({"seed": [1], "loss": ["aum"], "recipe": ["aum"]}), path)  # a newer layout
    back = pd.read_csv(path)
    assert list(back.columns) == ["loss", "seed"]
    assert back.to_dict("list") == {"loss": ["ce", "aum"], "seed": [0, 1]}
    path.write_text("")
    append_csv(pd.DataFrame({"a": [1]}), path)  # an empty file gets a header
    assert pd.read_csv(path).to_dict("list") == {"a": [1]}


def test_a_verdict_says_when_the_seeds_cannot_reach_significance():
    """Issue 19, item 8: with 5 seeds or fewer every verdict said 'tentative' and nothing said why."""
    few = _synthetic(1.0, seeds=range(4)).summary().loc["aum", "verdict"]
    assert few.startswith("higher than ce: +") and few.endswith(
        "; with 4 seeds that differ, the Wilcoxon test cannot reach p < 0.05 (its smallest p is 0.12; more seeds can), "
        "so treat it as tentative")
    assert wilcoxon([1.0, 2.0, 3.0, 4.0]).pvalue == pytest.approx(0.125)  # the floor it names
    six = _synthetic(1.0, seeds=range(6)).summary().loc["aum", "verdict"]
    assert "cannot reach" not in six and "tentative" not in six
    multi = _synthetic(0.5, n_classes=3, seeds=range(3)).summary().loc["aum", "verdict"]
    assert multi.startswith("seed-level evidence only") and "with 3 seeds that differ" in multi


def test_small_p_values_are_not_printed_as_zero():
    """Item 8: p-values below 0.0005 printed as 0.000."""
    c = _synthetic(1.0, seeds=range(6))
    pooled = c.summary().loc["aum", "pooled_p"]
    assert pooled < 1e-4
    report = c.report()
    assert "0.000 " not in report and f"{pooled:.1e}" in report and f"p={pooled:.1e}" in report
