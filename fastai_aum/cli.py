"""The `fastai-aum` console command (also `python -m fastai_aum`)."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__

__all__ = ["main"]

BUILTIN = ("breast_cancer", "digits", "wine")


class UsageError(Exception):
    """A bad argument: reported in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastai-aum", description="Exact AUROC and the AUM loss for fastai.")
    parser.add_argument("--version", action="version", version=f"fastai-aum {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    cmp = sub.add_parser("compare", help="compare AUM with cross-entropy over paired seeds",
                         description="Train a tabular model with each loss over several seeds, select each run's "
                                     "epoch by validation AUROC, and report the held-out test AUROC.")
    cmp.add_argument("--data", default="breast_cancer", metavar="NAME|PATH.csv",
                     help="breast_cancer (default), digits (8 against the rest, 8x8 pixels), wine (3 classes), or a CSV file")
    cmp.add_argument("--target", help="label column of a CSV file (default: a column named label or target, "
                                      "else the last column)")
    cmp.add_argument("--losses", default="aum,ce,weighted_ce", help="comma-separated: aum, ce, weighted_ce")
    cmp.add_argument("--seeds", type=int, default=5, help="number of paired seeds (default 5)")
    cmp.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    cmp.add_argument("--lr", type=float, default=1e-2, help="maximum learning rate of fit_one_cycle (default 1e-2)")
    cmp.add_argument("--bs", type=int, default=64, help="batch size (default 64)")
    cmp.add_argument("--positive", default=None, metavar="CLASS",
                     help="the positive class of a binary target, by its value (default: the second class in "
                          "sorted order: malignant for breast_cancer, yes for digits)")
    cmp.add_argument("--pos-frac", type=float, default=None,
                     help="share of positives after subsampling the positive class, for a binary target "
                          "(default 0.1 for breast_cancer and digits, none for a CSV)")
    cmp.add_argument("--test-pct", type=float, default=0.25, help="share of rows held out for testing (default 0.25)")
    cmp.add_argument("--quick", action="store_true", help="2 seeds and 3 epochs: a smoke run")
    cmp.add_argument("--out", default="fastai_aum_compare", help="folder for results.csv, summary.csv, comparison.png")
    return parser


def _subsample_positive(df, target: str, positive, pos_frac: float | None):
    """`df` with the positive class subsampled to `pos_frac` of the rows, and that class's value."""
    from .classes import positive_index
    from .datasets import subsample_positives
    classes = sorted(df[target].unique().tolist(), key=str)
    if len(classes) != 2:
        if positive is not None or pos_frac is not None:
            raise UsageError(f"--positive and --pos-frac are for a binary target; {target!r} has {len(classes)} classes")
        return df, None
    try:
        cls = classes[positive_index(classes, positive)]
    except ValueError:
        raise UsageError(f"--positive: no class {positive!r} in {target!r}; its classes are "
                         f"{', '.join(map(str, classes))}") from None
    if pos_frac is not None:
        df = subsample_positives(df, lambda d: d[target] == cls, pos_frac, seed=0).reset_index(drop=True)
    return df, cls


