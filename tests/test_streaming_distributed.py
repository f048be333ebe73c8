"""The streaming AUROC across two CPU processes (gloo): `AUROCCallback(bins=...)` through fastai's gather
path (`DistributedDL`, `Learner.to_detach`) counts every validation row once, and
`AUROCHistogram.all_reduce` sums per-process histograms; both equal the one-process histogram."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow

N_VALID, WORLD, BINS = 101, 2, 2 ** 12  # an odd number of rows, so that DistributedDL pads one rank


def _data():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(N_VALID, generator=g) < 0.3).long()
    x = torch.randn(N_VALID, 1, generator=g) + y[:, None]
    return x, y


def _worker(rank, rendezvous, out):
    warnings.simplefilter("ignore")
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai_aum.distributed import cpu_distributed_dl
    from fastai.learner import Learner

    from fastai_aum import AUMLossFlat, AUROCCallback
    from fastai_aum.functional import AUROCHistogram

    CPUDistributedDL = cpu_distributed_dl()  # fastai's DistributedDL, its index broadcast on gloo

    x, y = _data()
    dl = TfmdDL([(x[i], y[i]) for i in range(N_VALID)], bs=8, shuffle=False, num_workers=0)
    model = torch.nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-0.5], [0.5]]))
        model.bias.zero_()
    learn = Learner(DataLoaders(dl, dl), model, loss_func=AUMLossFlat(), cbs=AUROCCallback(bins=BINS))
    with learn.no_logging():
        learn.validate(dl=CPUDistributedDL(dl, rank=rank, world_size=WORLD))
    hist = AUROCHistogram(BINS)
    shard = torch.arange(rank, N_VALID, WORLD)  # each process counts its own rows, then the counts are summed
    hist.update(x[shard, 0], y[shard])
    hist.all_reduce()
    torch.save({"value": learn.auroc.value, "bound": learn.auroc.bound, "counts": learn.auroc.metric.hist.counts,
                "reduced": hist.counts}, os.path.join(out, f"stream{rank}.pt"))
    dist.destroy_process_group()


def test_streaming_auroc_across_two_processes_equals_one_process(tmp_path):
    from fastai_aum.functional import AUROCHistogram
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    x, y = _data()
    one = AUROCHistogram(BINS)
    one.update(x[:, 0], y)  # the model scores z1 - z0 = x
    value, bound = one.compute()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"stream{rank}.pt")
        assert torch.equal(got["counts"], one.counts)  # every row once: the padded duplicate was dropped
        assert torch.equal(got["reduced"], one.counts)
        assert (got["value"], got["bound"]) == (value.item(), bound.item())
        assert abs(got["value"] - roc_auc_score(y.numpy(), x[:, 0].numpy())) <= got["bound"] + 1e-15
