"""Distributed correctness on CPU: two processes in a gloo group.

A real `torchrun` fit through `fastai_aum.distrib_ctx` (fastai's DistributedTrainer), and the pieces it is
made of: validation AUROC gathered through fastai's own path (`DistributedDL` and `Learner.to_detach`), AUM
training under `DistributedDataParallel`, and the global AUM (`distributed='global'`) against one process
on the concatenated batch.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow

N_VALID, WORLD = 101, 2  # an odd number of rows, so that DistributedDL pads one rank


def _init(rank, rendezvous):
    """Join the group through a file (no port to pick, so no race for one)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)


def _validation_data():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(N_VALID, generator=g) < 0.3).long()
    x = torch.randint(0, 6, (N_VALID, 1), generator=g).float() + y[:, None]  # ties, and some signal
    return x, y


def _auroc_worker(rank, rendezvous, out):
    warnings.simplefilter("ignore")
    _init(rank, rendezvous)
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.distributed import DistributedDL
    from fastai.learner import Learner

    from fastai_aum import AUMLossFlat, AUROCCallback

    class CPUDistributedDL(DistributedDL):
        def _broadcast(self, t, rank):  # fastai's own sends a CUDA tensor (nccl); gloo takes CPU ones
            t = torch.tensor(t, dtype=torch.long)
            dist.broadcast(t, rank)
            return t.tolist()

    x, y = _validation_data()
    items = [(x[i], y[i]) for i in range(N_VALID)]
    dl = TfmdDL(items, bs=8, shuffle=False, num_workers=0)
    model = torch.nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-0.5], [0.5]]))
        model.bias.zero_()
    learn = Learner(DataLoaders(dl, dl), model, loss_func=AUMLossFlat(), cbs=AUROCCallback())
    ddl = CPUDistributedDL(dl, rank=rank, world_size=WORLD)
    with learn.no_logging():
        learn.validate(dl=ddl)
    metric = learn.auroc.metric
    torch.save({"value": metric.value, "n": len(metric.preds), "preds": metric.preds, "targs": metric.targs},
               os.path.join(out, f"auroc{rank}.pt"))
    dist.destroy_process_group()


def test_validation_auroc_gathered_across_two_processes_equals_single_process(tmp_path):
    mp.spawn(_auroc_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    x, y = _validation_data()
    expected = roc_auc_score(y.numpy(), x[:, 0].numpy())  # the model scores z1 - z0 = x
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"auroc{rank}.pt")
        assert got["n"] == N_VALID  # every row once: the padded duplicate was dropped
        assert got["value"] == pytest.approx(expected, abs=1e-12)
        # the same (score, label) pairs as the single-process set, in rank-interleaved order: nothing twice
        pairs = sorted(zip((got["preds"][:, 1] - got["preds"][:, 0]).tolist(), got["targs"].reshape(-1).tolist()))
        assert pairs == sorted(zip(x[:, 0].tolist(), y.tolist()))


def _shard(rank, step):
    g = torch.Generator().manual_seed(100 * step + rank)
    y = (torch.rand(32, generator=g) < 0.25).long()
    y[0], y[1] = 0, 1  # both classes in every shard
    x = torch.randn(32, 4, generator=g) + y[:, None].float()
    return x, y


STEPS, LR = 5, 0.5


def _initial_model():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


def _ddp_worker(rank, rendezvous, out):
    _init(rank, rendezvous)
    from fastai_aum import AUMLossFlat
    model = torch.nn.parallel.DistributedDataParallel(_initial_model())
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_func = AUMLossFlat()
    for step in range(STEPS):
        x, y = _shard(rank, step)
        opt.zero_grad()
        loss_func(model(x), y).backward()
        opt.step()
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(WORLD)]
    dist.all_gather(gathered, params)
    torch.save({"params": params, "gathered": gathered}, os.path.join(out, f"ddp{rank}.pt"))
    dist.destroy_process_group()


def test_aum_trains_under_ddp_with_parameters_in_sync(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    # the same training in one process: DDP averages the two shards' gradients
    from fastai_aum.functional import aum
    model = _initial_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        opt.zero_grad()
        sum(aum(model(x)[:, 0], y) for x, y in (_shard(r, step) for r in range(WORLD))).div(WORLD).backward()
        opt.step()
    expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    results = [torch.load(tmp_path / f"ddp{rank}.pt") for rank in range(WORLD)]
    for got in results:
        assert torch.equal(got["gathered"][0], got["gathered"][1])  # the ranks agree exactly
        np.testing.assert_allclose(got["params"].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(expected, torch.cat([p.detach().reshape(-1) for p in _initial_model().parameters()]))


SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


def _fit_script():
    spec = importlib.util.spec_from_file_location("ddp_fit_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(out: Path, distributed: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, even on a GPU host
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(WORLD), str(SCRIPT), str(out), distributed], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.parametrize("distributed", ["local", "global"])
def test_torchrun_fit_records_the_auroc_that_sklearn_gives_its_saved_weights(tmp_path, distributed):
    ranks = _torchrun(tmp_path, distributed)
    script = _fit_script()
    for got in ranks:
        assert got["world"] == WORLD and got["trained"] == "DistributedDataParallel"  # DDP really trained
        assert got["cbs"].count("DistributedTrainer") == 0  # and the context took its trainer away
        assert got["n_valid_seen"] == script.N_VALID  # odd: the row DistributedDL padded was dropped
        assert len(got["rows"]) == 2 and got["rows"][-1]["auroc"] == got["auroc"]
    assert ranks[0]["rows"] == ranks[1]["rows"]  # every rank reports the whole validation set's AUROC
    # one process, the saved weights, the same validation rows, scikit-learn
    dls = script.dataloaders()
    learn = script.learner(dls)
    learn.model.load_state_dict(torch.load(tmp_path / "model.pt"))
    with learn.no_bar(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds, targs = learn.get_preds(dl=dls.valid, act=lambda x: x)
    assert len(targs) == script.N_VALID
    expected = roc_auc_score(targs.numpy().reshape(-1), (preds[:, 1] - preds[:, 0]).double().numpy())
    assert abs(ranks[0]["auroc"] - expected) <= 1e-9
    assert 0.5 < expected < 1  # a model that learned something, not a degenerate one
