"""`compare_losses`: AUM against cross-entropy on the same data, paired by seed, selected on validation data.

Two entry points, two protocols:
- `compare_losses(dls, test=...)` trains every seed on the data it is given: with DataLoaders (and a
  `test` DataFrame or DataLoader) every seed shares one split, so seeds vary only the initial weights
  and the batch order. A function of the seed returning `(dls, test)` gives each seed its own data;
  say `split='per_seed'` when those are independent splits (it changes how the evidence is pooled).
- `compare_losses_on_df(df, label, ...)` makes a new stratified train/validation/test split per seed
  (`split='per_seed'`, the default; `split='shared'` keeps the split of seed 0). The CLI uses it.
The statistics and the verdict are in `Comparison` (`comparison_report`).
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable

import pandas as pd
import torch
from fastprogress.fastprogress import progress_bar

from .fit import fit_run, seed_data
from .parallel import check_parallel, run_seeds
from .report import Comparison
from ..learner import LOSSES, aum_learner, check_learner_options

__all__ = ["compare_losses", "compare_losses_on_df", "tabular_splits", "append_csv", "lr_grid", "Comparison", "SPLITS"]

SPLITS = ("shared", "per_seed")


def _loss_name(loss) -> str:
    if isinstance(loss, dict):
        options = ", ".join(f"{k}={v!r}" for k, v in loss.items() if k != "loss")
        return f"{_loss_name(loss.get('loss', 'aum'))}({options})"
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


_CONTROLLED = ("n_out", "pos_label", "arch", "dls", "cbs")  # compare_losses sets these for every run alike


def _learner_parameters() -> set[str]:
    """The arguments `aum_learner` takes, with those it passes on to fastai's Learner builders."""
    import inspect
    from fastai.tabular.learner import tabular_learner
    from fastai.text.learner import text_classifier_learner
    from fastai.vision.learner import vision_learner
    from fastai.learner import Learner
    return {name for f in (aum_learner, tabular_learner, text_classifier_learner, vision_learner, Learner)
            for name, p in inspect.signature(f).parameters.items() if p.kind is not p.VAR_KEYWORD}


def _learner_args(name: str, spec) -> dict:
    """`aum_learner` arguments of the entry `name` of `losses`: a loss name or object, or a dict of `aum_learner`
    arguments (`loss`, default 'aum', and recipes such as `margin`, `ce_weight`, `last_layer_scale`), checked now."""
    if not isinstance(spec, dict):
        return {"loss": spec}
    known = _learner_parameters()
    bad = [k for k in spec if not isinstance(k, str) or k in _CONTROLLED or k not in known]
    if bad:
        raise ValueError(f"`losses`: the recipe {name!r} must be a dict of aum_learner arguments other than "
                         f"{', '.join(_CONTROLLED)}, got {bad[0]!r} in {spec}")
    args = {"loss": "aum", **spec}
    _check_recipe(name, None, args)
    return args


def _recipe_text(args: dict) -> str:
    """A run's loss and recipe as text, to tell on resuming whether a name still means the same thing
    ('' for a loss object, whose text may not be stable)."""
    if not isinstance(args["loss"], str) or not all(isinstance(v, (str, numbers.Real, type(None), list, tuple))
                                                    for v in args.values()):
        return ""
    return _loss_name(args) if len(args) > 1 else args["loss"]


def _check_recipe(name: str, data, args: dict) -> None:
    """`check_learner_options` for one recipe (with `data`, also what depends on the data), naming the recipe."""
    data = data[0] if isinstance(data, tuple) else data
    options = {k: v for k, v in args.items() if k in _CHECKED}
    try:
        check_learner_options(data, **options)
    except ValueError as e:
        raise ValueError(f"`losses`: the recipe {name!r}: {e}") from None


_CHECKED = ("loss", "pos_label", "stratify", "margin", "ce_weight", "last_layer_scale")


