"""benchmarks/bench_paper.py, the paper's linear-model protocol: its two set-ups, its gradient descent
against hand-written gradients, its selection against scikit-learn, and that the test split chooses nothing."""
import importlib.util
import io
import math
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fastai_aum.functional import aum

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_paper.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_paper", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_paper"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SMALL = "digits_1_vs_0_5pct"  # about 100 training rows


def test_split_is_stratified_thinned_and_new_per_seed(bench):
    a, b = bench.make_split(SMALL, 0), bench.make_split(SMALL, 1)
    n_neg = (a.y_train == 0).sum()
    assert a.y_train.sum() == max(1, round(0.05 / 0.95 * n_neg)) == 5
    assert 1 <= a.y_valid.sum() < (a.y_valid == 0).sum() / 10
    assert 0.4 < a.y_test.mean() < 0.6  # the test part keeps its natural share of 1s against 0s
    assert not np.array_equal(a.x_test, b.x_test)
    rows = {r.tobytes() for r in a.x_train} | {r.tobytes() for r in a.x_valid}
    assert not rows & {r.tobytes() for r in a.x_test}  # digits has no duplicate images: parts are disjoint
    again = bench.make_split(SMALL, 0)
    assert np.array_equal(again.x_train, a.x_train) and np.array_equal(again.y_valid, a.y_valid)


