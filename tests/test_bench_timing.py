"""The benchmarks' shared timing: trials of round-robin rounds, spreads and per-trial ratios (no timing asserted)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _timing import Trials, fmt, fmt_ratio, measure  # noqa: E402


def test_measure_runs_every_contender_once_per_round_after_one_warm_up():
    calls = {"a": 0, "b": 0}
    order = []

    def make(name):
        def run():
            calls[name] += 1
            order.append(name)
        return run

    t = measure({"a": make("a"), "b": make("b")}, reps=5, trials=3)
    assert calls == {"a": 1 + 15, "b": 1 + 15}
    rounds = [order[i:i + 2] for i in range(2, len(order), 2)]
    assert all(sorted(r) == ["a", "b"] for r in rounds)  # round robin
    assert len({tuple(r) for r in rounds}) == 2  # in a random order, not always the same one
    assert set(t) == {"a", "b"} and all(len(v) == 3 and min(v) >= 0 for v in t.values())


def test_spreads_and_ratios_are_median_min_max_within_trials():
    t = Trials(ours=[1.0, 2.0, 4.0], peer=[3.0, 2.0, 16.0])
    assert t.ratio("peer", "ours") == [3.0, 1.0, 4.0]
    assert fmt_ratio(t.ratio("peer", "ours")) == "3.00 [1.00, 4.00]"
    assert fmt([0.001, 0.003, 0.002]) == "2 [1, 3]"
    assert fmt([1e-6, 3e-6, 2e-6], unit=1e6, digits=".0f") == "2 [1, 3]"
    with pytest.raises(ZeroDivisionError):
        Trials(a=[1.0], b=[0.0]).ratio("a", "b")