def _kept_runs(previous, losses: list, seeds: list, grid: list, epochs: int):
    """The finished runs of `previous` that this comparison plans (others are left out), after checking that
    each was trained for `epochs` epochs with the loss or recipe its name now stands for."""
    old_rows, old_scores = previous if previous is not None else (pd.DataFrame(), pd.DataFrame())
    if not len(old_rows):
        return old_rows, old_scores, set()
    recipes = {name: _recipe_text(args) for name, args in losses}
    planned = old_rows["loss"].astype(str).isin(recipes) & old_rows["seed"].astype(int).isin(seeds)
    planned &= old_rows["lr"].map(lambda v: any(_same_lr(float(v), g) for g in grid))
    old_rows = old_rows[planned]
    for (name, seed, rate), run in old_rows.groupby(["loss", "seed", "lr"]):
        if len(run) != epochs:
            raise ValueError(f"`previous`: the finished run of {name!r} (seed {seed}, lr {rate:g}) has {len(run)} "
                             f"epochs, but this comparison trains {epochs}; start afresh or repeat its settings")
        text = str(run["recipe"].iloc[0]) if "recipe" in run and pd.notna(run["recipe"].iloc[0]) else ""
        if text and recipes[name] and text != recipes[name]:
            raise ValueError(f"`previous`: {name!r} was {text!r} in the finished runs, but is {recipes[name]!r} now; "
                             "give the recipe a new name or start afresh")
    if old_scores is not None and len(old_scores):
        keys = old_rows[["loss", "seed", "lr"]].drop_duplicates()
        old_scores = old_scores.merge(keys, on=["loss", "seed", "lr"])
    done = {(str(n), int(s), float(r)) for n, s, r in old_rows[["loss", "seed", "lr"]].drop_duplicates().itertuples(
        index=False)}
    return old_rows, old_scores, done


