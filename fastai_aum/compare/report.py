"""`Comparison`: what `compare_losses` measured, with DeLong intervals and paired tests, a verdict per loss, and plots.

The rules, stated once (the report repeats them):
- Learning rate: per loss, the grid value with the highest mean (over seeds) of the run's best validation
  AUROC; ties go to the lower mean validation loss at those epochs, then to the first value of the grid.
- Per seed: DeLong's paired test of each loss against the baseline on the same test rows (binary only).
- Pooled over seeds: the mean of the per-seed differences, tested with z = mean / se. With a new split
  per seed the test sets are disjoint draws, so se = sqrt(sum se_i^2) / k; with one shared split the
  per-seed tests reuse the same rows and are positively correlated, so se = the mean se_i (as if they
  were perfectly correlated: conservative, it never credits k seeds with k test sets). The 95% interval
  is mean +- 1.96 se. Seed-level evidence: wins, a two-sided sign test and the Wilcoxon signed-rank
  test over the paired differences of the test AUROCs.
- Positives needed: the DeLong standard error of a difference scales like 1/sqrt(positives) at fixed
  prevalence, so detecting `DETECT` with a two-sided 5% test and 80% power needs about
  `positives * (1.96 + 0.84)^2 * se^2 / DETECT^2` test positives: a rough estimate.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ..functional import AUROCUndefinedWarning, auroc_test, roc_curve

__all__ = ["Comparison", "DETECT"]

DETECT = 0.005  # the AUROC difference whose required number of test positives the verdict estimates
_Z_POWER = 1.959963984540054 + 0.8416212335729143  # two-sided 5% test with 80% power
_Z95 = 1.959963984540054


def _phi_p(z: float) -> float:
    """Two-sided normal p-value of z."""
    return math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else (0.0 if not math.isnan(z) else math.nan)


def _paired_delong(score_a, score_b, target) -> tuple[float, float, float, float]:
    """`functional.auroc_test` of two binary scorings of the same rows, as (difference A - B, its standard
    error, z, two-sided p); the difference and se are NaN where DeLong's variance is undefined (fewer than
    2 positives or negatives), silently: the report says so in its verdict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AUROCUndefinedWarning)
        t = auroc_test(torch.as_tensor(np.asarray(score_a, dtype=np.float64)),
                       torch.as_tensor(np.asarray(score_b, dtype=np.float64)), torch.as_tensor(np.asarray(target) == 1))
    if math.isnan(float(t.std_err)):
        return (math.nan,) * 4
    return float(t.diff), float(t.std_err), float(t.z), float(t.p_value)


