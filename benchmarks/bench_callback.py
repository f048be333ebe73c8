"""Cost of AUROCCallback in a fastai epoch, against no metric and against fastai's RocAucBinary.

    python benchmarks/bench_callback.py            # 1e5 validation rows
    python benchmarks/bench_callback.py --quick    # 2e4 validation rows, fewer repetitions

A generated tabular problem (10 continuous features, 10% positives) with a small training set and
a large validation set, so the validation pass, where a metric does its work, weighs in the epoch.
Each configuration is its own Learner over the same DataLoaders; their epochs run round-robin and
each cell is the median. Also reported: the bytes each metric keeps per validation sample.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd
import torch
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
from fastai.metrics import RocAucBinary
from fastai.tabular.learner import tabular_learner

from fastai_aum import AUROCCallback
from fastai_aum.datasets import tabular_dls


def make_dls(n_train: int, n_valid: int, bs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    y = rng.random(n) < 0.1
    x = rng.normal(size=(n, 10)) + 0.5 * y[:, None]
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
    df["label"] = np.where(y, "yes", "no")
    return tabular_dls(df, valid_pct=n_valid / n, bs=bs, seed=seed)


def bytes_per_sample(metric) -> float:
    """Bytes the metric holds per validation sample after a pass."""
    if hasattr(metric, "preds") and isinstance(metric.preds, torch.Tensor):  # fastai_aum.AUROC
        tensors = [metric.preds, metric.targs]
    else:  # fastai AccumMetric: lists of per-batch tensors
        tensors = list(metric.preds) + list(metric.targs)
    n = sum(len(t) for t in (metric.preds if isinstance(metric.preds, list) else [metric.preds]))
    return sum(t.element_size() * t.numel() for t in tensors) / n


def round_robin(learners: dict, reps: int, run) -> dict:
    """Each learner's timings over `reps` rounds, after one warm-up round, the learners taking turns in
    every round: `run(learn)` returns a tuple of durations; the result maps a name to a list of them."""
    times = {name: [] for name in learners}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rep in range(reps + 1):
            for name, learn in learners.items():
                with learn.no_bar(), learn.no_logging():
                    durations = run(learn)
                if rep:
                    times[name].append(durations)
    return times


def fit_then_validate(learn) -> tuple[float, float]:
    """Seconds for one training epoch and for one more validation pass."""
    t0 = time.perf_counter()
    learn.fit(1, 1e-3)
    t1 = time.perf_counter()
    learn.validate()
    return t1 - t0, time.perf_counter() - t1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n_valid = 20_000 if args.quick else 100_000
    reps = 3 if args.quick else 7
    dls = make_dls(n_train=20_000, n_valid=n_valid, bs=1024)
    configs = {
        "no metric": dict(),
        "AUROCCallback": dict(cbs=AUROCCallback()),
        "fastai RocAucBinary": dict(metrics=RocAucBinary()),
    }
    learners = {name: tabular_learner(dls, layers=[64, 32], **kw) for name, kw in configs.items()}
    times = round_robin(learners, reps, fit_then_validate)
    epoch = {name: [e for e, _ in t] for name, t in times.items()}
    valid = {name: [v for _, v in t] for name, t in times.items()}
    base_e, base_v = statistics.median(epoch["no metric"]), statistics.median(valid["no metric"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(dls.train_ds)} training rows, "
          f"{len(dls.valid_ds)} validation rows, batch size {dls.train.bs}; median of {reps} epochs\n")
    print("| metric | epoch (s) | x no metric | validation pass (s) | x no metric | bytes kept per validation sample | AUROC |")
    print("|---|---|---|---|---|---|---|")
    for name, learn in learners.items():
        e, v = statistics.median(epoch[name]), statistics.median(valid[name])
        metric = learn.metrics[0] if len(learn.metrics) else None
        kept = f"{bytes_per_sample(metric):.0f}" if metric is not None else "0"
        value = f"{learn.recorder.values[-1][-1]:.4f}" if metric is not None else "n/a"
        print(f"| {name} | {e:.3f} | {e / base_e:.3f} | {v:.3f} | {v / base_v:.3f} | {kept} | {value} |")


if __name__ == "__main__":
    main()
