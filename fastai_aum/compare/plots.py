"""The text report and the figure of a `Comparison` (see `report` for the statistics); `Comparison.report()`
and `.plot()` call them, and nothing here imports `report` back."""
from __future__ import annotations

import warnings

import pandas as pd

from ..functional import ROC
from ..plotting import format_roc_axes

__all__ = ["report_text", "plot_comparison", "format_p"]


def _fmt(value, spec: str) -> str:
    return "-" if value is None or (not isinstance(value, str) and pd.isna(value)) else format(value, spec)


def format_p(p, spec: str = ".3f") -> str:
    """A p-value as `spec` from 0.001 up, in scientific notation below (0.000 would read as impossible)."""
    return _fmt(p, spec if pd.isna(p) or p >= 0.001 else ".1e")


def _range(values: pd.Series) -> str:
    values = values.dropna()
    if not len(values):
        return "-"
    lo, hi = int(values.min()), int(values.max())
    return f"{lo}" if lo == hi else f"{lo} to {hi}"


def protocol_lines(c) -> list[str]:
    """The protocol of a comparison in plain words: split, seeds, learning rate rule, tie rule, positives."""
    p, r, sel = c.protocol, c.results, c.selected
    split = {"per_seed": "a new stratified train/validation/test split per seed",
             "shared": "one train/validation/test split shared by every seed"}.get(p.get("split"), "given data")
    runs = r[r["run_best"].astype(bool)] if "run_best" in r else sel
    tied = int((runs["best_ties"] > 1).sum()) if "best_ties" in runs else 0
    lines = [f"protocol: {split}; {sel['seed'].nunique()} seeds; each run's epoch chosen by validation AUROC, "
             f"ties at the maximum broken by the lowest validation loss (tied in {tied} of {len(runs)} runs)"]
    grid = sorted(r["lr"].unique()) if "lr" in r else []
    if len(grid) > 1:
        lines.append(f"learning rate per loss chosen on validation AUROC (mean over seeds) from "
                     f"{', '.join(f'{g:g}' for g in grid)}; the test data choose nothing")
    what = "positives" if c.pos_label is not None else "rows of the smallest class"
    if "valid_positives" in sel:
        lines.append(f"{what} per seed: validation {_range(sel['valid_positives'])}, "
                     f"{p.get('evaluated', 'test')} {_range(sel['test_positives'])}")
    if c.pos_label is not None:
        lines.append(f"positive class: {c.pos_label}")
    return lines


def report_text(c) -> str:
    """The protocol, a table per loss, a table against the baseline, and one verdict line per loss."""
    s, b = c.summary(), c.baseline
    k = c.selected["seed"].nunique()
    per_loss = pd.DataFrame(index=s.index)
    per_loss["lr"] = s["lr"].map("{:g}".format)
    for column in ("valid_auroc", "test_auroc", "test_ap"):
        if f"{column}_mean" in s and s[f"{column}_mean"].notna().any():
            per_loss[column.replace("_", " ")] = [f"{_fmt(m, '.4f')} ± {_fmt(sd, '.4f')}"
                                                  for m, sd in zip(s[f"{column}_mean"], s[f"{column}_std"])]
    if s["test_auroc_se_mean"].notna().any():
        per_loss["DeLong se"] = s["test_auroc_se_mean"].map(lambda v: _fmt(v, ".4f"))
    per_loss["epoch"] = s["selected_epoch_mean"].map("{:.1f}".format)
    lines = protocol_lines(c)
    lines += ["", f"per loss: mean ± sd over {k} seeds; DeLong se: a run's standard error of its test AUROC, averaged",
              per_loss.to_string()]
    others = s.drop(index=b, errors="ignore")
    if f"mean_diff_vs_{b}" in s and len(others):
        vs = pd.DataFrame(index=others.index)
        vs["diff"] = others[f"mean_diff_vs_{b}"].map(lambda v: _fmt(v, "+.4f"))
        vs["wins"] = others[f"wins_vs_{b}"]
        vs["ties"] = others[f"ties_vs_{b}"].map(lambda v: _fmt(v, ".0f"))
        vs["sign p"] = others["sign_p"].map(format_p)
        vs["wilcoxon p"] = others["wilcoxon_p"].map(format_p)
        if "pooled_p" in others:
            vs["seeds p<0.05"] = others["seeds_p_below_0.05"].fillna("-")
            vs["pooled 95% CI"] = [f"[{_fmt(lo, '+.4f')}, {_fmt(hi, '+.4f')}]"
                                   for lo, hi in zip(others["pooled_low"], others["pooled_high"])]
            vs["pooled p"] = others["pooled_p"].map(format_p)
        rule = ("the mean difference, its DeLong se combined over independent test sets (a new split per seed)"
                if c.protocol.get("split") == "per_seed" else
                "the mean difference with the mean DeLong se (the seeds share one test set; conservative)")
        delong = (f" and per test set (paired DeLong on the same rows); pooled: {rule}" if "pooled_p" in others else
                  "; no DeLong test (binary targets only)")
        lines += ["", f"against {b}: seed level (wins, sign and Wilcoxon tests on the {k} paired differences){delong}",
                  vs.to_string()]
    lines += ["", f"verdict (positives needed: a rough 1/sqrt(positives) scaling, 5% two-sided, 80% power, "
                  f"difference {c.detect}):"]
    lines += [f"  {loss}: {v}" for loss, v in s["verdict"].items() if loss != b]
    return "\n".join(lines)