def test_paper_setup_is_raw_features_no_intercept_and_normal_init(bench):
    split = bench.make_split(SMALL, 3)
    prep = bench.set_up(split, "paper", 3)
    assert not prep.intercept and prep.x_train.shape[1] == prep.w0.shape[0] == 64
    assert torch.equal(prep.x_train, torch.from_numpy(split.x_train)) and prep.x_train.max() == 16
    assert torch.equal(prep.w0, torch.randn(64, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    assert abs(prep.w0.mean()) < 0.5 and 0.7 < prep.w0.std() < 1.3  # 64 draws of N(0, 1)
    assert not torch.equal(prep.w0, bench.set_up(split, "paper", 4).w0)


def test_standard_setup_standardises_with_training_statistics_and_starts_from_zero(bench):
    split = bench.make_split(SMALL, 3)
    prep = bench.set_up(split, "standard", 3)
    assert prep.intercept and prep.x_train.shape[1] == prep.w0.shape[0] == 65
    assert torch.equal(prep.w0, torch.zeros(65, dtype=torch.float64))
    for x in (prep.x_train, prep.x_valid, prep.x_test):
        assert torch.equal(x[:, -1], torch.ones(len(x), dtype=torch.float64))
    raw = split.x_train
    varying = raw.std(0) > 0
    assert 0 < varying.sum() < 64  # some border pixels are constant: they stay 0, not NaN
    np.testing.assert_allclose(prep.x_train[:, :-1].mean(0).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(prep.x_train[:, :-1].std(0).numpy()[varying], 1, rtol=1e-12)
    assert torch.isfinite(prep.x_test).all() and (prep.x_train[:, :-1][:, ~varying] == 0).all()
    sd = np.where(varying, raw.std(0, ddof=1), 1)
    np.testing.assert_allclose(prep.x_valid[:, :-1].numpy(), (split.x_valid - raw.mean(0)) / sd, atol=1e-12)
    with pytest.raises(ValueError, match="setup"):
        bench.set_up(split, "papers", 3)


def test_gradient_descent_takes_the_hand_written_logistic_and_aum_steps(bench):
    split = bench.make_split(SMALL, 0)
    prep = bench.set_up(split, "paper", 0)
    x, y, w0 = prep.x_train, torch.from_numpy(split.y_train).double(), prep.w0
    steps = (1e-3, 1e-1)
    path, alive = bench.gradient_descent("logistic", x, split.y_train, w0, steps, 2)
    assert path.shape == (3, 2, 64) and alive.all() and torch.equal(path[0, 1], w0)
    for g, step in enumerate(steps):
        w1 = w0 - step * x.T @ (torch.sigmoid(x @ w0) - y) / len(y)
        torch.testing.assert_close(path[1, g], w1)
        w2 = w1 - step * x.T @ (torch.sigmoid(x @ w1) - y) / len(y)
        torch.testing.assert_close(path[2, g], w2)
    n_pos = y.sum()
    weight = torch.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * (len(y) - n_pos)))
    path, _ = bench.gradient_descent("weighted_logistic", x, split.y_train, w0, steps, 1)
    torch.testing.assert_close(path[1, 0], w0 - 1e-3 * x.T @ (weight * (torch.sigmoid(x @ w0) - y)) / len(y))
    for normalize in ("count", "rate"):  # each step size's column is its own AUM, not a mean over columns
        path, _ = bench.gradient_descent(f"aum_{normalize}", x, split.y_train, w0, steps, 1)
        s = (x @ w0).requires_grad_()
        aum(s, y, normalize=normalize).backward()
        for g, step in enumerate(steps):
            torch.testing.assert_close(path[1, g], w0 - step * x.T @ s.grad)


def test_from_zero_weights_aums_path_is_the_same_for_every_step_size_up_to_scale(bench):
    # why validation's step-size ties go to the smallest step for AUM in the standard set-up (the docstring's claim)
    split = bench.make_split("digits_8_vs_rest_5pct", 0)
    prep = bench.set_up(split, "standard", 0)
    for loss, same in (("aum_rate", True), ("aum_count", True), ("logistic", False)):
        path, _ = bench.gradient_descent(loss, prep.x_train, split.y_train, prep.w0, (1e-2, 1.0), 5)
        assert torch.allclose(path[1, 1], 100 * path[1, 0])  # the first step is the same direction for every loss
        assert torch.allclose(path[5, 1], 100 * path[5, 0]) == same, loss


def test_from_zero_weights_every_losss_first_step_points_along_the_positives_mean(bench):
    # why the four standard runs on 1 against 0 are one model at iteration 1 (README)
    split = bench.make_split(SMALL, 0)
    prep = bench.set_up(split, "standard", 0)
    mean_pos = prep.x_train[torch.from_numpy(split.y_train) == 1, :-1].mean(0)
    for loss in bench.LOSSES:
        path, _ = bench.gradient_descent(loss, prep.x_train, split.y_train, prep.w0, (1.0,), 1)
        step = path[1, 0, :-1]  # the intercept does not rank
        assert torch.nn.functional.cosine_similarity(step, mean_pos, dim=0) > 1 - 1e-9, loss


def test_a_diverging_step_ends_its_run_and_is_never_chosen(bench):
    split = bench.make_split(SMALL, 0)
    prep = bench.set_up(split, "paper", 0)
    steps = (1e-2, 1e308)  # the second overflows to inf at once
    path, alive = bench.gradient_descent("logistic", prep.x_train, split.y_train, prep.w0, steps, 3)
    assert alive[:, 0].all() and alive[0, 1] and not alive[1:, 1].any()
    assert torch.isfinite(path).all()
    choice = bench.fit_and_select("logistic", prep.x_train, split.y_train, prep.x_valid, split.y_valid, prep.w0,
                                  steps, 3)
    assert choice.step == 1e-2 or choice.iteration == 0


def test_selection_is_the_first_maximum_of_scikit_learns_validation_auroc(bench):
    split = bench.make_split("digits_8_vs_rest_5pct", 2)
    prep = bench.set_up(split, "standard", 2)
    steps, iterations = (1e-3, 1e-1, 1.0), 6
    for loss in ("logistic", "aum_rate"):
        choice = bench.fit_and_select(loss, prep.x_train, split.y_train, prep.x_valid, split.y_valid, prep.w0,
                                      steps, iterations)
        path, _ = bench.gradient_descent(loss, prep.x_train, split.y_train, prep.w0, steps, iterations)
        oracle = [(roc_auc_score(split.y_valid, (prep.x_valid @ path[t, g]).numpy()), -t, -g)
                  for t in range(iterations + 1) for g in range(len(steps))]
        best, t, g = max(oracle)
        assert math.isclose(choice.valid_auroc, best, rel_tol=1e-12)
        assert (choice.iteration, choice.step) == (-t, steps[-g])
        assert torch.equal(choice.weights, path[-t, -g])


def test_test_auroc_is_scikit_learns_and_the_test_split_chooses_nothing(bench):
    split = bench.make_split(SMALL, 1)
    rows, scores = bench.run_seed(SMALL, 1, steps=(1e-2, 1.0), iterations=8, split=split)
    assert len(rows) == len(bench.LOSSES) * len(bench.SETUPS) == len(scores)
    for row in rows:
        oracle = roc_auc_score(split.y_test, scores[row["loss"], row["setup"]].numpy())
        assert math.isclose(row["test_auroc"], oracle, rel_tol=1e-12), row
    baseline = next(r for r in rows if (r["loss"], r["setup"]) == ("logistic", "standard"))
    assert baseline["test_pos"] == split.y_test.sum() and 0.5 < baseline["test_auroc"] <= 1
    # the same seed with another test split: features from another seed, labels reversed
    other = bench.make_split("digits_8_vs_rest_5pct", 7)
    poisoned = bench.Split(split.x_train, split.y_train, split.x_valid, split.y_valid,
                           other.x_test[:50], 1 - other.y_test[:50])
    rows2, _ = bench.run_seed(SMALL, 1, steps=(1e-2, 1.0), iterations=8, split=poisoned)
    keys = ("loss", "setup", "step", "iteration", "valid_auroc")
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in rows2]
    assert [r["test_auroc"] for r in rows] != [r["test_auroc"] for r in rows2]


def test_quick_mode_prints_one_row_per_run_with_the_standard_logistic_baseline(bench):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        results = bench.main(["--quick", "--settings", SMALL, "digits_8_vs_rest_1pct", "--iterations", "20"])
    text = out.getvalue()
    assert len(results) == 2 * 2 * 8 and set(results["seed"]) == {0, 1}
    rows = [line for line in text.splitlines() if line.startswith("| digits_")]
    assert len(rows) == 2 * 8 and sum("| baseline |" in line for line in rows) == 2 * 2
    assert all(line.count("|") == 12 for line in rows)
    first = results[(results["setting"] == SMALL) & (results["seed"] == 0)]
    base = first[(first["loss"] == "logistic") & (first["setup"] == "standard")]["test_auroc"].item()
    assert f"| {SMALL} | logistic | standard | " in text and 0.5 < base <= 1
    assert "s CPU" in text and "digits_8_vs_rest_1pct:" in err.getvalue()
    with pytest.raises(SystemExit), redirect_stderr(io.StringIO()):
        bench.main(["--quick", "--seeds", "0"])
