"""The AUM paper's linear-model protocol (Hillman & Hocking, JMLR 2023) on scikit-learn's bundled digits.

    python benchmarks/bench_paper.py            # 4 settings, 20 seeds, 1000 iterations: about 640 s of CPU
    python benchmarks/bench_paper.py --quick    # 2 seeds, 50 iterations: a smoke run (seconds)

Settings: digit 8 against the other nine, and digit 1 (positive) against digit 0, each with 1% and 5%
positives in training. Per seed: a new stratified split (25% test, then 25% of the rest for validation);
the training and validation parts then keep only enough positives for the stated share (at least one),
drawn with the seed; the test part keeps its natural share, so that it has enough positives to measure.

Model: a linear score `x @ w`, trained by full-batch gradient descent with a constant step for
`--iterations` steps, once per step size of one grid (`STEPS`, the same for every loss). The step size
and the iteration (0 included) are those of the highest validation AUROC (ties: the earliest iteration,
then the smallest step); a step whose weights stop being finite ends that run. The test split is scored
once, with the chosen weights: it chooses nothing, and `fit_and_select` never receives it.

Losses: AUM with count and with rate normalisation (`fastai_aum.functional.aum`, its tie gradient),
logistic loss (mean binary cross-entropy of the score) and weighted logistic loss (each class weighted
by N / (2 N_class), so both classes weigh as much). Each in two set-ups:
- `paper`: the paper's, raw pixel features (0 to 16), no intercept, weights drawn from N(0, 1) with the seed;
- `standard`: features standardised with the training part's mean and sd, an intercept, all weights 0
  (every score tied at first: AUM moves through its tie gradient).
Within a seed every run shares the split and, per set-up, the initial weights (paired comparisons).

The table gives per setting and run its median and mean ± sd test AUROC over seeds and, against
logistic loss in the standard set-up and in the paper's, the mean paired difference with its 95%
t-interval over seeds, the seeds where it is higher (and tied) and the Wilcoxon signed-rank p. A second
table shows what validation chose. No line search: an exact AUM line search cost 30 (N = 1e3) to
43,000 (N = 1e5) times a gradient step in this package's research run, so none ships and none is run here.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipes import _t_interval  # noqa: E402  (the same 95% t-interval as bench_recipes)

from fastai_aum.functional import aum, auroc  # noqa: E402

__all__ = ["SETTINGS", "LOSSES", "SETUPS", "STEPS", "Split", "Prepared", "Choice", "make_split", "set_up",
           "gradient_descent", "fit_and_select", "run_seed", "run", "table", "choice_table", "main"]

SETTINGS = {  # name -> (positive digit, negative digits or None for all others, share of positives in training)
    "digits_8_vs_rest_1pct": (8, None, 0.01),
    "digits_8_vs_rest_5pct": (8, None, 0.05),
    "digits_1_vs_0_1pct": (1, (0,), 0.01),
    "digits_1_vs_0_5pct": (1, (0,), 0.05),
}
LOSSES = ("logistic", "weighted_logistic", "aum_count", "aum_rate")
SETUPS = ("standard", "paper")
BASELINES = (("logistic", "standard"), ("logistic", "paper"))
STEPS = tuple(10.0 ** k for k in range(-4, 5))  # 1e-4 ... 1e4, one grid for every loss and set-up
ITERATIONS = 1000
TEST_PCT = VALID_PCT = 0.25


@dataclass
class Split:
    """Features (float64, raw) and 0/1 labels of the three parts of one seed's split."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Prepared:
    """One set-up's features (torch float64; an intercept is a trailing column of ones) and initial weights."""
    x_train: Tensor
    x_valid: Tensor
    x_test: Tensor
    w0: Tensor
    intercept: bool


@dataclass
class Choice:
    """What validation chose: the step size, the iteration, its validation AUROC and the weights."""
    step: float
    iteration: int
    valid_auroc: float
    weights: Tensor