def _bad_lr(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0


def _check_arguments(losses, seeds, epochs, lr) -> tuple[list, list]:
    """Raise a ValueError naming the argument unless `compare_losses` can run; `losses` as a list of (name,
    aum_learner arguments), `seeds` as a list."""
    losses = list(losses.items()) if isinstance(losses, dict) else [(_loss_name(loss), loss) for loss in losses]
    losses, seeds = [(name, _learner_args(name, spec)) for name, spec in losses], list(seeds)
    if not losses:
        raise ValueError("`losses` must name at least one loss (e.g. ['aum', 'ce']), got none")
    if not seeds:
        raise ValueError("`seeds` must hold at least one seed (e.g. [0, 1, 2]), got none")
    not_int = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
    if not_int:
        raise ValueError(f"`seeds` must be integers, got {not_int[0]!r} in {seeds}")
    if len(set(map(int, seeds))) != len(seeds):
        raise ValueError(f"`seeds` must be distinct (runs are paired by seed), got {seeds}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"`epochs` must be an integer >= 1, got {epochs!r}")
    lr_grid(lr)
    return losses, seeds


def lr_grid(lr) -> list[float]:
    """`lr` as a list of distinct positive finite learning rates (one number, or a grid)."""
    if isinstance(lr, (str, bytes)) or not isinstance(lr, Iterable):
        if _bad_lr(lr):
            raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
        return [float(lr)]
    grid = list(lr)
    bad = [v for v in grid if _bad_lr(v)]
    if bad or not grid:
        raise ValueError(f"`lr` must be a positive finite number, got {bad[0] if bad else 'none'!r} in {grid}")
    if len(set(map(float, grid))) != len(grid):
        raise ValueError(f"`lr` must hold distinct learning rates, got {grid}")
    return [float(v) for v in grid]


def _same_lr(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def compare_losses(dls, test=None, losses=LOSSES, seeds=tuple(range(10)), epochs: int = 10, lr=1e-2, arch=None,
                   baseline: str = "ce", show_progress: bool = True, pos_label=None, split: str = "shared",
                   on_run=None, previous=None, n_jobs: int = 1, backend: str = "loky", scheduler=None,
                   threads: int | None = None, **learner_kwargs) -> Comparison:
    """Train one model per loss, learning rate and seed; select each run's epoch by validation AUROC and each
    loss's learning rate by mean validation AUROC; report the held-out test AUROC of the selected weights
    with DeLong's interval, the test average precision, and paired DeLong tests against `baseline`.

    Runs are paired: for a seed, every loss and learning rate starts from the same initial weights (all
    models get one output per class, so that they can) and sees the batches in the same order. When
    validation AUROC ties at its maximum, the tied epoch with the lowest validation loss is kept, with one
    warning. Every option is checked before the first fit.

    Args:
        dls: fastai DataLoaders, or a function of the seed returning DataLoaders or `(DataLoaders, test)`.
        test: labelled rows to evaluate (a DataFrame for `dls.test_dl`, or a DataLoader); without it the
            validation data are evaluated, which is optimistic.
        losses: names ('aum', 'ce', 'weighted_ce') or loss objects, or a dict from a name to one of those or
            to a recipe, a dict of `aum_learner` arguments (e.g. `{'aum_m1': {'margin': 1.0}}`; `loss`
            defaults to 'aum').
        seeds: the paired seeds.
        epochs: `fit_one_cycle(epochs, lr)` for every run.
        lr: one learning rate, or a grid from which each loss's is chosen on validation AUROC.
        arch: `aum_learner`'s architecture (vision and text).
        baseline: the loss the others are tested against.
        show_progress: show fastprogress's bar over the runs.
        pos_label: the positive class of a binary problem, by its vocabulary value (default: the second class).
        split: 'shared' if the seeds share one split, 'per_seed' if each has its own; it decides how the
            per-seed tests are pooled.
        on_run: called as `on_run(rows, scores)` with each finished run's result rows and scores.
        previous: `(results, scores)` of finished runs that are kept, not trained again.
        n_jobs: seeds trained at once (-1: every core, or every worker of a cluster); 1 trains in this process.
        backend: joblib's engine when `n_jobs` is not 1 or `scheduler` is given: 'loky' (processes on this
            machine), 'dask' (dask.distributed) or 'ray'. One task per seed; `on_run` is called here, in this
            process, as each seed's runs come back; the result is in the sequential order, bit for bit.
        scheduler: the address of a dask scheduler or a Ray cluster (default: a local one of `n_jobs` workers).
        threads: torch threads in every worker (default: this process's `torch.get_num_threads()`).
        **learner_kwargs: to `aum_learner` (e.g. `layers`).
    """
    losses, seeds = _check_arguments(losses, seeds, epochs, lr)
    grid = lr_grid(lr)
    check_parallel(n_jobs, backend, scheduler)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise ValueError(f"`threads` must be an integer >= 1, got {threads!r}")
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    names = [name for name, _ in losses]
    if any(not isinstance(name, str) for name in names):
        raise ValueError(f"`losses`: names must be strings, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"`losses` must have distinct names, got {names}")
    if baseline not in names and len(names) > 1:
        warnings.warn(f"compare_losses: `baseline` {baseline!r} is not among the losses {names}; "
                      "nothing is tested against it", UserWarning, stacklevel=2)
    old_rows, old_scores, done = _kept_runs(previous, losses, seeds, grid, epochs)
    runs = [(seed, rate, name, args) for seed in seeds for rate in grid for name, args in losses]
    todo = [run for run in runs if not any(d[0] == run[2] and d[1] == run[0] and _same_lr(d[2], run[1]) for d in done)]
    if todo:  # what depends on the data, before the first fit
        data = dls(todo[0][0]) if callable(dls) else dls
        for name, args in losses:
            _check_recipe(name, data, {"pos_label": pos_label, **args})
    fit = {"epochs": epochs, "arch": arch, "pos_label": pos_label, "learner_kwargs": learner_kwargs}
    if n_jobs == 1 and backend == "loky" and scheduler is None:
        init = {}
        finished = ((i, fit_run(seed, rate, name, args, _recipe_text(args), seed_data(dls, test, seed), init, **fit))
                    for i, (seed, rate, name, args) in enumerate(todo))
    else:
        tasks = {}
        for i, (seed, rate, name, args) in enumerate(todo):
            tasks.setdefault(seed, []).append((i, rate, name, args, _recipe_text(args)))
        threads = torch.get_num_threads() if threads is None else threads
        finished = run_seeds(tasks, dls, test, threads, n_jobs, backend, scheduler, **fit)
    done_runs, classes, pos, evaluated = {}, None, None, "test" if test is not None else None
    bar = progress_bar(finished, total=len(todo)) if show_progress and todo else finished  # display=False still writes
    try:
        for i, result in bar:
            done_runs[i] = result
            if on_run is not None:
                on_run(*result[:2])
    finally:  # an interruption or a failed write stops the workers now, not when the generator is collected
        finished.close()
    if todo:  # the last planned run's, as in the sequential loop
        classes, pos, evaluated = done_runs[len(todo) - 1][2:]
    rows = [old_rows] + [done_runs[i][0] for i in sorted(done_runs)]
    scores = [old_scores] + [done_runs[i][1] for i in sorted(done_runs) if done_runs[i][1] is not None]
    results = pd.concat([r for r in rows if len(r)], ignore_index=True) if any(len(r) for r in rows) else pd.DataFrame()
    all_scores = pd.concat([s for s in scores if len(s)], ignore_index=True) if any(len(s) for s in scores) else None
    if not len(results):
        raise ValueError("compare_losses: no run finished")
    tied = results[results["run_best"].astype(bool)]
    n_tied = int((tied["best_ties"] > 1).sum())
    if n_tied:
        warnings.warn(f"compare_losses: validation AUROC tied at its maximum in {n_tied} of {len(tied)} runs; "
                      "each tie went to the tied epoch with the lowest validation loss", UserWarning, stacklevel=2)
    positive_class = classes[pos] if pos is not None else None
    protocol = {"split": split, "evaluated": evaluated or ("test" if "test_positives" in results else "validation"),
                "lr": grid, "epochs": epochs, "seeds": seeds, "classes": [str(c) for c in classes or []],
                "tie_break": "lowest validation loss among epochs tied at the best validation AUROC"}
    if classes is None and "test_positives" in results:  # everything came from `previous`
        protocol["classes"] = None
    return Comparison(results, {}, baseline, positive_class, all_scores, protocol)


def append_csv(frame: pd.DataFrame, path) -> None:
    """Append `frame` to the CSV file `path` (created with a header if new or empty), in the file's own
    columns: a file written by an earlier version keeps its layout (columns it lacks are left out)."""
    from pathlib import Path
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        columns = list(pd.read_csv(path, nrows=0).columns)
        frame.reindex(columns=columns).to_csv(path, mode="a", header=False, index=False)
    else:
        frame.to_csv(path, index=False)


def tabular_splits(df: pd.DataFrame, label: str = "label", test_pct: float = 0.25, valid_pct: float = 0.25,
                   split: str = "per_seed", bs: int = 64, cat_names=None, cont_names=None):
    """A function of the seed returning `(TabularDataLoaders, test rows)`: a stratified test split of `df`,
    then a stratified validation split of the rest. The last split made is cached, so the losses of a seed
    share it.

    Args:
        df: the rows, with the label column `label`.
        label: the label column.
        test_pct: the share of rows held out for testing.
        valid_pct: the share of the rest that validates.
        split: 'per_seed' draws each seed's split with that seed; 'shared' draws one, with seed 0, for every seed.
        bs: the batch size.
        cat_names, cont_names: the categorical and continuous columns (default: inferred by `tabular_dls`).
    """
    from ..datasets import stratified_split, tabular_dls
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    cache = {}

    def data(seed: int):
        key = int(seed) if split == "per_seed" else 0
        if key not in cache:
            dev, test = stratified_split(df[label], test_pct, seed=key)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dls = tabular_dls(df.iloc[dev].reset_index(drop=True), label=label, valid_pct=valid_pct, bs=bs,
                                  seed=key, cat_names=cat_names, cont_names=cont_names)
            cache.clear()
            cache[key] = (dls, df.iloc[test])
        return cache[key]
    return data


def compare_losses_on_df(df: pd.DataFrame, label: str = "label", losses=LOSSES, seeds=tuple(range(10)),
                         epochs: int = 10, lr=1e-2, test_pct: float = 0.25, valid_pct: float = 0.25,
                         split: str = "per_seed", bs: int = 64, cat_names=None, cont_names=None,
                         **kwargs) -> Comparison:
    """`compare_losses` on a DataFrame, with the splits of `tabular_splits`.

    Args:
        df: the rows, with the label column `label`.
        label, test_pct, valid_pct, split, bs, cat_names, cont_names: as in `tabular_splits`.
        losses, seeds, epochs, lr: as in `compare_losses`.
        **kwargs: to `compare_losses` (`pos_label`, `on_run`, `previous`, `show_progress`, learner arguments).
    """
    data = tabular_splits(df, label, test_pct, valid_pct, split, bs, cat_names, cont_names)
    return compare_losses(data, losses=losses, seeds=seeds, epochs=epochs, lr=lr, split=split, **kwargs)
