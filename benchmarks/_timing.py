"""The timing shared by the benchmarks: contenders round-robin in one process, several trials, each
reported as the median with [min, max] over the trials (each trial's figure is the median of its rounds)."""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable

import torch

__all__ = ["Trials", "measure", "fmt", "fmt_ratio", "threads_note"]


class Trials(dict):
    """Contender name -> the per-trial median seconds (one per trial)."""

    def ratio(self, num: str, den: str) -> list[float]:
        """`num / den` within each trial (they ran interleaved), one per trial."""
        return [a / b for a, b in zip(self[num], self[den])]


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    cuda = device.type == "cuda"

    def run(fn):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0
    return run


def measure(contenders: dict[str, Callable[[], object]], reps: int, trials: int = 3,
            device: torch.device | str = "cpu", seed: int = 0) -> Trials:
    """Each contender's median seconds in each of `trials` trials of `reps` rounds; in every round each
    contender runs once, in a new random order, so that drift and neighbours hit them all alike. One
    warm-up call each first (first-use costs: imports, allocator, caches)."""
    run, rng = _timer(torch.device(device)), random.Random(seed)
    for fn in contenders.values():
        fn()
    out = Trials({name: [] for name in contenders})
    names = list(contenders)
    for _ in range(trials):
        times = {name: [] for name in contenders}
        for _ in range(reps):
            rng.shuffle(names)
            for name in names:
                times[name].append(run(contenders[name]))
        for name, ts in times.items():
            out[name].append(statistics.median(ts))
    return out


def _spread(values: list[float], digits: str) -> str:
    mid, lo, hi = statistics.median(values), min(values), max(values)
    return f"{mid:{digits}} [{lo:{digits}}, {hi:{digits}}]"


def fmt(seconds: list[float], unit: float = 1e3, digits: str = ".3g") -> str:
    """Median [min, max] of per-trial times, in ms by default (`unit=1e6` for us)."""
    return _spread([s * unit for s in seconds], digits)


def fmt_ratio(ratios: list[float], digits: str = ".2f") -> str:
    """Median [min, max] of per-trial ratios."""
    return _spread(ratios, digits)


def threads_note(rounds, trials: int) -> str:
    """What every table states: its torch thread count and how its cells were measured."""
    return (f"torch threads: {torch.get_num_threads()}; each cell is the median [min, max] over {trials} trials, "
            f"each trial the median of {rounds} rounds with the contenders round-robin in random order")