def _keep_positives(index: np.ndarray, y: np.ndarray, pos_frac: float, rng: np.random.Generator) -> np.ndarray:
    """`index` with only round(pos_frac / (1 - pos_frac) * negatives) of its positives (at least 1), drawn by `rng`."""
    pos, neg = index[y[index] == 1], index[y[index] == 0]
    k = min(len(pos), max(1, round(pos_frac / (1 - pos_frac) * len(neg))))
    return np.sort(np.concatenate([neg, rng.choice(pos, size=k, replace=False)]))


def make_split(setting: str, seed: int) -> Split:
    """The seed's stratified train/validation/test split of a setting, positives thinned in train and validation."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    positive, negatives, pos_frac = SETTINGS[setting]
    x, digit = load_digits(return_X_y=True)  # bundled with scikit-learn: no download
    rows = np.isin(digit, (positive,) + negatives) if negatives is not None else np.ones(len(digit), bool)
    x, y = x[rows].astype(np.float64), (digit[rows] == positive).astype(np.int64)
    rest, test = train_test_split(np.arange(len(y)), test_size=TEST_PCT, stratify=y, random_state=seed)
    train, valid = train_test_split(rest, test_size=VALID_PCT, stratify=y[rest], random_state=seed)
    rng = np.random.default_rng(seed)
    train, valid = _keep_positives(train, y, pos_frac, rng), _keep_positives(valid, y, pos_frac, rng)
    return Split(x[train], y[train], x[valid], y[valid], x[test], y[test])


def set_up(split: Split, setup: str, seed: int) -> Prepared:
    """The paper's set-up (raw features, no intercept, N(0, 1) weights from `seed`) or the standard one
    (standardised with the training part's statistics, an intercept, zero weights)."""
    parts = [torch.from_numpy(a) for a in (split.x_train, split.x_valid, split.x_test)]
    if setup == "paper":
        w0 = torch.randn(parts[0].shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return Prepared(*parts, w0=w0, intercept=False)
    if setup != "standard":
        raise ValueError(f"setup: expected one of {SETUPS}, got {setup!r}")
    mean, sd = parts[0].mean(0), parts[0].std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # a pixel constant in training stays constant (0)
    parts = [torch.cat([(p - mean) / sd, torch.ones(len(p), 1, dtype=torch.float64)], 1) for p in parts]
    return Prepared(*parts, w0=torch.zeros(parts[0].shape[1], dtype=torch.float64), intercept=True)


def _loss(loss: str, scores: Tensor, y: Tensor) -> Tensor:
    """The sum over columns of `loss` of each column of (N, G) scores (one column per step size)."""
    g = scores.shape[1]
    if loss == "logistic":
        return torch.nn.functional.binary_cross_entropy_with_logits(scores, y[:, None].expand_as(scores)) * g
    if loss == "weighted_logistic":
        n_pos = y.sum()
        w = torch.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * (len(y) - n_pos)))
        return torch.nn.functional.binary_cross_entropy_with_logits(
            scores, y[:, None].expand_as(scores), weight=w[:, None].expand_as(scores)) * g
    if loss in ("aum_count", "aum_rate"):  # a multi-hot target of G equal columns: 'macro' is the mean AUM
        return aum(scores, y[:, None].expand_as(scores), normalize=loss[4:], average="macro", validate=False) * g
    raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")


