"""The `fastai-aum` console command (also `python -m fastai_aum`).

`compare` never loses a finished run: the arguments, the data and `--out` are checked before training;
each run is committed to the store (`store.py`, one SQLite file in `--out`) as it ends; `--resume`
continues an interrupted comparison with the same data and settings; `--force` moves an earlier one
aside. With `--jobs`, seeds train in worker processes and this process writes their runs as they come back. results.csv, scores.csv, summary.csv, report.txt and comparison.png are exported from the store,
each through a temporary file; config.json records the data, columns, protocol and versions.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import warnings
from pathlib import Path

from .. import __version__

__all__ = ["main"]

DEFAULT_SEEDS, DEFAULT_EPOCHS, DEFAULT_LR = 10, 10, "0.003,0.01,0.03"
QUICK_SEEDS, QUICK_EPOCHS = 2, 3
VALID_PCT = 0.25
MAX_ERROR = 300  # characters of a one-line error
OUTPUTS = ("results.csv", "scores.csv", "summary.csv", "config.json", "comparison.png", "report.txt")


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
                         description="Train a tabular model with each loss, learning rate and seed on a new "
                                     "stratified split per seed; choose each run's epoch and each loss's learning "
                                     "rate on validation AUROC; report the test AUROC with DeLong intervals, "
                                     "paired DeLong tests against ce and a verdict per loss.")
    cmp.add_argument("--data", default="breast_cancer", metavar="NAME|PATH.csv",
                     help="breast_cancer (default), digits (8 against the rest, 8x8 pixels), wine (3 classes), "
                          "or a CSV file")
    cmp.add_argument("--target", help="label column of a CSV file (required for a CSV)")
    cmp.add_argument("--drop", default="", metavar="COL,...", help="comma-separated columns to leave out")
    cmp.add_argument("--cat-names", default="", metavar="COL,...",
                     help="columns to treat as categorical, whatever the rule (README: Column types) says")
    cmp.add_argument("--cont-names", default="", metavar="COL,...",
                     help="columns to treat as continuous numbers (a value that is not a number becomes missing)")
    cmp.add_argument("--sep", default=None, help="delimiter of the CSV file (default: detected among , ; tab |)")
    cmp.add_argument("--losses", default="aum,ce,weighted_ce",
                     help="comma-separated: aum, ce, weighted_ce, or an AUM recipe such as aum(margin=1), "
                          "aum(ce_weight=1), aum(last_layer_scale=0) (default aum,ce,weighted_ce)")
    cmp.add_argument("--seeds", type=int, default=None, help=f"number of paired seeds (default {DEFAULT_SEEDS})")
    cmp.add_argument("--epochs", type=int, default=None, help=f"epochs per run (default {DEFAULT_EPOCHS})")
    cmp.add_argument("--lr", default=DEFAULT_LR, metavar="LR,...",
                     help=f"maximum learning rate of fit_one_cycle, or a comma-separated grid from which each loss's "
                          f"is chosen on validation AUROC (default {DEFAULT_LR})")
    cmp.add_argument("--bs", type=int, default=64, help="batch size (default 64)")
    cmp.add_argument("--pos-label", default=None, metavar="CLASS",
                     help="the positive class of a binary target, by its value (default: the second class in "
                          "sorted order: malignant for breast_cancer, yes for digits)")
    cmp.add_argument("--pos-frac", type=float, default=None,
                     help="share of positives after subsampling the positive class, for a binary target "
                          "(default 0.1 for breast_cancer and digits, none for a CSV)")
    cmp.add_argument("--test-pct", type=float, default=0.25, help="share of rows held out for testing (default 0.25); "
                                                                  f"{VALID_PCT:g} of the rest validates")
    cmp.add_argument("--split", choices=("per_seed", "shared"), default="per_seed",
                     help="per_seed (default): a new stratified split per seed; shared: one split for every seed")
    cmp.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds and {QUICK_EPOCHS} epochs: a smoke run")
    cmp.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small tabular models "
                                                             "train fastest on one)")
    cmp.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one process each (default 1; -1: "
                                                          "every core or cluster worker); the outputs do not change")
    cmp.add_argument("--backend", default="loky", help="loky (default: processes here), dask or ray (a cluster)")
    cmp.add_argument("--scheduler", metavar="ADDRESS", help="the dask scheduler or Ray cluster to use (default: a "
                                                            "local one of --jobs workers)")
    cmp.add_argument("--out", default="fastai_aum_compare", help="folder for the store (compare.sqlite) and the "
                                                                 "files exported from it: results.csv, scores.csv, "
                                                                 "summary.csv, config.json, report.txt, comparison.png")
    cmp.add_argument("--resume", action="store_true", help="continue the comparison in --out (same data and "
                                                           "settings; --seeds may differ), skipping finished runs")
    cmp.add_argument("--force", action="store_true", help="move an earlier comparison in --out aside (into "
                                                          "replaced-<time>/) and start afresh")
    return parser


def _cut(text: str, n: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _lr_grid(text: str) -> list[float]:
    """`--lr` as numbers; `compare_losses`'s own check (`run.lr_grid`) says what else is wrong."""
    from .run import lr_grid
    try:
        return lr_grid([float(v) for v in text.split(",") if v.strip()])
    except ValueError as e:
        if "`lr`" not in str(e):  # not a number
            raise UsageError(f"--lr must be positive finite numbers, comma-separated, got {_cut(text)!r}") from None
        raise UsageError(f"--lr {_cut(text)}: {e}") from None