def _sign_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test over the seeds that differ."""
    from scipy.stats import binomtest
    return binomtest(wins, wins + losses).pvalue if wins + losses else 1.0


@dataclass
class Comparison:
    """What `compare_losses` measured, with `summary()`, `tests()`, `report()` and `plot()` on it.

    Args:
        results: one row per loss, learning rate, seed and epoch (`run_best` marks each run's epoch chosen
            on validation data; `selected`, added here, the chosen epochs of each loss's chosen learning rate).
        rocs: (loss, seed) -> the ROC curve(s) of the selected models (default: from `scores`).
        baseline: the loss the others are tested against.
        pos_label: the positive class of a binary problem.
        scores: the evaluated rows' scores of every run (loss, seed, lr, row, target, then `score` for a
            binary target, 1 meaning the positive class, or one `score_k` column per class).
        protocol: how the runs were made (`split`, `evaluated`, `classes`, ...).
    """
    results: pd.DataFrame
    rocs: dict = field(default_factory=dict)  # (loss, seed) -> ROC or list of ROC
    baseline: str = "ce"
    pos_label: object = None  # the positive class of a binary problem
    scores: pd.DataFrame | None = None
    protocol: dict = field(default_factory=dict)
    detect: ClassVar[float] = DETECT

    def __post_init__(self):
        r = self.results
        if "run_best" in r and len(r):
            lrs = self.chosen_lr
            r["selected"] = r["run_best"].astype(bool) & (r["lr"] == r["loss"].map(lrs))
        if not self.rocs and self.scores is not None and len(self.scores):
            self.rocs = _selected_rocs(self)

    @property
    def chosen_lr(self) -> dict:
        """The learning rate chosen for each loss on validation data (see the module's rule)."""
        best = self.results[self.results["run_best"].astype(bool)]
        table = best.groupby(["loss", "lr"], sort=False).agg(auroc=("valid_auroc", "mean"),
                                                              vloss=("valid_loss", "mean"))
        chosen = {}
        for loss, g in table.groupby(level="loss", sort=False):
            g = g.reset_index()
            g["order"] = range(len(g))
            g = g.sort_values(["auroc", "vloss", "order"], ascending=[False, True, True])
            chosen[loss] = g["lr"].iloc[0]
        return chosen

    @property
    def selected(self) -> pd.DataFrame:
        """One row per loss and seed: the epoch chosen on validation data, at the loss's chosen learning rate."""
        return self.results[self.results["selected"]].reset_index(drop=True)

    @property
    def binary(self) -> bool:
        return self.scores is not None and "score" in self.scores

    def _run_scores(self, loss, seed) -> pd.DataFrame:
        s = self.scores
        lr = self.chosen_lr[loss]
        return s[(s["loss"] == loss) & (s["seed"] == seed) & (s["lr"] == lr)].sort_values("row")

    def tests(self) -> pd.DataFrame:
        """Per loss other than the baseline and per seed: DeLong's paired test against the baseline on the
        same evaluated rows (binary targets; empty otherwise)."""
        columns = ["loss", "seed", "auroc", "baseline_auroc", "diff", "se_diff", "z", "p", "positives"]
        if not self.binary:
            return pd.DataFrame(columns=columns)
        sel = self.selected.set_index(["loss", "seed"])
        rows = []
        for loss, seed in sel.index:
            if loss == self.baseline or (self.baseline, seed) not in sel.index:
                continue
            mine, base = self._run_scores(loss, seed), self._run_scores(self.baseline, seed)
            if len(mine) != len(base) or not np.array_equal(mine["target"].to_numpy(), base["target"].to_numpy()):
                raise ValueError(f"runs {loss!r} and {self.baseline!r} of seed {seed} were evaluated on different rows")
            diff, se, z, p = _paired_delong(mine["score"], base["score"], mine["target"])
            rows.append({"loss": loss, "seed": seed, "auroc": sel.loc[(loss, seed), "test_auroc"],
                         "baseline_auroc": sel.loc[(self.baseline, seed), "test_auroc"], "diff": diff, "se_diff": se,
                         "z": z, "p": p, "positives": int((mine["target"] == 1).sum())})
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        """Per loss: its chosen learning rate; mean and standard deviation over seeds of the best validation
        AUROC, of the test AUROC and average precision of the selected model, and the mean DeLong standard
        error of a run's test AUROC; the mean selected epoch; against the baseline, the seed-level evidence
        (paired wins, sign test and Wilcoxon p on the test AUROC differences), the per-seed DeLong tests
        (how many seeds reach p < 0.05), the pooled evidence (see the module docstring for the rule), the
        test positives needed to detect `DETECT`, and a one-line verdict."""
        sel = self.selected
        metric = "test_auroc" if sel["test_auroc"].notna().any() else "valid_auroc"
        base = sel[sel["loss"] == self.baseline].set_index("seed")[metric]
        tests, lrs = self.tests(), self.chosen_lr
        rows = []
        for loss, g in sel.groupby("loss", sort=False):
            row = {"loss": loss, "runs": len(g), "lr": lrs[loss],
                   "valid_auroc_mean": g["valid_auroc"].mean(), "valid_auroc_std": g["valid_auroc"].std(),
                   "test_auroc_mean": g["test_auroc"].mean(), "test_auroc_std": g["test_auroc"].std(),
                   "test_auroc_se_mean": g.get("test_auroc_se", pd.Series(dtype=float)).mean(),
                   "test_ap_mean": g.get("test_ap", pd.Series(dtype=float)).mean(),
                   "test_ap_std": g.get("test_ap", pd.Series(dtype=float)).std(),
                   "selected_epoch_mean": g["epoch"].mean()}
            mine = g.set_index("seed")[metric]
            common = mine.index.intersection(base.index)
            if loss != self.baseline and len(common):
                row.update(_seed_level((mine[common] - base[common]).to_numpy(), self.baseline))
                row.update(_pooled(tests[tests["loss"] == loss], self.protocol.get("split") == "per_seed"))
            rows.append(row)
        order = list(dict.fromkeys(self.results["loss"]))
        summary = pd.DataFrame(rows).set_index("loss").loc[[loss for loss in order if loss in set(sel["loss"])]]
        summary["verdict"] = [_verdict(self, loss, row) for loss, row in summary.iterrows()]
        return summary

    def report(self) -> str:
        """The protocol, `summary()` as compact text tables (per loss, then against the baseline), and the verdicts."""
        from .plots import report_text
        return report_text(self)

    def plot(self, figsize=None, log_fpr: bool | None = None):
        """Validation AUROC by epoch (mean over seeds, band min to max) and the ROC curves of the selected
        models: one panel for a binary target, one per class otherwise. `log_fpr` puts the false positive
        rate on a log axis, which spreads out near-perfect curves (default: when every selected test AUROC
        is at least 0.98). Returns the figure."""
        from .plots import plot_comparison
        return plot_comparison(self, figsize, log_fpr)


def _pooled(t: pd.DataFrame, independent: bool) -> dict:
    """The pooled evidence of the per-seed tests `t` (see the module docstring for the rule)."""
    t = t.dropna(subset=["z", "se_diff"])
    k = len(t)
    if not k:
        return {}
    se = math.sqrt((t["se_diff"] ** 2).sum()) / k if independent else t["se_diff"].mean()
    d = t["diff"].mean()
    z = 0.0 if d == 0 and se == 0 else (d / se if se > 0 else math.copysign(math.inf, d))
    rms_se = math.sqrt((t["se_diff"] ** 2).mean())
    needed = t["positives"].mean() * _Z_POWER ** 2 * rms_se ** 2 / DETECT ** 2
    return {"seeds_p_below_0.05": f"{int((t['p'] < 0.05).sum())}/{k}", "pooled_diff": d,
            "pooled_low": d - _Z95 * se, "pooled_high": d + _Z95 * se, "pooled_z": z, "pooled_p": _phi_p(z),
            "positives_per_test": t["positives"].mean(), "positives_needed": needed}


def _verdict(c: Comparison, loss: str, row) -> str:
    """One line that claims no more than the numbers of `row`, the summary of `loss` in `c`."""
    b = c.baseline
    if loss == b:
        return "baseline"
    wins = row.get(f"wins_vs_{b}")
    if pd.isna(row.get(f"mean_diff_vs_{b}", np.nan)):
        return f"no run of {b!r} to compare with"
    from .plots import format_p
    ties = int(row[f"ties_vs_{b}"])
    seeds = f"higher in {wins} seeds, equal in {ties}, Wilcoxon p={format_p(row['wilcoxon_p'], '.2g')}"
    n_seeds = int(wins.split("/")[1])
    floor = _wilcoxon_floor(n_seeds - ties, ties)
    unreachable = (f"with {n_seeds - ties} seeds that differ, the Wilcoxon test cannot reach p < 0.05 (its "
                   f"smallest p is {floor:.2g}; more seeds can)") if floor >= 0.05 else ""
    if pd.isna(row.get("pooled_p", np.nan)):
        why = "DeLong tests are binary only" if not c.binary else "too few test positives for DeLong"
        return (f"seed-level evidence only ({why}): mean difference {row[f'mean_diff_vs_{b}']:+.4f}, {seeds}; "
                "no claim beyond these seeds" + (f"; {unreachable}" if unreachable else ""))
    ci = f"{row['pooled_diff']:+.4f}, 95% CI {row['pooled_low']:+.4f} to {row['pooled_high']:+.4f}"
    on = (" on the validation data that chose the epoch (optimistic)"
          if c.protocol.get("evaluated") == "validation" else "")
    if row["pooled_p"] < 0.05:
        word = "higher" if row["pooled_diff"] > 0 else "lower"
        n, k = (int(x) for x in wins.split("/"))
        lost = k - n - int(row[f"ties_vs_{b}"])
        agree = n > lost if word == "higher" else n < lost
        caveat = ("" if agree and row["wilcoxon_p"] < 0.05 else
                  "; the seeds do not confirm it (more of them lost or tied)" if not agree else
                  f"; {unreachable}, so treat it as tentative" if unreachable else
                  "; the seed-level test does not confirm it (Wilcoxon p >= 0.05), so treat it as tentative")
        return f"{word} than {b}{on}: {ci} (pooled DeLong p={format_p(row['pooled_p'], '.2g')}; {seeds}){caveat}"
    needed = row["positives_needed"]
    need = (f"about {needed:,.0f} test positives would be needed to detect {DETECT} (rough; now "
            f"{row['positives_per_test']:.0f} per test set)") if np.isfinite(needed) else ""
    p = format_p(row["pooled_p"], ".2g")
    return f"no detectable difference at this test size{on}: {ci} (pooled DeLong p={p}); {need}"


def _wilcoxon_floor(differ: int, ties: int) -> float:
    """The smallest two-sided p the Wilcoxon signed-rank test (as `_seed_level` runs it) can give with `differ`
    non-zero paired differences and `ties` zero ones: all of one sign, all distinct."""
    from scipy.stats import wilcoxon
    if differ < 1:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(np.r_[np.zeros(ties), np.arange(1.0, differ + 1)]).pvalue)


