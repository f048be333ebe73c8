"""Do AUM's recipes (margin, hybrid, zero last layer) beat cross-entropy?

    python benchmarks/bench_recipes.py                      # every setting, 20 seeds (about 40 minutes on 2 cores)
    python benchmarks/bench_recipes.py --settings wine --seeds 2 --epochs 3 --out /tmp/smoke   # a smoke run
    python benchmarks/bench_recipes.py --table-only         # the tables of what --out already holds

Every recipe and both baselines go through `compare_losses_on_df`, the protocol of `fastai-aum compare`:
a new stratified train/validation/test split per seed, every loss of a seed starting from the same
initial weights and seeing the same batches, each run's epoch and each loss's learning rate (from
`--lr`) chosen on validation AUROC, the test AUROC of the chosen weights reported. The recipes'
settings are fixed in advance, not tuned on these results: margin 1 (binary logits) or 0.5
(multiclass, where AUM ranks softmax probabilities), hybrid weight 1, last layer zeroed. (A cross-entropy
warm start was measured too and did not help; it no longer ships: README, "AUM recipes".)

The table gives, per setting and recipe, the mean test AUROC over seeds and, against cross-entropy and
against weighted cross-entropy, the mean paired difference with its 95% t-interval over seeds, the
paired wins, the Wilcoxon signed-rank p and, for binary settings, the pooled DeLong p; a second table
compares each recipe with plain AUM. Each setting's runs are saved to `--out` as they finish
(`results.csv`, `scores.csv`, with the setting's `config.json`), and a rerun with the same settings resumes
from them (more `--seeds` adds seeds; other settings are refused: use another `--out`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fastai_aum import compare_losses_on_df
from fastai_aum.compare.run import Comparison, append_csv
from fastai_aum.datasets import breast_cancer_df, digits_df, fraud_df, wine_df

BASELINES = ("ce", "weighted_ce")


MLP = dict(epochs=10, lr=(0.003, 0.01, 0.03))  # fastai's default tabular MLP (200, 100)
LINEAR = dict(epochs=40, lr=(0.01, 0.03, 0.1), layers=[])  # a linear model: more, larger steps


def settings() -> dict:
    """name -> (DataFrame maker, positive class or None, batch size, epochs, lr grid, learner arguments)."""
    return {
        "breast_cancer_10pct": (lambda: breast_cancer_df(pos_frac=0.1), "malignant", 64, MLP),
        "wine": (wine_df, None, 32, MLP),
        "digits_10class": (lambda: digits_df().reset_index(drop=True), None, 64, MLP),
        "fraud_2pct_noise2": (lambda: fraud_df(n=5000, pos_frac=0.02, noise=0.02, seed=1), "fraud", 128,
                              {**MLP, "cat_names": ["channel"]}),
        "fraud_5pct_noise5": (lambda: fraud_df(n=3000, pos_frac=0.05, noise=0.05, seed=2), "fraud", 64,
                              {**MLP, "cat_names": ["channel"]}),
        "digits_1pct_linear": (lambda: digits_df(positive_digit=8, pos_frac=0.01).reset_index(drop=True), "yes", 256,
                               LINEAR),
    }


def plan(name: str, args) -> tuple[int, list[float], dict]:
    """Epochs, learning-rate grid and other arguments (data, learner) of a setting (`--epochs`/`--lr` override them)."""
    config = dict(settings()[name][3])
    epochs, lr = config.pop("epochs"), list(config.pop("lr"))
    return args.epochs or epochs, args.lr or lr, config


def recipes(binary: bool) -> dict:
    """The losses compared: both baselines, plain AUM, and each recipe with its fixed setting."""
    return {"ce": "ce", "weighted_ce": "weighted_ce", "aum": "aum",
            "aum_margin": {"margin": 1.0 if binary else 0.5},
            "aum_hybrid": {"ce_weight": 1.0},
            "aum_zero_last": {"last_layer_scale": 0.0}}


def run_setting(name: str, args, out: Path) -> Comparison:
    make_df, pos_label, bs, _ = settings()[name]
    epochs, lr, learner_kwargs = plan(name, args)
    df = make_df()
    binary = df["label"].nunique() == 2
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    results_csv, scores_csv = folder / "results.csv", folder / "scores.csv"
    config = {"setting": name, "pos_label": pos_label, "bs": bs, "epochs": epochs, "lr": lr,
              "learner": {k: v for k, v in learner_kwargs.items()}, "losses": recipes(binary)}
    config_json = folder / "config.json"
    if config_json.exists() and json.loads(config_json.read_text()) != json.loads(json.dumps(config)):
        raise SystemExit(f"bench_recipes: {folder} holds runs of other settings than these ({config_json}); "
                         "use another --out")
    config_json.write_text(json.dumps(config, indent=2))
    previous = None
    if results_csv.exists() and scores_csv.exists():
        previous = (pd.read_csv(results_csv), pd.read_csv(scores_csv))

    def save(rows, scores):  # each finished run, at once: an interrupted benchmark resumes
        if scores is not None:
            append_csv(scores, scores_csv)
        append_csv(rows, results_csv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_losses_on_df(df, "label", losses=recipes(binary), seeds=range(args.seeds),
                                    epochs=epochs, lr=lr, bs=bs, pos_label=pos_label, show_progress=False,
                                    on_run=save, previous=previous, **learner_kwargs)


def _t_interval(diff: np.ndarray) -> tuple[float, float]:
    from scipy.stats import t
    if len(diff) < 2:
        return math.nan, math.nan
    half = t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    return diff.mean() - half, diff.mean() + half


def against(cmp: Comparison, baseline: str) -> pd.DataFrame:
    """Per loss: mean paired test-AUROC difference from `baseline` with its t-interval over seeds, wins,
    Wilcoxon p and (binary) pooled DeLong p."""
    from scipy.stats import wilcoxon
    other = Comparison(cmp.results, {}, baseline, cmp.pos_label, cmp.scores, cmp.protocol)
    summary = other.summary()
    sel = other.selected.pivot(index="seed", columns="loss", values="test_auroc")
    rows = {}
    for loss in sel.columns:
        if loss == baseline:
            continue
        diff = (sel[loss] - sel[baseline]).dropna().to_numpy()
        low, high = _t_interval(diff)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
        rows[loss] = {"diff": diff.mean(), "low": low, "high": high,
                      "wins": f"{int((diff > 0).sum())}/{len(diff)}", "wilcoxon_p": p,
                      "delong_p": summary.loc[loss].get("pooled_p", math.nan)}
    order = [loss for loss in dict.fromkeys(cmp.results["loss"]) if loss in rows]
    return pd.DataFrame.from_dict(rows, orient="index").loc[order]


def table(comparisons: dict) -> str:
    """One markdown table: every setting and recipe, against CE and against weighted CE."""
    lines = ["| setting | loss | test AUROC | - CE [95% CI] | wins | Wilcoxon p | DeLong p "
             "| - weighted CE [95% CI] | wins | Wilcoxon p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, cmp in comparisons.items():
        sel = cmp.selected
        mean, sd = sel.groupby("loss")["test_auroc"].mean(), sel.groupby("loss")["test_auroc"].std()
        vs = {b: against(cmp, b) for b in BASELINES}
        order = list(dict.fromkeys(cmp.results["loss"]))
        for loss in order:
            cells = [name, loss, f"{mean[loss]:.4f} ± {sd[loss]:.4f}"]
            for b in BASELINES:
                if loss == b or loss not in vs[b].index:
                    cells += ["baseline", "", "", ""] if b == "ce" else ["baseline", "", ""]
                    continue
                r = vs[b].loc[loss]
                cells += [f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]", r["wins"], f"{r['wilcoxon_p']:.2g}"]
                if b == "ce":
                    cells.append("" if pd.isna(r["delong_p"]) else f"{r['delong_p']:.2g}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recipe_table(comparisons: dict) -> str:
    """A second markdown table: each recipe against plain AUM (does it fix what AUM lacks?)."""
    lines = ["| setting | recipe | - AUM [95% CI] | wins | Wilcoxon p | DeLong p |", "| --- | --- | --- | --- | --- | --- |"]
    for name, cmp in comparisons.items():
        vs = against(cmp, "aum")
        for loss in vs.index:
            if loss in BASELINES:
                continue
            r = vs.loc[loss]
            delong = "" if pd.isna(r["delong_p"]) else f"{r['delong_p']:.2g}"
            lines.append(f"| {name} | {loss} | {r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | {r['wins']} "
                         f"| {r['wilcoxon_p']:.2g} | {delong} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=list(settings()), default=list(settings()))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0 to N-1 (default 20)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every setting (default: 10, linear 40)")
    parser.add_argument("--lr", type=lambda s: [float(v) for v in s.split(",")], default=None,
                        help="learning-rate grid for every setting (default: 0.003,0.01,0.03; linear 0.01,0.03,0.1)")
    parser.add_argument("--out", default="bench_recipes_out", help="folder for each setting's runs (resumable)")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs in --out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small models)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    print(f"# bench_recipes: {args.seeds} seeds; " + "; ".join(f"{n}: {plan(n, args)[0]} epochs, lr {plan(n, args)[1]}"
                                                             for n in args.settings)
          + f"; torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {args.threads}", flush=True)
    comparisons = {}
    for name in args.settings:
        start = time.perf_counter()
        if args.table_only:
            results = pd.read_csv(out / name / "results.csv")
            results = results[results["seed"] < args.seeds]  # the seeds asked for, of those the folder holds
            scores = pd.read_csv(out / name / "scores.csv")
            scores = scores[scores["seed"] < args.seeds]
            protocol = {"split": "per_seed", "evaluated": "test", "epochs": plan(name, args)[0]}
            pos_label = settings()[name][1]
            cmp = Comparison(results, {}, "ce", pos_label, scores, protocol)
        else:
            cmp = run_setting(name, args, out)
        comparisons[name] = cmp
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(table(comparisons))
    print()
    print(recipe_table(comparisons))
    print("\nchosen learning rates: " + "; ".join(
        f"{k}: " + ", ".join(f"{loss} {lr:g}" for loss, lr in cmp.chosen_lr.items()) for k, cmp in comparisons.items()))


if __name__ == "__main__":
    main()
