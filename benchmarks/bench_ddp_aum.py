"""Local against global AUM under DDP: how far the local update is from the global-batch gradient, and what
gathering costs.

    python benchmarks/bench_ddp_aum.py            # 200 batches per cell, 5 timing trials
    python benchmarks/bench_ddp_aum.py --quick
    python benchmarks/bench_ddp_aum.py --cost-only  # the step times alone

Agreement (exact, in one process): a generated tabular problem (10 features, 10% or 30% positives), an MLP
at its seeded initialisation and after one epoch of training. Each global batch of size B is split into W
rank shards, as DistributedDL splits it; 'local' is what DDP applies by default (the mean of the ranks'
gradients of their own AUM), 'global' the gradient of the AUM of the whole batch (what
`AUMLossFlat(distributed='global')` makes DDP apply, tests/test_distributed.py). Reported: the cosine of
local to global (mean and worst), and how many rank shards and global batches had one class.

Cost (real, two gloo processes on this CPU): a DDP training step (forward, backward, SGD) with 'local' and
with 'global', round robin, median [min, max] milliseconds per step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastai_aum import AUMLossFlat


def problem(n: int, rate: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < rate).long()
    return torch.randn(n, 10, generator=g) + 0.5 * y[:, None], y


def mlp(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def grad(model, x, y) -> torch.Tensor:
    model.zero_grad()
    AUMLossFlat()(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def one_class(y) -> bool:
    return bool(y.min() == y.max())


def agreement(model, x, y, batch: int, world: int, batches: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    cosines, shard_one, batch_one, shards = [], 0, 0, 0
    for _ in range(batches):
        idx = torch.randperm(len(y), generator=g)[:batch]
        glob = grad(model, x[idx], y[idx])
        parts = idx.chunk(world)
        local = sum(grad(model, x[p], y[p]) for p in parts) / world
        batch_one += one_class(y[idx])
        shard_one += sum(one_class(y[p]) for p in parts)
        shards += len(parts)
        if glob.norm() > 0:
            denom = (local.norm() * glob.norm()).clamp_min(1e-30)
            cosines.append(float(local @ glob / denom))
    return statistics.mean(cosines), min(cosines), shard_one, shards, batch_one, batches


def train_one_epoch(model, x, y, bs: int = 128):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(1)).split(bs):
        opt.zero_grad()
        AUMLossFlat()(model(x[idx]), y[idx]).backward()
        opt.step()
    return model


def _timing_worker(rank, world, rendezvous, per_rank_sizes, steps, trials, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    x, y = problem(max(per_rank_sizes) * world * 4, 0.1, seed=rank)
    results = {}
    for bs in per_rank_sizes:
        model = torch.nn.parallel.DistributedDataParallel(mlp())
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        losses = {"local": AUMLossFlat(), "global": AUMLossFlat(distributed="global")}
        times = {k: [] for k in losses}
        for trial in range(trials + 1):  # the first round warms up
            for name, loss in losses.items():
                dist.barrier()
                start = time.perf_counter()
                for step in range(steps):
                    i = (step * bs) % (len(y) - bs)
                    opt.zero_grad()
                    loss(model(x[i:i + bs]), y[i:i + bs]).backward()
                    opt.step()
                if trial:
                    times[name].append((time.perf_counter() - start) / steps * 1e3)
        results[bs] = times
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cost-only", action="store_true")
    args = parser.parse_args()
    batches, trials, steps = (50, 3, 20) if args.quick else (200, 5, 50)
    if not args.cost_only:
        print_agreement(batches)
    print_cost(trials, steps)


def print_agreement(batches: int):
    print("| positives | model | world | global batch | cosine mean | cosine worst | one-class rank shards |"
          " one-class global batches |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for rate in (0.1, 0.3):
        x, y = problem(20000, rate)
        for state, model in (("init", mlp()), ("1 epoch", train_one_epoch(mlp(), x, y))):
            for world in (2, 4):
                for batch in (32, 128, 512):
                    mean, worst, s1, s, b1, b = agreement(model, x, y, batch, world, batches, seed=batch + world)
                    print(f"| {rate:.0%} | {state} | {world} | {batch} | {mean:.3f} | {worst:.3f} | {s1}/{s} | {b1}/{b} |")


def print_cost(trials: int, steps: int):
    sizes = (64, 256)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.pt")
        mp.spawn(_timing_worker, args=(2, os.path.join(tmp, "rdv"), sizes, steps, trials, out), nprocs=2, join=True)
        times = torch.load(out)
    print("\n| per-rank batch | local ms/step | global ms/step |")
    print("| --- | --- | --- |")
    for bs in sizes:
        cells = [f"{statistics.median(t):.2f} [{min(t):.2f}, {max(t):.2f}]" for t in times[bs].values()]
        print(f"| {bs} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
