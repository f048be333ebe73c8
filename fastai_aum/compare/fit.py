"""One run of `compare_losses` (`fit_run`) and one seed's runs (`fit_seed`, the task a parallel comparison
sends to a worker). Every run of a seed starts from that seed's initial weights and sees its batches in the
same order, in a worker as in the sequential loop."""
from __future__ import annotations

import copy
import random
import threading
import warnings

import numpy as np
import pandas as pd
import torch
import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
from fastai.callback.core import Callback
from fastai.torch_core import set_seed

from ..callback import AUROCCallback
from ..functional import auroc, auroc_ci
from ..functional.precision_recall import average_precision
from ..learner import aum_learner
from ..vocab import class_names, dataset_labels, pos_label_index

__all__ = ["fit_run", "fit_seed", "seed_data"]

_STATS = ("test_auroc", "test_auroc_low", "test_auroc_high", "test_auroc_se", "test_ap", "test_positives")
# A run seeds torch's, NumPy's and Python's global generators: two runs in threads of one process (a dask
# worker with several threads) would draw from each other's, so a process trains one run at a time.
_ONE_AT_A_TIME = threading.Lock()


class _KeepBest(Callback):
    """Keeps, in memory, the weights of the epoch with the best validation AUROC; among epochs tied at that
    maximum, the one with the lowest validation loss (the first of those if they tie too)."""
    order = AUROCCallback.order + 2  # after the Recorder (order 50) has logged the epoch's losses and metrics

    def before_fit(self):
        self.best, self.best_loss, self.best_epoch, self.state, self.ties = -np.inf, np.inf, None, None, 0

    def after_epoch(self):
        value = self.auroc.metric.value
        if value is None or np.isnan(value):
            return
        names = self.learn.recorder.metric_names[1:-1]
        record = dict(zip(names, self.learn.recorder.values[-1])) if self.learn.recorder.values else {}
        loss = record.get("valid_loss", np.inf)
        loss = np.inf if loss is None or np.isnan(loss) else loss
        if value > self.best:
            self.best, self.ties = value, 1
        elif value == self.best:
            self.ties += 1
            if not loss < self.best_loss:
                return
        else:
            return
        self.best_loss, self.best_epoch = loss, self.epoch
        self.state = copy.deepcopy(self.learn.model.state_dict())


def _test_dl(learn, test):
    if test is None:
        return learn.dls.valid
    return learn.dls.test_dl(test, with_labels=True) if isinstance(test, pd.DataFrame) else test


def _evaluate(learn, dl, pos: int | None) -> tuple[dict, pd.DataFrame]:
    """Test AUROC (with DeLong's interval when binary), average precision and the scores of `dl`'s rows."""
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds, targs = learn.get_preds(dl=dl, act=lambda x: x)
    preds, targs = preds.double(), targs.reshape(-1).long()  # z_pos - z_other without float32 rounding: no false ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pos is not None:
            score = preds[:, 0] if preds.shape[1] == 1 else preds[:, pos] - preds[:, 1 - pos]
            target = (targs == pos).long()
            ci = auroc_ci(score, target)
            stats = {"test_auroc": ci.auroc.item(), "test_auroc_low": ci.low.item(), "test_auroc_high": ci.high.item(),
                     "test_auroc_se": ci.std_err.item(), "test_ap": average_precision(score, target).item(),
                     "test_positives": int(target.sum())}
            scores = pd.DataFrame({"row": np.arange(len(target)), "target": target.numpy(), "score": score.numpy()})
        else:
            stats = {"test_auroc": auroc(preds, targs).item(), "test_auroc_low": np.nan, "test_auroc_high": np.nan,
                     "test_auroc_se": np.nan, "test_ap": average_precision(preds, targs).item(),
                     "test_positives": int(torch.bincount(targs, minlength=preds.shape[1]).min())}
            scores = pd.DataFrame({"row": np.arange(len(targs)), "target": targs.numpy(),
                                   **{f"score_{k}": preds[:, k].numpy() for k in range(preds.shape[1])}})
    return stats, scores