def gradient_descent(loss: str, x: Tensor, y: Tensor, w0: Tensor, steps=STEPS, iterations: int = ITERATIONS):
    """Full-batch gradient descent from `w0`, once per step size, all step sizes at once.

    Returns the weights after each iteration, (iterations + 1, len(steps), d) with iteration 0 = `w0`, and
    a mask of the same first two dimensions: False once a step size's weights or scores stopped being finite.
    """
    step = torch.tensor(steps, dtype=torch.float64)[:, None]
    yf = torch.as_tensor(y, dtype=torch.float64)
    w = w0.expand(len(steps), -1).clone()
    alive = torch.ones(len(steps), dtype=torch.bool)
    path, alive_path = [w.clone()], [alive.clone()]
    for _ in range(iterations):
        w.requires_grad_(True)
        (grad,) = torch.autograd.grad(_loss(loss, x @ w.T, yf), w)
        w = w.detach() - step * grad
        alive &= torch.isfinite(w).all(1) & torch.isfinite(x @ w.T).all(0)
        w[~alive] = 0.0  # a dead run is never chosen again; zeros keep the others' arithmetic finite
        path.append(w.clone())
        alive_path.append(alive.clone())
    return torch.stack(path), torch.stack(alive_path)


def fit_and_select(loss: str, x_train: Tensor, y_train, x_valid: Tensor, y_valid, w0: Tensor, steps=STEPS,
                   iterations: int = ITERATIONS) -> Choice:
    """Train with every step size; choose the step size and iteration of the highest validation AUROC
    (first in iteration order, then step order). Sees the training and validation parts only."""
    path, alive = gradient_descent(loss, x_train, y_train, w0, steps, iterations)
    flat = path.reshape(-1, path.shape[-1])  # (iteration, step) in row-major order
    scores = flat @ x_valid.T  # (columns, N_valid): contiguous rows sort faster
    scores[~alive.reshape(-1)] = 0.0
    y = torch.as_tensor(y_valid, dtype=torch.float64)
    valid = auroc(scores.T, y[:, None].expand(-1, len(flat)), average=None)
    valid[~alive.reshape(-1)] = -math.inf
    best = int(torch.argmax(valid))  # the first maximum: earliest iteration, then smallest step
    return Choice(steps[best % len(steps)], best // len(steps), float(valid[best]), flat[best].clone())


def run_seed(setting: str, seed: int, steps=STEPS, iterations: int = ITERATIONS, split: Split | None = None):
    """Every loss and set-up on one seed of a setting: one row each, and each run's test scores by (loss, setup)."""
    split = split if split is not None else make_split(setting, seed)
    rows, test_scores = [], {}
    for setup in SETUPS:
        prep = set_up(split, setup, seed)
        for loss in LOSSES:
            start = time.perf_counter()
            choice = fit_and_select(loss, prep.x_train, split.y_train, prep.x_valid, split.y_valid, prep.w0,
                                    steps, iterations)
            scores = prep.x_test @ choice.weights  # the test split's one use
            test_scores[loss, setup] = scores
            rows.append(dict(setting=setting, seed=seed, loss=loss, setup=setup, step=choice.step,
                             iteration=choice.iteration, valid_auroc=choice.valid_auroc,
                             test_auroc=float(auroc(scores, torch.from_numpy(split.y_test))),
                             n_train=len(split.y_train), train_pos=int(split.y_train.sum()),
                             valid_pos=int(split.y_valid.sum()), test_pos=int(split.y_test.sum()),
                             seconds=time.perf_counter() - start))
    return rows, test_scores


def run(settings, seeds, steps=STEPS, iterations: int = ITERATIONS, log=None) -> pd.DataFrame:
    """`run_seed` over settings and seeds, as one DataFrame."""
    rows = []
    for setting in settings:
        start, cpu = time.perf_counter(), time.process_time()
        for seed in seeds:
            rows += run_seed(setting, seed, steps, iterations)[0]
        if log is not None:
            print(f"{setting}: {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU",
                  file=log, flush=True)
    return pd.DataFrame(rows)


def _versus(sel: pd.DataFrame, column, baseline) -> dict:
    from scipy.stats import wilcoxon
    diff = (sel[column] - sel[baseline]).dropna().to_numpy()
    low, high = _t_interval(diff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
    ties = int((diff == 0).sum())
    wins = f"{int((diff > 0).sum())}/{len(diff)}" + (f" ({ties} tied)" if ties else "")
    return {"cell": f"{diff.mean():+.4f} [{low:+.4f}, {high:+.4f}]", "wins": wins, "p": f"{p:.2g}"}


def table(results: pd.DataFrame) -> str:
    """One markdown table: per setting, loss and set-up, the test AUROC and its paired differences."""
    head = " | ".join(f"- {b[0]} ({b[1]}) [95% CI] | higher | Wilcoxon p" for b in BASELINES)
    lines = [f"| setting | loss | set-up | median | mean ± sd | {head} |", "|" + " --- |" * (5 + 3 * len(BASELINES))]
    for setting, res in results.groupby("setting", sort=False):
        sel = res.pivot(index="seed", columns=["loss", "setup"], values="test_auroc")
        for setup in SETUPS:
            for loss in LOSSES:
                col = sel[loss, setup]
                cells = [setting, loss, setup, f"{col.median():.4f}", f"{col.mean():.4f} ± {col.std():.4f}"]
                for b in BASELINES:
                    if (loss, setup) == b:
                        cells += ["baseline", "", ""]
                    else:
                        v = _versus(sel, (loss, setup), b)
                        cells += [v["cell"], v["wins"], v["p"]]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choice_table(results: pd.DataFrame, steps=STEPS, iterations: int = ITERATIONS) -> str:
    """What validation chose, over all settings and seeds: step sizes, iterations, grid edges. From zero
    weights every step size's first iteration ranks alike (a linear model's AUROC ignores scale), so a
    choice at iteration 1 is a tie that went to the smallest step: it is not counted as a grid edge. AUM
    from zero weights ties at every iteration: AUM(a s) = a AUM(s), so its gradient ignores the weights'
    scale and each step size's path is the same ranking; the smallest step's edge count means nothing."""
    lines = ["| loss | set-up | chosen steps (runs) | median iteration | at iteration 0 | at 1 | at the last "
             "| at a grid edge, after iteration 1 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setup in SETUPS:
        for loss in LOSSES:
            r = results[(results["loss"] == loss) & (results["setup"] == setup)]
            counts = r["step"].value_counts().sort_index()
            edge = int((r["step"].isin([steps[0], steps[-1]]) & (r["iteration"] > 1)).sum())
            at = {k: int((r["iteration"] == k).sum()) for k in (0, 1, iterations)}
            lines.append(f"| {loss} | {setup} | " + ", ".join(f"{s:g} ({n})" for s, n in counts.items())
                         + f" | {r['iteration'].median():g} | {at[0]}/{len(r)} | {at[1]}/{len(r)} "
                         f"| {at[iterations]}/{len(r)} | {edge}/{len(r)} |")
    return "\n".join(lines)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0 to N-1 (default 20; --quick: 2)")
    parser.add_argument("--iterations", type=int, default=None, help=f"default {ITERATIONS}; --quick: 50")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, 50 iterations")
    parser.add_argument("--out", default=None, help="write every run's row to this CSV file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small problems)")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else 2 if args.quick else 20
    iterations = args.iterations if args.iterations is not None else 50 if args.quick else ITERATIONS
    if seeds < 1 or iterations < 1:
        parser.error(f"--seeds and --iterations must be at least 1, got {seeds} and {iterations}")
    torch.set_num_threads(args.threads)
    print(f"# bench_paper: seeds 0-{seeds - 1}, {iterations} iterations, steps {', '.join(f'{s:g}' for s in STEPS)}; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {args.threads}", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    results = run(args.settings, range(seeds), STEPS, iterations, log=sys.stderr)
    if args.out:
        results.to_csv(args.out, index=False)
    print(table(results))
    print()
    print(choice_table(results, STEPS, iterations))
    print(f"\n# {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU "
          f"(this process; torch threads {args.threads})")
    return results


if __name__ == "__main__":
    main()