def _load_data(args):
    """(DataFrame, label column, categorical columns, positive class or None) for `--data`."""
    from .datasets import breast_cancer_df, digits_df, wine_df
    if args.pos_frac is not None and not 0 < args.pos_frac < 1:
        raise UsageError(f"--pos-frac must be between 0 and 1, got {args.pos_frac}")
    if args.data in BUILTIN:
        df = {"breast_cancer": lambda: breast_cancer_df(pos_frac=None), "wine": wine_df,
              "digits": lambda: digits_df(positive_digit=8).reset_index(drop=True)}[args.data]()
        pos_frac = args.pos_frac or (0.1 if args.data != "wine" else None)
        df, positive = _subsample_positive(df, "label", args.positive, pos_frac)
        return df, "label", [], positive
    path = Path(args.data)
    if path.suffix.lower() != ".csv":
        raise UsageError(f"--data must be one of {', '.join(BUILTIN)} or a .csv file, got {args.data!r}")
    if not path.is_file():
        raise UsageError(f"--data: no such file: {path}")
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except Exception as e:
        raise UsageError(f"--data: cannot read {path} as CSV: {e}") from e
    target = args.target or next((c for c in ("label", "target") if c in df.columns), df.columns[-1])
    if target not in df.columns:
        raise UsageError(f"--target: no column {target!r} in {path.name}; columns are {', '.join(map(str, df.columns))}")
    df = df.dropna(subset=[target]).reset_index(drop=True)
    df[target] = df[target].astype(str)
    if df[target].nunique() < 2:
        raise UsageError(f"--target: column {target!r} has {df[target].nunique()} class(es); it needs at least two")
    df, positive = _subsample_positive(df, target, args.positive, args.pos_frac)
    features = [c for c in df.columns if c != target]
    cats = [c for c in features if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
            or (pd.api.types.is_integer_dtype(df[c]) and df[c].nunique() <= 10)]
    return df, target, cats, positive


def _compare(args) -> int:
    losses = [loss.strip() for loss in args.losses.split(",") if loss.strip()]
    from .learner import LOSSES
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown or not losses:
        raise UsageError(f"--losses: unknown loss {', '.join(unknown) or '(none)'}; choose from {', '.join(LOSSES)}")
    seeds, epochs = (2, 3) if args.quick else (args.seeds, args.epochs)
    if seeds < 1 or epochs < 1 or args.bs < 2:
        raise UsageError(f"--seeds and --epochs must be at least 1 and --bs at least 2, got {seeds}, {epochs}, {args.bs}")
    if not 0 < args.test_pct < 1:
        raise UsageError(f"--test-pct must be between 0 and 1, got {args.test_pct}")
    df, target, cats, positive = _load_data(args)

    import matplotlib
    matplotlib.use("Agg")

    from .compare import compare_losses
    from .datasets import stratified_split, tabular_dls
    counts = df[target].value_counts()
    if counts.min() < 4:
        raise UsageError(f"--target: class {counts.idxmin()!r} has {counts.min()} row(s); each class needs at least 4 "
                         "to appear in the training, validation and test splits")
    dev, test = stratified_split(df[target], args.test_pct, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = tabular_dls(df.iloc[dev].reset_index(drop=True), label=target, bs=args.bs, cat_names=cats)
    print(f"{args.data}: {len(df)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
          f"{len(dls.train_ds)} train, {len(dls.valid_ds)} validation, {len(test)} test; "
          f"{seeds} seeds x {len(losses)} losses x {epochs} epochs", flush=True)
    if positive is not None:
        print(f"positive class: {positive}", flush=True)
    result = compare_losses(dls, test=df.iloc[test], losses=losses, seeds=range(seeds), epochs=epochs, lr=args.lr,
                            positive=positive)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.results.to_csv(out / "results.csv", index=False)
    result.summary().to_csv(out / "summary.csv")
    result.plot().savefig(out / "comparison.png", dpi=110, bbox_inches="tight")
    print(f"\nAUROC of the epoch selected by validation AUROC, mean ± sd over {seeds} seeds; "
          f"wins and Wilcoxon p against ce on test AUROC:")
    print(result.report())
    print(f"wrote {out / 'results.csv'}, {out / 'summary.csv'} and {out / 'comparison.png'}")
    return 0


# Warnings raised by fastai's and torch's own code, which a user of the command cannot act on. They are
# filtered in this command's process only: importing the package filters nothing.
_UNACTIONABLE = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),  # fastai's layers.py, at import
    (UserWarning, r"The given NumPy array is not writable"),  # fastai's tabular tensors
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fastai-aum` and `python -m fastai_aum`; returns the exit status."""
    for category, message in _UNACTIONABLE:
        warnings.filterwarnings("ignore", message=message, category=category)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "compare":
            return _compare(args)
        parser.print_help()
        return 0
    except UsageError as e:
        print(f"fastai-aum: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastai-aum: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
