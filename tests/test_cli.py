"""The fastai-aum command: the bundled demo, a user's CSV, and one-line errors for bad arguments."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fastai_aum.cli import main


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "compare" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_compare_writes_results(tmp_path, capsys):
    assert main(["compare", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 2 * 3 * 3  # seeds x losses x epochs
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "summary.csv", index_col="loss")
    assert list(summary.index) == ["aum", "ce", "weighted_ce"]
    assert "wins vs ce" in out and "breast_cancer: 397 rows (benign 357, malignant 40)" in out


def _user_csv(path, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    n = 240
    y = rng.integers(0, n_classes, n)
    df = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], n), "size": rng.normal(size=n) + y,
                       "count": rng.integers(0, 3, n), "outcome": np.array(["no", "yes", "maybe"])[y]})
    df.to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_users_csv(tmp_path, capsys, n_classes):
    csv = _user_csv(tmp_path / "mine.csv", n_classes)
    code = main(["compare", "--data", str(csv), "--target", "outcome", "--quick", "--losses", "aum,ce",
                 "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["loss"]) == {"aum", "ce"}
    assert results["valid_auroc"].between(0, 1).all()


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.csv"], "no such file"),
    (["--data", "iris"], "--data must be one of"),
    (["--losses", "aum,hinge"], "unknown loss hinge"),
    (["--pos-frac", "1.5"], "--pos-frac must be between 0 and 1"),
    (["--seeds", "0"], "at least 1"),
    (["--epochs", "three"], "invalid int value"),
])
def test_bad_arguments_fail_in_one_line(args, message, capsys):
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_csv_errors(tmp_path, capsys):
    csv = _user_csv(tmp_path / "mine.csv")
    assert main(["compare", "--data", str(csv), "--target", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]}).to_csv(tmp_path / "one.csv", index=False)
    assert main(["compare", "--data", str(tmp_path / "one.csv"), "--target", "y"]) == 2
    assert "has 1 class(es)" in capsys.readouterr().err


def test_module_entry_point_exits_non_zero_without_traceback():
    run = subprocess.run([sys.executable, "-m", "fastai_aum", "compare", "--data", "nowhere.csv"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "fastai-aum: error: --data: no such file: nowhere.csv"
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_positive_class_by_name_is_subsampled_and_announced(tmp_path, capsys):
    """`--pos-frac` subsamples the class `--positive` names, and the header says which class is positive."""
    assert main(["compare", "--quick", "--losses", "aum,ce", "--positive", "benign", "--pos-frac", "0.2",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # 212 malignant rows kept; benign subsampled to 20% of the rows: 53 of 265
    assert "breast_cancer: 265 rows (malignant 212, benign 53)" in out, out
    assert "positive class: benign" in out


def test_unknown_positive_class_is_a_one_line_error(tmp_path, capsys):
    assert main(["compare", "--positive", "cancer", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fastai-aum: error: --positive: no class 'cancer' in 'label'; its classes are benign, malignant"
    assert main(["compare", "--data", "wine", "--positive", "class_0", "--out", str(tmp_path)]) == 2
    assert "--positive and --pos-frac are for a binary target" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["compare", "--quick", "--losses", "aum,ce"]])
def test_the_command_prints_no_warning_the_user_cannot_act_on(args, tmp_path):
    """fastai's import-time FutureWarning (torch.jit.script) and its tabular UserWarning (non-writable
    NumPy array) are filtered in the command's own process; importing the package filters nothing."""
    out = ["--out", str(tmp_path / "out")] if args[0] == "compare" else []
    run = subprocess.run([sys.executable, "-m", "fastai_aum", *args, *out], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    text = run.stdout + run.stderr
    assert "Warning" not in text and "warnings.warn" not in text, text


def test_importing_the_package_filters_no_warning():
    code = ("import warnings, fastai_aum; from fastai_aum import aum_learner; "
            "print(any(f[1] is not None and any(s in f[1].pattern for s in ('jit\\\\.script', 'not writable')) "
            "for f in warnings.filters))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stdout + run.stderr
    assert "torch.jit.script" in run.stderr  # fastai's own notice still reaches a library user
