"""Cost of AUROCCallback in a fastai fit, against no metric and against fastai's RocAucBinary.

    python benchmarks/bench_callback.py            # 1e5 tabular validation rows, 9 rounds
    python benchmarks/bench_callback.py --quick    # 2e4 tabular validation rows, 5 rounds

Two tables, each cell the median [min, max] over the rounds, one torch thread:

- **A one-epoch fit on a generic DataBlock** (4,000 validation rows, labels read item by item through
  the label pipeline, as for images or texts): the fixed cost a callback adds per fit (setup and
  checks before the first batch) shows here, where the epoch is short.
- **A tabular epoch and a validation pass** (10 continuous features, 10% positives, a small training
  set and a large validation set, so the validation pass, where a metric does its work, weighs in).
  Also reported: the bytes each metric keeps per validation sample.

Each configuration is its own Learner over the same DataLoaders; their fits run round-robin after one
warm-up round, and the ratios "x no metric" are taken within each round.
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
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import ColReader, IndexSplitter
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import RocAucBinary
from fastai.tabular.learner import tabular_learner
from torch import nn

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


def _as_tensor(v):
    return torch.as_tensor(v)


def make_block_dls(n_train: int, n_valid: int, bs: int, seed: int = 0):
    """The same kind of problem as a generic DataBlock (not TabularPandas): each item's label is read
    through `ColReader` and `Categorize`, as a vision or text DataBlock reads it."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    y = rng.random(n) < 0.1
    x = (rng.normal(size=(n, 10)) + 0.5 * y[:, None]).astype("float32")
    df = pd.DataFrame({"x": list(x), "label": np.where(y, "yes", "no")})
    block = DataBlock(blocks=(TransformBlock(type_tfms=_as_tensor), CategoryBlock), get_x=ColReader("x"),
                      get_y=ColReader("label"), splitter=IndexSplitter(range(n_train, n)))
    return block.dataloaders(df, bs=bs)


def block_learner(dls, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), **kwargs)


def spread(values) -> str:
    """median [min, max]"""
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


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


def fit_epoch(learn) -> tuple[float]:
    """Seconds for a one-epoch `fit`: its setup, training loop and validation pass."""
    t0 = time.perf_counter()
    learn.fit(1, 1e-3)
    return (time.perf_counter() - t0,)


def fit_then_validate(learn) -> tuple[float, float]:
    """Seconds for one training epoch and for one more validation pass."""
    t0 = time.perf_counter()
    learn.fit(1, 1e-3)
    t1 = time.perf_counter()
    learn.validate()
    return t1 - t0, time.perf_counter() - t1


CONFIGS = {"no metric": dict(), "AUROCCallback": dict(cbs=AUROCCallback), "fastai RocAucBinary": dict(metrics=RocAucBinary)}


def _kwargs(kw: dict) -> dict:
    return {k: v() for k, v in kw.items()}  # a fresh callback or metric per Learner


def block_fit_table(reps: int) -> None:
    dls = make_block_dls(n_train=2_000, n_valid=4_000, bs=256)
    learners = {name: block_learner(dls, **_kwargs(kw)) for name, kw in CONFIGS.items()}
    times = round_robin(learners, reps, fit_epoch)
    fit = {name: [t for t, in ts] for name, ts in times.items()}
    print(f"One-epoch fit, generic DataBlock: {len(dls.train_ds)} training rows, {len(dls.valid_ds)} validation rows, "
          f"batch size {dls.train.bs}; median [min, max] of {reps} rounds\n")
    print("| metric | fit (s) | x no metric |")
    print("|---|---|---|")
    for name in learners:
        ratio = [a / b for a, b in zip(fit[name], fit["no metric"])]
        print(f"| {name} | {spread(fit[name])} | {spread(ratio)} |")
    print()


def tabular_table(n_valid: int, reps: int) -> None:
    dls = make_dls(n_train=20_000, n_valid=n_valid, bs=1024)
    learners = {name: tabular_learner(dls, layers=[64, 32], **_kwargs(kw)) for name, kw in CONFIGS.items()}
    times = round_robin(learners, reps, fit_then_validate)
    epoch = {name: [e for e, _ in t] for name, t in times.items()}
    valid = {name: [v for _, v in t] for name, t in times.items()}
    print(f"Tabular epoch: {len(dls.train_ds)} training rows, {len(dls.valid_ds)} validation rows, batch size "
          f"{dls.train.bs}; median [min, max] of {reps} rounds\n")
    print("| metric | epoch (s) | x no metric | validation pass (s) | x no metric | bytes kept per validation sample | AUROC |")
    print("|---|---|---|---|---|---|---|")
    for name, learn in learners.items():
        e_ratio = [a / b for a, b in zip(epoch[name], epoch["no metric"])]
        v_ratio = [a / b for a, b in zip(valid[name], valid["no metric"])]
        metric = learn.metrics[0] if len(learn.metrics) else None
        kept = f"{bytes_per_sample(metric):.0f}" if metric is not None else "0"
        value = f"{learn.recorder.values[-1][-1]:.4f}" if metric is not None else "n/a"
        print(f"| {name} | {spread(epoch[name])} | {spread(e_ratio)} | {spread(valid[name])} | {spread(v_ratio)} "
              f"| {kept} | {value} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None, help="rounds (default 9; 5 with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reps = args.reps or (5 if args.quick else 9)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); configurations round-robin\n")
    block_fit_table(reps)
    tabular_table(20_000 if args.quick else 100_000, reps)


if __name__ == "__main__":
    main()
