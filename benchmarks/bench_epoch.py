"""A fastai training epoch with AUMLossFlat against the same epoch with CrossEntropyLossFlat.

    python benchmarks/bench_epoch.py            # 20000 training rows, batch sizes 64, 256, 1024
    python benchmarks/bench_epoch.py --quick    # 5000 training rows, fewer repetitions

A generated tabular problem (10 continuous features, 10% positives) and fastai's default tabular model
(layers 200, 100), built by `aum_learner`: AUM with one output (its default for a binary problem),
cross-entropy with two. The validation set is small, no metric is attached, so the epoch is the
training loop: forward, loss, backward and optimiser step per batch. Each configuration is its own
Learner over the same DataLoaders; their epochs run round-robin and each cell is the median.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")  # fastai's import-time notice

import torch
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar

from bench_callback import make_dls, round_robin  # the same problem and timing (this folder is on sys.path)
from fastai_aum import aum_learner


def fit_epoch(learn) -> tuple[float]:
    """Seconds for one epoch of `fit` (its training loop and the small validation pass)."""
    t0 = time.perf_counter()
    learn.fit(1, 1e-3)
    return (time.perf_counter() - t0,)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None, help="epochs per configuration (default 9; 3 with --quick)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # fastai's, harmless
    n_train, reps = (5_000, 3) if args.quick else (20_000, 9)
    reps = args.reps or reps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n_train} training rows; "
          f"median of {reps} epochs, configurations round-robin\n")
    print("| batch size | batches | cross-entropy epoch (s) | AUM epoch (s) | AUM / CE |")
    print("|---|---|---|---|---|")
    for bs in (64, 256, 1024):
        dls = make_dls(n_train, 1_000, bs)
        learners = {}
        for loss in ("ce", "aum"):
            torch.manual_seed(0)
            learn = aum_learner(dls, loss=loss)
            learn.remove_cb(learn.auroc)  # the loss alone: no metric in the epoch
            learners[loss] = learn
        times = round_robin(learners, reps, fit_epoch)
        ce, au = (statistics.median(t for t, in times[name]) for name in ("ce", "aum"))
        print(f"| {bs} | {len(dls.train)} | {ce:.3f} | {au:.3f} | {au / ce:.3f} |", flush=True)


if __name__ == "__main__":
    main()
