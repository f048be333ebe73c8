"""A DDP fit of a tabular Learner with AUMLossFlat and AUROCCallback, for `tests/test_distributed.py`.

Run: `python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_fit_script.py OUT local,global`:
one fit per `AUMLossFlat(distributed=...)` mode, in turn. Each rank writes OUT/{mode}_rank{r}.json (its
recorded `auroc` and losses); rank 0 also writes the weights to OUT/{mode}_model.pt. The test builds the same DataLoaders with `dataloaders()` and scores the weights in one process.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

N_VALID = 251  # odd: DistributedDL pads one rank's share by a row, and the AUROC must drop it
BS = 32


def dataloaders():
    from fastai.tabular.all import CategoryBlock, Normalize, TabularDataLoaders
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    cont = [c for c in df.columns if c != "target"][:10]
    valid_idx = np.random.default_rng(0).permutation(len(df))[:N_VALID].tolist()
    return TabularDataLoaders.from_df(df, y_names="target", cont_names=cont, cat_names=[], procs=[Normalize],
                                      valid_idx=valid_idx, bs=BS, y_block=CategoryBlock(), device="cpu")


def learner(dls, distributed: str = "local"):
    from fastai.tabular.all import tabular_learner

    from fastai_aum import AUMLossFlat, AUROCCallback
    torch.manual_seed(0)
    return tabular_learner(dls, layers=[16], loss_func=AUMLossFlat(distributed=distributed), cbs=AUROCCallback())


def main(out: str, distributed: str) -> None:
    for mode in distributed.split(","):
        fit(out, mode)


def fit(out: str, distributed: str) -> None:
    warnings.simplefilter("ignore")
    from fastai.torch_core import rank_distrib, set_seed

    from fastai_aum import distrib_ctx
    from fastai.callback.core import Callback

    class ModelType(Callback):  # what trains: DistributedTrainer unwraps the model after the fit
        def before_epoch(self):
            self.seen = type(self.learn.model).__name__
    set_seed(0)  # the same shuffles in every fit: the modes differ in the loss alone
    learn = learner(dataloaders(), distributed)
    seen = ModelType()
    with learn.no_bar(), distrib_ctx(learn):
        learn.fit(2, 1e-2, cbs=seen)
    rank = rank_distrib()
    names = list(learn.recorder.metric_names[1:-1])  # train_loss, valid_loss, auroc
    rows = [dict(zip(names, map(float, row))) for row in learn.recorder.values]
    losses = [float(v) for v in learn.recorder.losses]
    Path(out, f"{distributed}_rank{rank}.json").write_text(json.dumps({
        "rows": rows, "auroc": float(learn.auroc.metric.value), "n_valid_seen": len(learn.auroc.metric.targs),
        "losses": losses, "world": torch.distributed.get_world_size(), "one_class": learn.loss_func.one_class_batches,
        "trained": seen.seen, "cbs": [type(c).__name__ for c in learn.cbs]}))
    if rank == 0:
        torch.save(learn.model.state_dict(), Path(out, f"{distributed}_model.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "local,global")