def _selected_rocs(c: Comparison) -> dict:
    """(loss, seed) -> the ROC curve(s) of each selected model, from its kept scores."""
    rocs = {}
    for loss, seed in c.selected[["loss", "seed"]].itertuples(index=False):
        run = c._run_scores(loss, seed)
        target = torch.as_tensor(run["target"].to_numpy())
        if c.binary:
            rocs[(loss, seed)] = roc_curve(torch.as_tensor(run["score"].to_numpy()), target)
        else:
            cols = [c for c in run.columns if c.startswith("score_")]
            rocs[(loss, seed)] = roc_curve(torch.as_tensor(run[cols].to_numpy()), target)
    return rocs


def _seed_level(diff: np.ndarray, baseline: str) -> dict:
    """The seed-level evidence of the paired differences `diff` against `baseline`: wins, ties, their mean,
    the Wilcoxon signed-rank and the two-sided sign test."""
    from scipy.stats import wilcoxon
    wins, lost = int((diff > 0).sum()), int((diff < 0).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wilcoxon_p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
    return {f"wins_vs_{baseline}": f"{wins}/{len(diff)}", f"ties_vs_{baseline}": len(diff) - wins - lost,
            f"mean_diff_vs_{baseline}": diff.mean(), "wilcoxon_p": wilcoxon_p, "sign_p": _sign_p(wins, lost)}
