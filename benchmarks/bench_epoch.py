"""AUMLossFlat against fastai's cross-entropy losses: the loss objects alone, and a fastai training epoch.

    python benchmarks/bench_epoch.py            # 20000 training rows, batch sizes 64, 256, 1024
    python benchmarks/bench_epoch.py --quick    # 5000 training rows

The loss objects: forward + backward of `AUMLossFlat` on one output against `BCEWithLogitsLossFlat`,
and on two outputs against `CrossEntropyLossFlat` (float32 logits, 10% positives). The epochs: a
generated tabular problem (10 continuous features, 10% positives) and fastai's default tabular model
(layers 200, 100), built by `aum_learner`: cross-entropy with two outputs, AUM with one (its default
for a binary problem) and with two. The validation set is small, no metric is attached, so the epoch
is the training loop: forward, loss, backward and optimiser step per batch. Each configuration is its
own Learner over the same DataLoaders. Every table runs its contenders round-robin under the torch
thread count it states (`--threads`, default 1) and reports median [min, max] over trials.
"""
from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")  # fastai's import-time notice

import torch
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat

from _timing import fmt, fmt_ratio, measure, threads_note  # this folder is on sys.path
from bench_callback import make_dls  # the same generated problem
from fastai_aum import AUMLossFlat, aum_learner


def loss_rows(sizes, trials: int, reps: int) -> None:
    print("\n### fastai loss objects, forward + backward (cpu); times in us\n")
    print(threads_note(reps, trials) + ". float32 logits, 10% positives, integer class targets. 'Tied': the same "
          "logits rounded to 2 decimals, so that many of them tie (as a trained model's outputs can: dead ReLUs, "
          "saturation), which takes AUM's group bookkeeping at ties.\n")
    print("| batch size | AUMLossFlat, 1 output | BCEWithLogitsLossFlat | AUM / BCE | AUMLossFlat, 1 output, tied "
          "| tied AUM / BCE | AUMLossFlat, 2 outputs | CrossEntropyLossFlat | AUM / CE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        y = (torch.rand(n, generator=g) < 0.1).long()
        x1 = torch.randn(n, 1, generator=g).requires_grad_()
        x2 = torch.randn(n, 2, generator=g).requires_grad_()
        tied = (x1.detach() * 100).round().div(100).requires_grad_()
        aum, bce, ce, y1 = AUMLossFlat(), BCEWithLogitsLossFlat(), CrossEntropyLossFlat(), y.float()[:, None]
        t = measure({"aum1": lambda: aum(x1, y).backward(), "bce": lambda: bce(x1, y1).backward(),
                     "tied": lambda: aum(tied, y).backward(),
                     "aum2": lambda: aum(x2, y).backward(), "ce": lambda: ce(x2, y).backward()}, reps, trials)
        print(f"| {n} | {fmt(t['aum1'], 1e6, '.0f')} | {fmt(t['bce'], 1e6, '.0f')} | "
              f"{fmt_ratio(t.ratio('aum1', 'bce'))} | {fmt(t['tied'], 1e6, '.0f')} | {fmt_ratio(t.ratio('tied', 'bce'))} | "
              f"{fmt(t['aum2'], 1e6, '.0f')} | {fmt(t['ce'], 1e6, '.0f')} | {fmt_ratio(t.ratio('aum2', 'ce'))} |", flush=True)


def epoch_rows(n_train: int, batch_sizes, trials: int, reps: int) -> None:
    print(f"\n### A fastai tabular epoch (cpu), {n_train} training rows; times in s\n")
    print(threads_note(reps, trials) + " (a round is one epoch of `fit`).\n")
    print("| batch size | batches | cross-entropy (2 outputs) | AUM, 1 output | AUM, 2 outputs | AUM 1 / CE "
          "| AUM 2 / CE |")
    print("|---|---|---|---|---|---|---|")
    for bs in batch_sizes:
        dls = make_dls(n_train, 1_000, bs)
        learners = {}
        for name, kw in (("ce", dict(loss="ce")), ("aum1", dict(loss="aum")), ("aum2", dict(loss="aum", n_out=2))):
            torch.manual_seed(0)
            learn = aum_learner(dls, **kw)
            learn.remove_cb(learn.auroc)  # the loss alone: no metric in the epoch
            learners[name] = learn

        def epoch(learn):
            with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                learn.fit(1, 1e-3)

        t = measure({name: (lambda learn=learn: epoch(learn)) for name, learn in learners.items()}, reps, trials)
        print(f"| {bs} | {len(dls.train)} | {fmt(t['ce'], 1, '.3f')} | {fmt(t['aum1'], 1, '.3f')} | "
              f"{fmt(t['aum2'], 1, '.3f')} | {fmt_ratio(t.ratio('aum1', 'ce'), '.3f')} | "
              f"{fmt_ratio(t.ratio('aum2', 'ce'), '.3f')} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5000 training rows")
    parser.add_argument("--only", choices=["losses", "epochs"], help="run just this table")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024], help="of the epochs table")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every table (default 1)")
    parser.add_argument("--trials", type=int, default=3, help="trials per cell (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial and configuration (default 3)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # fastai's, harmless
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s) in every table")
    if args.only in (None, "losses"):
        loss_rows([64, 256, 1024], args.trials, 300)
    if args.only in (None, "epochs"):
        epoch_rows(5_000 if args.quick else 20_000, args.batch_sizes, args.trials, args.epochs)


if __name__ == "__main__":
    main()