def fit_run(seed: int, rate: float, name: str, args: dict, recipe: str, data, init: dict, epochs: int, arch,
            pos_label, learner_kwargs: dict):
    """Train and evaluate the run (`name`, `seed`, `rate`) on `data` = `(dls, test)`; `init` maps a seed to
    its initial weights (filled by the seed's first run). Returns `(rows, scores, classes, pos, evaluated)`."""
    run_dls, run_test = data
    evaluated = "test" if run_test is not None else "validation"
    n_train, bs = len(run_dls.train_ds), run_dls.train.bs
    if getattr(run_dls.train, "drop_last", False) and bs > n_train:
        raise ValueError(f"the batch size ({bs}) must be at most the {n_train} training rows; a larger one "
                         "trains on no batch at all")
    set_seed(seed, reproducible=True)
    learn = aum_learner(run_dls, arch=arch, n_out=len(class_names(run_dls)), pos_label=pos_label,
                        **{**learner_kwargs, **args})
    classes = class_names(run_dls)
    pos = pos_label_index(classes, pos_label) if len(classes) == 2 else None
    if seed not in init:
        init[seed] = copy.deepcopy(learn.model.state_dict())
    learn.model.load_state_dict(init[seed])
    keep = _KeepBest()
    set_seed(seed, reproducible=True)
    run_dls.train.rng = random.Random(seed)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit_one_cycle(epochs, rate, cbs=keep)
    record_names = learn.recorder.metric_names[1:-1]  # without 'epoch' and 'time'
    records = [dict(zip(record_names, values)) for values in learn.recorder.values]  # before get_preds resets them
    counts = torch.bincount(dataset_labels(run_dls, 1), minlength=len(classes))
    stats, run_scores = dict.fromkeys(_STATS, np.nan), None
    if keep.state is not None:
        learn.model.load_state_dict(keep.state)
        stats, run_scores = _evaluate(learn, _test_dl(learn, run_test), pos)
    if evaluated == "validation":
        stats["test_auroc"] = np.nan  # the validation data chose the epoch: kept in `scores`, not reported as test
    rows = pd.DataFrame([
        {"loss": name, "seed": seed, "epoch": epoch, "lr": rate, "recipe": recipe,
         "train_loss": record.get("train_loss"),
         "valid_loss": record.get("valid_loss"), "valid_auroc": record.get("auroc"),
         "selected": epoch == keep.best_epoch, "run_best": epoch == keep.best_epoch, "best_ties": keep.ties,
         "valid_positives": int(counts[pos]) if pos is not None else int(counts.min()),
         **{k: (v if epoch == keep.best_epoch else np.nan) for k, v in stats.items()}}
        for epoch, record in enumerate(records)])
    if run_scores is not None:
        run_scores = pd.concat([pd.DataFrame({"loss": name, "seed": seed, "lr": rate}, index=run_scores.index),
                                run_scores], axis=1)
    return rows, run_scores, classes, pos, evaluated


def seed_data(dls, test, seed: int):
    """`(dls, test)` of `seed`: `dls` is DataLoaders, or a function of the seed returning them or `(dls, test)`."""
    data = dls(seed) if callable(dls) else dls
    return data if isinstance(data, tuple) else (data, test)


def fit_seed(seed: int, runs: list, dls, test, threads: int, epochs: int, arch, pos_label,
             learner_kwargs: dict) -> list:
    """The runs `(index, rate, name, args, recipe)` of `seed`, in order, on `threads` torch threads (the
    sequential run's count, so that the results are bit-identical); `[(index, fit_run's result), ...]`."""
    with _ONE_AT_A_TIME:
        torch.set_num_threads(threads)
        init, done = {}, []
        for index, rate, name, args, recipe in runs:
            done.append((index, fit_run(seed, rate, name, args, recipe, seed_data(dls, test, seed), init, epochs,
                                        arch, pos_label, learner_kwargs)))
        return done