RECIPE_OPTIONS = {"margin": float, "ce_weight": float, "last_layer_scale": float}


def _split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside parentheses, each part stripped of spaces."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.replace(" ", "") for p in parts + [current] if p.strip()]


def _recipe(text: str):
    """One `--losses` entry: a loss name, or 'aum(option=value, ...)' as a dict of `aum_learner` arguments."""
    from ..learner import LOSSES
    if text in LOSSES:
        return text
    if not (text.startswith("aum(") and text.endswith(")")):
        raise UsageError(f"--losses: unknown loss {_cut(text)!r}; choose from {', '.join(LOSSES)} or an AUM recipe "
                         f"such as aum(margin=1) (options: {', '.join(RECIPE_OPTIONS)})")
    spec = {"loss": "aum"}
    for item in _split_top_level(text[4:-1]):
        key, _, value = item.partition("=")
        if key not in RECIPE_OPTIONS or not value:
            raise UsageError(f"--losses: {_cut(text)!r}: expected option=value with an option among "
                             f"{', '.join(RECIPE_OPTIONS)}, got {_cut(item)!r}")
        if key in spec:
            raise UsageError(f"--losses: {_cut(text)!r} gives {key} twice")
        try:
            spec[key] = RECIPE_OPTIONS[key](value)  # its range is `compare_losses`'s to check, as for any recipe
        except ValueError:
            raise UsageError(f"--losses: {_cut(text)!r}: {key} must be a number >= 0, got {_cut(value)!r}") from None
    return spec


def _recipe_name(spec) -> str:
    """The canonical name of a `--losses` entry: 'aum(margin=1)' for aum(margin=1.0) too, 'aum' for aum()."""
    if isinstance(spec, str):
        return spec
    options = [f"{k}={spec[k]:g}" for k in RECIPE_OPTIONS if k in spec]
    return f"aum({','.join(options)})" if options else "aum"


def _losses(text: str) -> dict:
    """`--losses` as {canonical name: loss name or recipe}, checked."""
    entries = _split_top_level(text)
    if not entries:
        raise UsageError("--losses: no loss given; e.g. --losses aum,ce")
    losses = {}
    for entry in entries:
        spec = _recipe(entry)
        name = _recipe_name(spec)
        if name in losses:
            raise UsageError(f"--losses must be distinct, got {name} twice in {_cut(text)}")
        losses[name] = spec
    return losses


