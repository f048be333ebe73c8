"""`compare_losses`: AUM against cross-entropy on the same data, paired by seed, selected by validation AUROC."""
from __future__ import annotations

import copy
import math
import numbers
import random
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from fastprogress.fastprogress import progress_bar

from .callback import AUROCCallback, format_roc_axes
from .functional import ROC, auroc, roc_curve
from .classes import class_names, positive_index
from .learner import LOSSES, aum_learner

__all__ = ["compare_losses", "Comparison"]


class _KeepBest(Callback):
    """Keeps, in memory, the weights of the epoch with the best validation AUROC."""
    order = AUROCCallback.order + 2  # after the Recorder has computed the epoch's metrics

    def before_fit(self):
        self.best, self.best_epoch, self.state = -np.inf, None, None

    def after_epoch(self):
        value = self.auroc.metric.value
        if value is not None and not np.isnan(value) and value > self.best:
            self.best, self.best_epoch = value, self.epoch
            self.state = copy.deepcopy(self.learn.model.state_dict())


def _loss_name(loss) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


@dataclass
class Comparison:
    """What `compare_losses` measured: `results`, a tidy DataFrame with one row per loss, seed and
    epoch, and the ROC curves of the selected models (on the test data, else on the validation data)."""
    results: pd.DataFrame
    rocs: dict = field(default_factory=dict)  # (loss, seed) -> ROC or list of ROC
    baseline: str = "ce"
    positive: object = None  # the positive class of a binary problem

    @property
    def selected(self) -> pd.DataFrame:
        """One row per loss and seed: the epoch chosen by validation AUROC."""
        return self.results[self.results["selected"]].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Per loss: mean and standard deviation across seeds of the best validation AUROC and of
        the test AUROC of the selected model, the mean selected epoch, and, against the baseline
        (`ce`), paired wins on test AUROC and the Wilcoxon signed-rank p-value."""
        from scipy.stats import wilcoxon
        sel = self.selected
        metric = "test_auroc" if sel["test_auroc"].notna().any() else "valid_auroc"
        base = sel[sel["loss"] == self.baseline].set_index("seed")[metric]
        rows = []
        for loss, g in sel.groupby("loss", sort=False):
            row = {"loss": loss, "runs": len(g),
                   "valid_auroc_mean": g["valid_auroc"].mean(), "valid_auroc_std": g["valid_auroc"].std(),
                   "test_auroc_mean": g["test_auroc"].mean(), "test_auroc_std": g["test_auroc"].std(),
                   "selected_epoch_mean": g["epoch"].mean()}
            mine = g.set_index("seed")[metric]
            common = mine.index.intersection(base.index)
            if loss != self.baseline and len(common):
                diff = (mine[common] - base[common]).to_numpy()
                row[f"wins_vs_{self.baseline}"] = f"{int((diff > 0).sum())}/{len(diff)}"
                row[f"mean_diff_vs_{self.baseline}"] = diff.mean()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row["wilcoxon_p"] = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
            rows.append(row)
        return pd.DataFrame(rows).set_index("loss")

    def report(self) -> str:
        """`summary()` as a compact text table: mean ± standard deviation across seeds."""
        summary = self.summary()
        table = pd.DataFrame(index=summary.index)
        for column in ("valid_auroc", "test_auroc"):
            if summary[f"{column}_mean"].notna().any():
                table[column.replace("_", " ")] = [f"{m:.4f} ± {s:.4f}" for m, s in
                                                   zip(summary[f"{column}_mean"], summary[f"{column}_std"])]
        table["epoch"] = summary["selected_epoch_mean"].map("{:.1f}".format)
        for column, fmt in ((f"wins_vs_{self.baseline}", "{}"), (f"mean_diff_vs_{self.baseline}", "{:+.4f}"),
                            ("wilcoxon_p", "{:.3f}")):
            if column in summary:
                table[column.replace("_", " ")] = [fmt.format(v) if isinstance(v, str) or not pd.isna(v) else "-"
                                                   for v in summary[column]]
        return table.to_string()

    def plot(self, figsize=(11, 4.2)):
        """Validation AUROC by epoch (mean across seeds, band from min to max), and the ROC curves
        of the selected models. Returns the figure."""
        import matplotlib.pyplot as plt
        fig, (ax_epochs, ax_roc) = plt.subplots(1, 2, figsize=figsize)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (loss, g) in enumerate(self.results.groupby("loss", sort=False)):
            color = colors[i % len(colors)]
            by_epoch = g.groupby("epoch")["valid_auroc"]
            mean, lo, hi = by_epoch.mean(), by_epoch.min(), by_epoch.max()
            ax_epochs.plot(mean.index, mean.to_numpy(), color=color, label=loss)
            ax_epochs.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.2)
            first = True
            for (run_loss, _seed), roc in self.rocs.items():
                if run_loss != loss:
                    continue
                for curve in [roc] if isinstance(roc, ROC) else roc:
                    ax_roc.plot(curve.fpr.numpy(), curve.tpr.numpy(), color=color, alpha=0.5, linewidth=1,
                                label=loss if first else None)
                    first = False
        ax_epochs.set(xlabel="epoch", ylabel="validation AUROC", title="validation AUROC (band: min to max over seeds)")
        ax_epochs.legend()
        test = self.results["test_auroc"].notna().any()
        which = f", positive class {self.positive!r}" if self.positive is not None else ""
        format_roc_axes(ax_roc, title=f"ROC of the selected models ({'test' if test else 'validation'} data{which})")
        fig.tight_layout()
        return fig


def _test_dl(learn, test):
    if test is None:
        return None
    return learn.dls.test_dl(test, with_labels=True) if isinstance(test, pd.DataFrame) else test


def _check_arguments(losses, seeds, epochs, lr) -> tuple[list, list]:
    """Raise a ValueError naming the argument unless `compare_losses` can run; `losses` and `seeds` as lists."""
    losses, seeds = list(losses), list(seeds)
    if not losses:
        raise ValueError("`losses` must name at least one loss (e.g. ['aum', 'ce']), got none")
    if not seeds:
        raise ValueError("`seeds` must hold at least one seed (e.g. [0, 1, 2]), got none")
    not_int = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
    if not_int:
        raise ValueError(f"`seeds` must be integers, got {not_int[0]!r} in {seeds}")
    if len(set(map(int, seeds))) != len(seeds):
        raise ValueError(f"`seeds` must be distinct (runs are paired by seed), got {seeds}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"`epochs` must be an integer >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
    return losses, seeds


def compare_losses(dls, test=None, losses=LOSSES, seeds=(0, 1, 2, 3, 4), epochs: int = 10, lr: float = 1e-2,
                   arch=None, baseline: str = "ce", show_progress: bool = True, positive=None,
                   **learner_kwargs) -> Comparison:
    """Train one model per loss and seed, select each run's epoch by validation AUROC, and report the
    held-out test AUROC of the selected weights.

    `dls` is fastai DataLoaders, or a function of the seed that makes them; `test` is a DataFrame of
    labelled rows for `dls.test_dl`, or a DataLoader. `losses` are names (`'aum'`, `'ce'`,
    `'weighted_ce'`) or loss objects. Runs are paired: for a seed, every loss starts from the same
    initial weights (all models get one output per class, so that they can) and sees the batches in
    the same order. `positive` names the positive class of a binary problem by its vocabulary value
    (default: the second class). `arch` and `learner_kwargs` go to `aum_learner`; `fit_one_cycle(epochs,
    lr)` trains.
    """
    losses, seeds = _check_arguments(losses, seeds, epochs, lr)
    losses = list(losses)
    names = [_loss_name(loss) for loss in losses]
    if len(set(names)) != len(names):
        raise ValueError(f"`losses` must have distinct names, got {names}")
    runs = [(seed, loss) for seed in seeds for loss in losses]
    rows, rocs, init = [], {}, {}
    classes, pos = None, None
    for seed, loss in progress_bar(runs, display=show_progress):
        run_dls = dls(seed) if callable(dls) else dls
        name = _loss_name(loss)
        set_seed(seed, reproducible=True)
        learn = aum_learner(run_dls, arch=arch, loss=loss, n_out=run_dls.c, positive=positive, **learner_kwargs)
        classes = class_names(run_dls)
        pos = positive_index(classes, positive) if len(classes) == 2 else None
        if seed not in init:
            init[seed] = copy.deepcopy(learn.model.state_dict())
        learn.model.load_state_dict(init[seed])
        keep = _KeepBest()
        set_seed(seed, reproducible=True)
        run_dls.train.rng = random.Random(seed)
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.fit_one_cycle(epochs, lr, cbs=keep)
        record_names = learn.recorder.metric_names[1:-1]  # without 'epoch' and 'time'
        records = [dict(zip(record_names, values)) for values in learn.recorder.values]  # before get_preds resets them
        test_auroc = np.nan
        if keep.state is not None:
            learn.model.load_state_dict(keep.state)
            dl = _test_dl(learn, test)
            with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                preds, targs = learn.get_preds(dl=dl, act=lambda x: x) if dl is not None else (None, None)
                if dl is not None:
                    preds, targs = _positive_last(preds, targs.reshape(-1), pos)
                    test_auroc = auroc(preds, targs).item()
                    rocs[(name, seed)] = roc_curve(preds, targs)
                else:
                    rocs[(name, seed)] = learn.auroc.roc
        for epoch, record in enumerate(records):
            rows.append({"loss": name, "seed": seed, "epoch": epoch, "train_loss": record.get("train_loss"),
                         "valid_loss": record.get("valid_loss"), "valid_auroc": record.get("auroc"),
                         "selected": epoch == keep.best_epoch,
                         "test_auroc": test_auroc if epoch == keep.best_epoch else np.nan})
    positive_class = classes[pos] if pos is not None else None
    return Comparison(pd.DataFrame(rows), rocs, baseline, positive_class)


def _positive_last(preds, targs, pos: int | None):
    """Binary outputs (one column per class) and labels with the positive class as the second column and label 1."""
    if pos != 0:
        return preds, targs
    return preds.flip(-1), 1 - targs
