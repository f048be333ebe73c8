"""Cost of AUROCCallback in a fastai fit, against no metric and against fastai's RocAucBinary.

    python benchmarks/bench_callback.py            # 1e5 tabular validation rows, 3 trials of 5 rounds
    python benchmarks/bench_callback.py --quick    # 2e4 tabular validation rows, 3 trials of 3 rounds

Two tables, each cell the median [min, max] over trials of round-robin rounds (`_timing.measure`), under
the torch thread count they state (`--threads`, default 1):

- **A one-epoch fit on a generic DataBlock** (4,000 validation rows, labels read item by item through
  the label pipeline, as for images or texts): the fixed cost a callback adds per fit (setup and
  checks before the first batch) shows here, where the epoch is short.
- **A tabular epoch and a validation pass** (10 continuous features, 10% positives, a small training
  set and a large validation set, so the validation pass, where a metric does its work, weighs in).
  Also reported: the bytes each metric keeps per validation sample.

Each configuration is its own Learner over the same DataLoaders; their fits run round-robin after one
warm-up each, and the ratios "x no metric" are taken within each trial.
"""
from __future__ import annotations

import argparse
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
from _timing import fmt, fmt_ratio, measure, threads_note  # this folder is on sys.path


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


def seeded(make, *args, **kwargs):
    """`make(*args, **kwargs)` from torch seed 0: every configuration starts from the same weights."""
    torch.manual_seed(0)
    return make(*args, **kwargs)


def block_learner(dls, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), **kwargs)


def bytes_per_sample(metric) -> float:
    """Bytes the metric holds per validation sample after a pass."""
    if hasattr(metric, "preds") and isinstance(metric.preds, torch.Tensor):  # fastai_aum.AUROC
        tensors = [metric.preds, metric.targs]
    else:  # fastai AccumMetric: lists of per-batch tensors
        tensors = list(metric.preds) + list(metric.targs)
    n = sum(len(t) for t in (metric.preds if isinstance(metric.preds, list) else [metric.preds]))
    return sum(t.element_size() * t.numel() for t in tensors) / n


def quietly(run):
    """`run(learn)` without progress bar, logging or warnings, as a benchmark contender."""
    def contender(learn):
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(learn)
    return contender


fit_epoch = quietly(lambda learn: learn.fit(1, 1e-3))  # a one-epoch fit: setup, training loop, validation pass
validate = quietly(lambda learn: learn.validate())


def timed(learners: dict, run, reps: int, trials: int):
    return measure({name: (lambda learn=learn: run(learn)) for name, learn in learners.items()}, reps, trials)


CONFIGS = {"no metric": dict(), "AUROCCallback": dict(cbs=AUROCCallback), "fastai RocAucBinary": dict(metrics=RocAucBinary)}


def _kwargs(kw: dict) -> dict:
    return {k: v() for k, v in kw.items()}  # a fresh callback or metric per Learner


def block_fit_table(reps: int, trials: int) -> None:
    dls = make_block_dls(n_train=2_000, n_valid=4_000, bs=256)
    learners = {name: block_learner(dls, **_kwargs(kw)) for name, kw in CONFIGS.items()}
    fit = timed(learners, fit_epoch, reps, trials)
    print(f"### One-epoch fit, generic DataBlock: {len(dls.train_ds)} training rows, {len(dls.valid_ds)} validation "
          f"rows, batch size {dls.train.bs}; times in s\n")
    print(threads_note(reps, trials) + " (a round is one `fit` of one epoch).\n")
    print("| metric | fit (s) | x no metric |")
    print("|---|---|---|")
    for name in learners:
        print(f"| {name} | {fmt(fit[name], 1, '.3f')} | {fmt_ratio(fit.ratio(name, 'no metric'), '.3f')} |")
    print()


def tabular_table(n_valid: int, reps: int, trials: int) -> None:
    dls = make_dls(n_train=20_000, n_valid=n_valid, bs=1024)
    learners = {name: seeded(tabular_learner, dls, layers=[64, 32], **_kwargs(kw)) for name, kw in CONFIGS.items()}
    epoch, valid = timed(learners, fit_epoch, reps, trials), timed(learners, validate, reps, trials)
    print(f"### Tabular epoch: {len(dls.train_ds)} training rows, {len(dls.valid_ds)} validation rows, batch size "
          f"{dls.train.bs}; times in s\n")
    print(threads_note(reps, trials) + " (a round is one epoch of `fit`, or one `validate`, measured apart).\n")
    print("| metric | epoch (s) | x no metric | validation pass (s) | x no metric | bytes kept per validation sample | AUROC |")
    print("|---|---|---|---|---|---|---|")
    for name, learn in learners.items():
        metric = learn.metrics[0] if len(learn.metrics) else None
        kept = f"{bytes_per_sample(metric):.0f}" if metric is not None else "0"
        value = f"{learn.recorder.values[-1][-1]:.4f}" if metric is not None else "n/a"
        print(f"| {name} | {fmt(epoch[name], 1, '.3f')} | {fmt_ratio(epoch.ratio(name, 'no metric'), '.3f')} | "
              f"{fmt(valid[name], 1, '.3f')} | {fmt_ratio(valid.ratio(name, 'no metric'), '.3f')} | {kept} | {value} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None, help="rounds per trial (default 5; 3 with --quick)")
    parser.add_argument("--trials", type=int, default=3, help="trials per cell (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reps = args.reps or (3 if args.quick else 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s); configurations round-robin\n")
    block_fit_table(reps, args.trials)
    tabular_table(20_000 if args.quick else 100_000, reps, args.trials)


if __name__ == "__main__":
    main()
