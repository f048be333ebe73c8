"""The timing shared by the benchmarks: contenders round-robin in one process, several trials, each
reported as the median with [min, max] over the trials (each trial's figure is the median of its rounds), each
round timing a block of consecutive calls per contender."""
from __future__ import annotations

import math
import random
import statistics
import time
from typing import Callable

import torch

__all__ = ["Trials", "calls_per_block", "measure", "fmt", "fmt_ratio", "threads_note"]


class Trials(dict):
    """Contender name -> the per-trial median seconds (one per trial)."""

    def ratio(self, num: str, den: str) -> list[float]:
        """`num / den` within each trial (they ran interleaved), one per trial."""
        return [a / b for a, b in zip(self[num], self[den])]


def _timer(device: torch.device) -> Callable[[Callable[[], object], int], float]:
    cuda = device.type == "cuda"

    def run(fn, number: int = 1):
        """Seconds per call, over `number` consecutive calls."""
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / number
    return run


BLOCK_SECONDS = 2e-3  # a timed block lasts at least this long: a single call of a few us is mostly timer and cold cache


def calls_per_block(seconds_per_call: float, block: float = BLOCK_SECONDS, most: int = 1000) -> int:
    """How many consecutive calls make one timed block (timeit's `number`): 1 for calls of `block` or more."""
    return max(1, min(most, math.ceil(block / max(seconds_per_call, 1e-9))))


def measure(contenders: dict[str, Callable[[], object]], reps: int, trials: int = 3,
            device: torch.device | str = "cpu", seed: int = 0, number: int | None = None) -> Trials:
    """Each contender's median seconds per call in each of `trials` trials of `reps` rounds; in every round
    each contender runs one timed block, in a new random order, so that drift and neighbours hit them all
    alike. A block is `number` consecutive calls (by default as many as last `BLOCK_SECONDS`, from a second
    untimed call; 1 for slow calls), as timeit does, so that calls of microseconds are not timed one by one
    from a cold cache. One warm-up call each first (first-use costs: imports, allocator, caches)."""
    run, rng = _timer(torch.device(device)), random.Random(seed)
    numbers = {}
    for name, fn in contenders.items():
        fn()
        numbers[name] = number or calls_per_block(run(fn))
    out = Trials({name: [] for name in contenders})
    names = list(contenders)
    for _ in range(trials):
        times = {name: [] for name in contenders}
        for _ in range(reps):
            rng.shuffle(names)
            for name in names:
                times[name].append(run(contenders[name], numbers[name]))
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
            f"each trial the median of {rounds} rounds with the contenders round-robin in random order; a round "
            f"times each contender over consecutive calls lasting at least {BLOCK_SECONDS * 1e3:g} ms (per call)")