def _settings(args) -> dict:
    """Arguments checked before anything is loaded: losses, seeds, epochs, learning rates, batch size, split shares."""
    if args.quick and (args.seeds is not None or args.epochs is not None):
        raise UsageError("--quick sets 2 seeds and 3 epochs; give either --quick or --seeds/--epochs, not both")
    seeds = QUICK_SEEDS if args.quick else args.seeds if args.seeds is not None else DEFAULT_SEEDS
    epochs = QUICK_EPOCHS if args.quick else args.epochs if args.epochs is not None else DEFAULT_EPOCHS
    if seeds < 1 or epochs < 1:
        raise UsageError(f"--seeds and --epochs must be at least 1, got {seeds} and {epochs}")
    losses = _losses(args.losses)
    if args.bs < 2:
        raise UsageError(f"--bs must be at least 2, got {args.bs}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if not 0 < args.test_pct < 1:
        raise UsageError(f"--test-pct must be between 0 and 1, got {args.test_pct}")
    if args.pos_frac is not None and not 0 < args.pos_frac < 1:
        raise UsageError(f"--pos-frac must be between 0 and 1, got {args.pos_frac}")
    from .parallel import MissingEngine, check_parallel
    try:
        check_parallel(args.jobs, args.backend, args.scheduler, ("--jobs", "--backend", "--scheduler"))
    except (ValueError, MissingEngine) as e:
        raise UsageError(str(e)) from None
    if args.resume and args.force:
        raise UsageError("--resume keeps the earlier results and --force replaces them; give one of them")
    return {"losses": losses, "seeds": list(range(seeds)), "epochs": epochs, "lr": _lr_grid(args.lr), "bs": args.bs,
            "split": args.split, "test_pct": args.test_pct, "valid_pct": VALID_PCT}


def _check_out(args):
    """The output folder, checked (after the arguments and the data) before anything is written, and the lock
    on its store (refused if another compare holds it)."""
    from .store import STORE, StoreError, lock_folder
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {_cut(out, 120)} is a file; give a folder")
    try:
        lock = lock_folder(out) if out.is_dir() else None
    except (StoreError, OSError) as e:
        raise UsageError(str(e) if isinstance(e, StoreError) else f"--out: cannot write to {_cut(out, 120)}: "
                         f"{e.strerror or e}") from None
    stored, old_csv = (out / STORE).exists(), (out / "results.csv").exists()
    if args.resume and not stored:
        why = ("holds results.csv from an older version, without a store" if old_csv else f"has no {STORE}")
        raise UsageError(f"--resume: {_cut(out, 120)} {why}; nothing to continue (--force moves it aside)")
    if (stored or old_csv) and not args.resume and not args.force:
        raise UsageError(f"--out: {_cut(out, 120)} holds the results of an earlier comparison; add --resume to "
                         "continue it, --force to move it aside, or give another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".fastai_aum_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out: cannot write to {_cut(out, 120)}: {e.strerror or e}") from None
    return out, lock


def _versions() -> dict:
    import fastai
    import numpy
    import pandas
    import sklearn
    import torch
    return {"fastai_aum": __version__, "fastai": fastai.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "scikit-learn": sklearn.__version__,
            "python": sys.version.split()[0]}


IDENTITY = ("data", "target", "pos_label", "pos_frac", "rows", "fingerprint", "columns", "protocol")


def _identity(config: dict) -> dict:
    """What a resume must repeat: the data (by its fingerprint), its columns and the protocol but its seeds."""
    identity = {k: config[k] for k in IDENTITY}
    identity["protocol"] = {k: v for k, v in config["protocol"].items() if k != "seeds"}
    return json.loads(json.dumps(identity, default=str))


def _check_identity(store, identity: dict, resume: bool) -> None:
    """A new store takes `identity`; with --resume, the stored one must match it, and what differs is named."""
    old = store.get("identity")
    if old is None:
        store.put("identity", identity)
        return
    if not resume:  # another process made this store after `_check_out` looked
        raise UsageError(f"--out: {_cut(store.folder, 120)} holds the results of an earlier comparison; add "
                         "--resume to continue it, --force to move it aside, or give another --out")
    diff = [k for k in IDENTITY if k != "protocol" and old.get(k) != identity[k]]
    protocol = [k for k in identity["protocol"] if old.get("protocol", {}).get(k) != identity["protocol"][k]]
    diff += [f"protocol ({', '.join(protocol)})"] if protocol else []
    if diff:
        what = ["the data (its fingerprint)" if k == "fingerprint" else k for k in diff]
        raise UsageError(f"--resume: the comparison in {_cut(store.folder, 120)} used different {', '.join(what)}; "
                         "repeat its data and settings, or use --force or another --out")


class _Recorder:
    """`on_run` for `compare_losses`: commits each finished run to the store; without a terminal, one line each."""

    def __init__(self, store, total: int, lines: bool):
        self.store, self.total, self.lines, self.runs = store, total, lines, 0

    def __call__(self, rows, scores):
        self.store.add_run(rows, scores)
        self.runs += 1
        if self.lines:
            best = rows[rows["run_best"].astype(bool)]
            auroc = f"; validation AUROC {best['valid_auroc'].iloc[0]:.4f} at epoch {best['epoch'].iloc[0]}" \
                if len(best) else ""
            print(f"run {self.runs}/{self.total}: {rows['loss'].iloc[0]}, seed {rows['seed'].iloc[0]}, "
                  f"lr {rows['lr'].iloc[0]:g}{auroc}", flush=True)


def _write(out: Path, name: str, write) -> None:
    """Write `out/name` through a temporary file, so that an interruption or a full disk leaves the earlier version."""
    tmp = out / f".{name}.tmp"
    try:
        write(tmp)
        os.replace(tmp, out / name)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {_cut(out / name, 120)}: {e.strerror or e}; the store is intact: free "
                         "space or fix the permissions, then add --resume (nothing is trained again)") from None


def _header(args, data: dict, settings: dict, sizes: dict) -> str:
    df, target = data["df"], data["target"]
    counts = df[target].value_counts()
    n_lr = len(settings["lr"])
    split = "a new stratified split per seed" if settings["split"] == "per_seed" else "one split for every seed"
    return (f"{args.data}: {len(df)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())}); per seed "
            f"{sizes['train']} train, {sizes['valid']} validation, {sizes['test']} test ({split}); "
            f"{len(settings['seeds'])} seeds x {len(settings['losses'])} losses x {n_lr} learning rate"
            f"{'s' * (n_lr > 1)} x {settings['epochs']} epochs")


def _compare(args) -> int:
    settings = _settings(args)
    from .data import load_data, split_sizes
    data = load_data(args, UsageError)
    df, target = data["df"], data["target"]
    sizes = split_sizes(df[target], settings["test_pct"], settings["valid_pct"], UsageError)
    if settings["bs"] > sizes["train"]:
        raise UsageError(f"--bs {settings['bs']} is larger than the {sizes['train']} training rows of each split; "
                         f"give at most {sizes['train']}")
    out, lock = _check_out(args)
    for line in data["notes"]:
        print(line, flush=True)
    print(_header(args, data, settings, sizes), flush=True)
    if data["pos_label"] is not None:
        print(f"positive class: {data['pos_label']}", flush=True)
    config = {"data": args.data, "target": target, "pos_label": data["pos_label"], "pos_frac": data["pos_frac"],
              "delimiter": data["delimiter"], "decimal": data["decimal"], "rows": len(df),
              "rows_dropped": data["rows_dropped"], "fingerprint": data["fingerprint"], "columns": data["columns"],
              "protocol": {**settings, "split_sizes": sizes,
                           "selection": "epoch by validation AUROC, ties to the lowest validation loss; "
                                        "lr per loss by mean validation AUROC"},
              "versions": _versions(), "command": ["fastai-aum", *args.argv]}
    from .store import Store, StoreError
    try:
        store = Store.open(out, replace=OUTPUTS if args.force else (), lock=lock)
    except StoreError as e:
        raise UsageError(str(e)) from None
    try:
        return _run(args, data, settings, config, store)
    except sqlite3.Error as e:  # reading it, or writing its settings (a run's own write is caught in `_run`)
        raise UsageError(f"cannot use the store {_cut(out / store.name, 120)}: {e}") from None
    finally:
        store.close()


def _run(args, data: dict, settings: dict, config: dict, store) -> int:
    """Train what the store lacks, then export the comparison of the planned runs from the store."""
    out = store.folder
    if store.replaced:
        print(f"--force: the earlier comparison was moved to {store.replaced}", flush=True)
    _check_identity(store, _identity(config), args.resume)
    grid, losses, seeds = settings["lr"], settings["losses"], settings["seeds"]
    planned = [(name, seed, rate) for seed in seeds for rate in grid for name in losses]
    done = set(store.keys())
    others = len(done - set(planned))
    if args.resume:
        print(f"resuming: {len(done & set(planned))} finished run(s) of this plan in {out / store.name}"
              + (f", and {others} outside it (other seeds), kept but not reported" if others else ""), flush=True)
    _write(out, "config.json", lambda p: p.write_text(json.dumps(config, indent=2, default=str)))
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    import torch
    from .report import Comparison
    from .run import compare_losses_on_df
    torch.set_num_threads(args.threads)
    recorder = _Recorder(store, len(set(planned) - done), lines=not sys.stdout.isatty())
    old_rows, old_scores = store.frames(planned)
    previous = (old_rows, old_scores if old_scores is not None else pd.DataFrame())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compare_losses_on_df(data["df"], data["target"], losses=losses, seeds=seeds, epochs=settings["epochs"],
                                 lr=grid, test_pct=settings["test_pct"], valid_pct=settings["valid_pct"],
                                 split=settings["split"], bs=settings["bs"],
                                 cat_names=data["columns"]["categorical"], cont_names=data["columns"]["continuous"],
                                 pos_label=data["pos_label"], on_run=recorder, show_progress=not recorder.lines,
                                 previous=previous, n_jobs=args.jobs, backend=args.backend,
                                 scheduler=args.scheduler, threads=args.threads)
    except KeyboardInterrupt:
        kept = len(store.keys())
        kept = (f"{kept} finished run(s) are kept in {out / store.name}" if kept else
                "no run had finished; the settings are kept in the store")
        print(f"fastai-aum: interrupted; {kept}; add --resume to continue", file=sys.stderr)
        return 130
    except (sqlite3.Error, OSError) as e:
        raise UsageError(f"cannot write the store {_cut(out / store.name, 120)}: {e}; it holds the "
                         f"{len(store.keys())} run(s) finished before; free space or fix the permissions, then "
                         "add --resume") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    for w in caught:
        if str(w.message).startswith("compare_losses:"):
            print(f"note: {w.message}", flush=True)
    results, scores = store.frames(planned)
    protocol = {"split": settings["split"], "evaluated": "test", "lr": grid, "epochs": settings["epochs"],
                "seeds": seeds, "classes": data["classes"],
                "tie_break": "lowest validation loss among epochs tied at the best validation AUROC"}
    result = Comparison(results, {}, "ce", data["pos_label"], scores, protocol)
    _write(out, "results.csv", lambda p: result.results.to_csv(p, index=False))
    _write(out, "scores.csv", lambda p: result.scores.to_csv(p, index=False))
    _write(out, "summary.csv", lambda p: result.summary().to_csv(p))
    report = result.report()
    if others:
        report += (f"\nthe store also holds {others} finished run(s) outside this plan (other seeds); they are not "
                   "reported")
    _write(out, "report.txt", lambda p: p.write_text(report + "\n"))
    fig = result.plot()
    _write(out, "comparison.png", lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    print()
    print(report)
    print(f"wrote {', '.join(str(out / n) for n in OUTPUTS)}; the runs are in {out / store.name}")
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
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if args.command == "compare":
            return _compare(args)
        parser.print_help()
        return 0
    except UsageError as e:
        print(f"fastai-aum: error: {_cut(e, MAX_ERROR)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastai-aum: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