def _curves(roc) -> list:
    return [roc] if isinstance(roc, ROC) else list(roc)


def plot_comparison(c, figsize=None, log_fpr: bool | None = None):
    """Validation AUROC by epoch and the ROC curves of the selected models (one panel per class when multiclass)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    first = next(iter(c.rocs.values()), None)
    n_roc = 1 if first is None or isinstance(first, ROC) else len(first)
    fig, axes = plt.subplots(1, 1 + n_roc, figsize=figsize or (5.5 * (1 + n_roc), 4.4), squeeze=False)
    ax_epochs, roc_axes = axes[0][0], list(axes[0][1:])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lrs = c.chosen_lr
    handles = []
    for i, (loss, g) in enumerate(c.results.groupby("loss", sort=False)):
        color = colors[i % len(colors)]
        g = g[g["lr"] == lrs[loss]] if "lr" in g else g
        by_epoch = g.groupby("epoch")["valid_auroc"]
        mean, lo, hi = by_epoch.mean(), by_epoch.min(), by_epoch.max()
        ax_epochs.plot(mean.index, mean.to_numpy(), color=color, marker="o", markersize=3)
        ax_epochs.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.2)
        handles.append(Line2D([], [], color=color, label=f"{loss} (lr {lrs[loss]:g})" if "lr" in g else loss))
        for (run_loss, _seed), roc in c.rocs.items():
            if run_loss == loss:
                for ax, curve in zip(roc_axes, _curves(roc)):
                    ax.plot(curve.fpr.numpy(), curve.tpr.numpy(), color=color, alpha=0.5, linewidth=1)
    handles += [Line2D([], [], color="grey", label="mean over seeds"),
                Patch(color="grey", alpha=0.2, label="band: min to max over seeds")]
    ax_epochs.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_epochs.set(xlabel="epoch", ylabel="validation AUROC", title="validation AUROC by epoch")
    ax_epochs.legend(handles=handles, loc="lower right", fontsize="small")
    evaluated = c.protocol.get("evaluated", "test" if c.results["test_auroc"].notna().any() else "validation")
    sel = c.selected
    if log_fpr is None:
        log_fpr = bool(len(sel)) and bool((sel["test_auroc"].fillna(sel["valid_auroc"]) >= 0.98).all())
    classes = c.protocol.get("classes") or [str(k) for k in range(n_roc)]
    for k, ax in enumerate(roc_axes):
        which = (f", positive class {c.pos_label!r}" if c.pos_label is not None else
                 f", class {classes[k]!r} against the rest" if n_roc > 1 else "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its legend finds no labelled curve: the shared handles follow
            format_roc_axes(ax, title=f"ROC of the selected models\n({evaluated} data{which})")
        ax.legend(handles=handles[:-2], loc="lower right", fontsize="small")
        if log_fpr:
            fprs = [f for roc in c.rocs.values() for f in _curves(roc)[k].fpr.numpy() if f > 0]
            ax.set_xscale("log", nonpositive="clip")
            low = min(fprs) / 2 if fprs else 1e-3
            ax.set_xlim(low, 1)
            tprs = [t for roc in c.rocs.values() for curve in [_curves(roc)[k]]
                    for f, t in zip(curve.fpr.numpy(), curve.tpr.numpy()) if f >= low]
            ax.set_ylim(max(0.0, min(tprs, default=0.0) - 0.05), 1.01)
            ax.set_xlabel("false positive rate (log scale)")
    fig.tight_layout()
    return fig
