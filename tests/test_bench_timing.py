"""The benchmarks' shared timing: trials of round-robin rounds, spreads and per-trial ratios (no timing asserted)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _timing import Trials, calls_per_block, fmt, fmt_ratio, measure  # noqa: E402


def test_measure_runs_every_contender_once_per_round_after_one_warm_up():
    calls = {"a": 0, "b": 0}
    order = []

    def make(name):
        def run():
            calls[name] += 1
            order.append(name)
        return run

    t = measure({"a": make("a"), "b": make("b")}, reps=5, trials=3, number=1)
    assert calls == {"a": 1 + 15, "b": 1 + 15}  # a warm-up, then 5 rounds x 3 trials (`number` given: no calibration)
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


def test_a_round_times_a_block_of_consecutive_calls_and_reports_seconds_per_call():
    calls = []
    t = measure({"fast": lambda: calls.append("fast"), "slow": lambda: (calls.append("slow"), time.sleep(0.003))},
                reps=2, trials=1)
    assert calls.count("slow") == 1 + 1 + 2  # a call of 3 ms is a block by itself
    assert calls.count("fast") > 100  # one timed call of a lambda would be mostly timer
    after = calls[4:]  # past the warm-ups and calibrations: the fast calls come in blocks, not interleaved
    runs = [name for i, name in enumerate(after) if i == 0 or after[i - 1] != name]
    assert len(runs) == 4  # 2 rounds x 2 contenders
    assert t["slow"][0] >= 0.003 and t["fast"][0] < 0.003
    assert calls_per_block(0.01) == 1 and calls_per_block(1e-4, block=2e-3) == 20 and calls_per_block(0.0) == 1000


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_the_fewest_ops_floor_is_an_exact_auroc(decimals):
    from sklearn.metrics import roc_auc_score
    import torch
    from bench_functional import binary_data, fewest_ops_auroc
    s, y = binary_data(3000, torch.device("cpu"), seed=3, decimals=decimals)
    assert abs(fewest_ops_auroc(s, y).item() - roc_auc_score(y.numpy(), s.numpy())) < 1e-12
