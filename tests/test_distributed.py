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
    from fastai_aum.distributed import cpu_distributed_dl
    from fastai.learner import Learner

    from fastai_aum import AUMLossFlat, AUROCCallback

    CPUDistributedDL = cpu_distributed_dl()  # fastai's DistributedDL, its index broadcast on gloo

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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _torchrun(out: Path, modes: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, even on a GPU host
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(WORLD), str(SCRIPT), str(out), modes], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.fixture(scope="module")
def torchrun_fits(tmp_path_factory):
    """One `torchrun` of two processes, fitting once with each `distributed` mode (one start, one import)."""
    out = tmp_path_factory.mktemp("torchrun")
    _torchrun(out, "local,global")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("distributed", ["local", "global"])
def test_torchrun_fit_records_the_auroc_that_sklearn_gives_its_saved_weights(torchrun_fits, distributed):
    ranks = [json.loads((torchrun_fits / f"{distributed}_rank{r}.json").read_text()) for r in range(WORLD)]
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
    learn.model.load_state_dict(torch.load(torchrun_fits / f"{distributed}_model.pt"))
    with learn.no_bar(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds, targs = learn.get_preds(dl=dls.valid, act=lambda x: x)
    assert len(targs) == script.N_VALID
    expected = roc_auc_score(targs.numpy().reshape(-1), (preds[:, 1] - preds[:, 0]).double().numpy())
    assert abs(ranks[0]["auroc"] - expected) <= 1e-9
    assert 0.5 < expected < 1  # a model that learned something, not a degenerate one


SIZES = (37, 50)  # the ranks' batches differ in length; rank 1's binary batch has no positive


def _cases(rank):
    """Each case: (name, loss factory, outputs, target) of one rank's batch."""
    from fastai_aum import AUMLossFlat
    g = torch.Generator().manual_seed(rank)
    n = SIZES[rank]
    binary = (torch.rand(n, generator=g) < 0.3).long() * (rank == 0)
    binary[:2] = torch.tensor([0, 1]) if rank == 0 else 0
    tied = torch.randint(0, 4, (n, 1), generator=g).double()  # ties within and across ranks
    multiclass = torch.randint(0, 4, (n,), generator=g)
    multilabel = (torch.rand(n, 3, generator=g) < 0.4).long()
    return [
        ("binary", lambda: AUMLossFlat(distributed="global"), tied, binary),
        ("two outputs, hybrid", lambda: AUMLossFlat(ce_weight=0.5, distributed="global"),
         torch.randn(n, 2, generator=g, dtype=torch.float64), binary),
        ("multiclass macro", lambda: AUMLossFlat(average="macro", distributed="global"),
         torch.randn(n, 4, generator=g, dtype=torch.float64), multiclass),
        ("multi-label", lambda: AUMLossFlat(multilabel=True, margin=0.5, distributed="global"),
         torch.randn(n, 3, generator=g, dtype=torch.float64), multilabel),
    ]


def _global_worker(rank, rendezvous, out):
    warnings.simplefilter("ignore")
    _init(rank, rendezvous)
    from fastai_aum import AUMLossFlat
    from fastai_aum.functional import aum
    results = {}
    for name, make, preds, target in _cases(rank):
        preds = preds.clone().requires_grad_()
        value = make()(preds, target)
        value.backward()
        results[name] = (value.detach(), preds.grad)
    # the functional API: sample weights, counts
    preds, target = _cases(rank)[0][2].reshape(-1).clone().requires_grad_(), _cases(rank)[0][3]
    weight = torch.linspace(0.5, 2, SIZES[rank], dtype=torch.float64)
    value = aum(preds, target, "count", sample_weight=weight, distributed="global")
    value.backward()
    results["functional, weighted counts"] = (value.detach(), preds.grad)
    # evaluation (no gradient) and the default stay local
    preds, target = _cases(rank)[2][2], _cases(rank)[2][3]
    results["evaluation"] = AUMLossFlat(average="macro", distributed="global")(preds, target)
    results["local"] = AUMLossFlat(average="macro")(preds.clone().requires_grad_(), target).detach()
    # shapes that differ across ranks but for the batch axis: the same error on every rank, no hang
    try:
        AUMLossFlat(distributed="global")(torch.zeros(3, 3 + rank, requires_grad=True), torch.zeros(3).long())
    except ValueError as e:
        results["error"] = str(e)
    try:
        aum(torch.zeros(4, dtype=torch.float64 if rank else torch.float32), torch.arange(4) % 2, distributed="global")
    except ValueError as e:
        results["dtype"] = str(e)
    from fastai_aum.functional.distributed import gather_batch
    results["mixed"] = gather_batch(*_mixed(rank))  # unpacked bit for bit, whatever the dtypes
    try:  # names cannot be gathered: a clear error, on every rank
        aum(torch.zeros(2, requires_grad=True), ["cat", "dog"], pos_label="dog", distributed="global")
    except TypeError as e:
        results["names"] = str(e)
    # a DDP step: the averaged parameter gradient is the one-process gradient of the global batch's AUM
    model = torch.nn.parallel.DistributedDataParallel(_initial_model())
    x, y = _global_shard(rank)
    AUMLossFlat(distributed="global")(model(x), y).backward()
    results["ddp"] = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.save(results, os.path.join(out, f"global{rank}.pt"))
    dist.destroy_process_group()


def _mixed(rank):
    n = SIZES[rank]
    return (torch.linspace(-1, 1, n), torch.arange(n) % 3 == 0, torch.full((n, 2, 3), -rank - 0.5, dtype=torch.bfloat16),
            torch.arange(2 * n, dtype=torch.int16).reshape(n, 2) + 1000 * rank)


def _global_shard(rank):
    g = torch.Generator().manual_seed(10 + rank)
    y = (torch.rand(SIZES[rank], generator=g) < 0.2).long() * (rank == 0)  # rank 1: negatives only
    y[0] = rank == 0
    return torch.randn(SIZES[rank], 4, generator=g) + y[:, None].float(), y


@pytest.mark.slow
def test_global_aum_equals_one_process_on_the_concatenated_batch(tmp_path):
    from fastai_aum import AUMLossFlat
    from fastai_aum.functional import aum
    mp.spawn(_global_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    got = [torch.load(tmp_path / f"global{rank}.pt") for rank in range(WORLD)]
    bounds = np.cumsum((0,) + SIZES)
    per_rank = [_cases(rank) for rank in range(WORLD)]
    for i, (name, make, _, _) in enumerate(per_rank[0]):
        preds = torch.cat([cases[i][2] for cases in per_rank]).requires_grad_()
        target = torch.cat([cases[i][3] for cases in per_rank])
        expected = make()(preds, target)  # one process: 'global' gathers nothing, as 'local'
        expected.backward()
        for rank in range(WORLD):
            value, grad = got[rank][name]
            assert abs(value.item() - expected.item()) <= 1e-6, name  # every rank logs the global value
            own = preds.grad[bounds[rank]:bounds[rank + 1]]
            assert own.abs().sum() > 0, name  # rank 1 has no positive of its own, and still learns
            torch.testing.assert_close(grad, WORLD * own, rtol=0, atol=1e-6, msg=name)
    preds = torch.cat([cases[0][2].reshape(-1) for cases in per_rank]).requires_grad_()
    weight = torch.cat([torch.linspace(0.5, 2, n, dtype=torch.float64) for n in SIZES])
    expected = aum(preds, torch.cat([cases[0][3] for cases in per_rank]), "count", sample_weight=weight)
    expected.backward()
    for rank in range(WORLD):
        value, grad = got[rank]["functional, weighted counts"]
        assert abs(value.item() - expected.item()) <= 1e-6
        torch.testing.assert_close(grad, WORLD * preds.grad[bounds[rank]:bounds[rank + 1]], rtol=0, atol=1e-6)
    for rank in range(WORLD):
        preds, target = per_rank[rank][2][2], per_rank[rank][2][3]
        local = AUMLossFlat(average="macro")(preds, target)
        assert got[rank]["evaluation"].item() == local.item() == got[rank]["local"].item()
        assert "same dtype and shape on every rank" in got[rank]["error"]
        assert "(3, 3) float32" in got[rank]["error"] and "(3, 4) float32" in got[rank]["error"]
        assert "(4,) float64" in got[rank]["dtype"] and "(4,) float32" in got[rank]["dtype"]
        assert "numeric labels" in got[rank]["names"] and "list" in got[rank]["names"]
        for joined, *parts in zip(got[rank]["mixed"], *(_mixed(r) for r in range(WORLD))):
            assert joined.dtype == parts[0].dtype and torch.equal(joined, torch.cat(parts))
    # DDP averaged the ranks' parameter gradients: that is the gradient of the concatenated batch's AUM
    model = _initial_model()
    x, y = map(torch.cat, zip(*(_global_shard(rank) for rank in range(WORLD))))
    AUMLossFlat()(model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    for rank in range(WORLD):
        torch.testing.assert_close(got[rank]["ddp"], expected, rtol=0, atol=1e-6)
    local = _initial_model()  # ... and not that of the mean of the ranks' own AUMs
    sum(AUMLossFlat()(local(x), y) for x, y in (_global_shard(r) for r in range(WORLD))).div(WORLD).backward()
    assert (torch.cat([p.grad.reshape(-1) for p in local.parameters()]) - expected).abs().max() > 1e-3


def test_global_outside_a_process_group_is_local_and_survives_a_pickle():
    import pickle

    from fastai_aum import AUMLossFlat
    from fastai_aum.functional import aum
    from fastai_aum.functional.distributed import gather_batch
    preds, target = torch.tensor([0.3, -1.0, 2.0, 0.5], requires_grad=True), torch.tensor([0, 0, 1, 1])
    assert gather_batch(preds, target) == (preds, target)  # nothing to gather in one process
    assert aum(preds, target, distributed="global").item() == aum(preds, target).item()
    assert aum(preds, ["a", "a", "b", "b"], pos_label="b", distributed="global").item() == aum(preds, target).item()
    loss = pickle.loads(pickle.dumps(AUMLossFlat(distributed="global")))
    assert loss.distributed == "global" and "distributed='global'" in repr(loss)
    assert AUMLossFlat().distributed == "local" and "distributed" not in repr(AUMLossFlat())
    old = AUMLossFlat()
    del old.__dict__["distributed"]  # a loss pickled before the option existed
    assert pickle.loads(pickle.dumps(old)).distributed == "local"


@pytest.mark.parametrize("bad", ["Global", None, 2])
def test_a_bad_distributed_mode_is_refused_by_name(bad):
    from fastai_aum import AUMLossFlat
    from fastai_aum.functional import aum
    with pytest.raises(ValueError, match="`distributed` must be one of 'local', 'global'"):
        AUMLossFlat(distributed=bad)
    with pytest.raises(ValueError, match="`distributed` must be one of"):
        aum(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), distributed=bad)


def test_gather_batch_refuses_what_it_cannot_gather():
    from fastai_aum.functional.distributed import gather_batch
    with pytest.raises(TypeError, match="argument 1 must be a tensor, got list"):
        gather_batch(torch.zeros(2), [0, 1])
    with pytest.raises(ValueError, match=r"argument 0 must have 1 to 5 axes .* got shape \(\)"):
        gather_batch(torch.tensor(1.0))


def _tiny_learner():
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner

    from fastai_aum import AUMLossFlat
    items = [(torch.randn(1), torch.tensor(i % 2)) for i in range(16)]
    dl = TfmdDL(items, bs=4, num_workers=0)
    return Learner(DataLoaders(dl, dl), torch.nn.Linear(1, 2), loss_func=AUMLossFlat())


def test_distrib_ctx_without_a_launch_fits_as_usual_and_leaves_fastai_as_it_was(monkeypatch):
    from fastai.distributed import DistributedDL, DistributedTrainer

    from fastai_aum import distrib_ctx
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    learn, broadcast, wrap = _tiny_learner(), DistributedDL._broadcast, DistributedTrainer._wrap_dl
    cbs = list(learn.cbs)
    with distrib_ctx(learn) as inside:
        assert inside is learn
        learn.fit(1)
    assert list(learn.cbs) == cbs and DistributedDL._broadcast is broadcast and DistributedTrainer._wrap_dl is wrap


def test_distrib_ctx_refuses_sync_bn_on_the_cpu_and_a_non_learner():
    from fastai_aum import distrib_ctx
    with pytest.raises(ValueError, match="`sync_bn=True` needs CUDA"):
        with distrib_ctx(_tiny_learner(), sync_bn=True, cpu=True):
            pass
    with pytest.raises(TypeError, match="`learn` must be a fastai Learner, got Linear"):
        with distrib_ctx(torch.nn.Linear(1, 1)):
            pass


def test_distrib_ctx_restores_the_trainer_it_changed_even_after_an_error(monkeypatch, request):
    """WORLD_SIZE=1 (`torchrun --nproc_per_node 1`): fastai attaches its trainer and leaves it there; the
    CPU path gives it the gloo-aware DataLoader for the fit, then takes it away, also when the fit fails."""
    from fastai.distributed import DistributedTrainer

    from accelerate.state import AcceleratorState

    from fastai_aum import distrib_ctx
    from fastai_aum.distributed import cpu_distributed_dl
    monkeypatch.setenv("WORLD_SIZE", "1")
    learn = _tiny_learner()
    request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))  # a process-wide singleton
    cbs = list(learn.cbs)
    with pytest.raises(KeyError, match="inside"):
        with distrib_ctx(learn, cpu=True):
            trainer = next(cb for cb in learn.cbs if isinstance(cb, DistributedTrainer))
            assert not trainer.sync_bn
            wrapped = trainer._wrap_dl(learn.dls.valid)
            assert type(wrapped) is cpu_distributed_dl() and wrapped.device == torch.device("cpu")
            raise KeyError("inside")
    assert "_wrap_dl" not in vars(trainer) and list(learn.cbs) == cbs


@pytest.mark.slow
def test_torchrun_global_fit_trains_otherwise_than_local(torchrun_fits):
    local, global_ = ([json.loads((torchrun_fits / f"{m}_rank0.json").read_text()) for m in ("local", "global")])
    # the same initial model and shuffles (tests/ddp_fit_script.py seeds both): another loss on the first batch
    assert abs(local["losses"][0] - global_["losses"][0]) > 1e-4


def test_the_package_works_without_accelerate_and_distrib_ctx_says_what_it_needs(tmp_path):
    code = """
import sys
sys.modules['accelerate'] = None  # as if it were not installed
import torch
from fastai_aum import AUMLossFlat, distrib_ctx
print(AUMLossFlat(distributed='global')(torch.tensor([0.5, -1.0]), torch.tensor([1, 0])).item())
from fastai.data.core import DataLoaders
from fastai.learner import Learner
try:
    with distrib_ctx(Learner(DataLoaders(), torch.nn.Linear(1, 1), loss_func=AUMLossFlat())):
        pass
except ImportError as e:
    print(e)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    value, message = done.stdout.strip().splitlines()[-2:]
    assert float(value) == 0.0
    assert message.startswith("distrib_ctx needs accelerate") and "pip install accelerate" in message
