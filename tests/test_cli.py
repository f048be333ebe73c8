"""The fastai-aum command: the bundled demo, a user's CSV, and one-line errors for bad arguments."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fastai_aum.compare.cli import main


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "compare" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_compare_writes_results(tmp_path, capsys):
    assert main(["compare", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 2 * 3 * 3 * 3  # seeds x losses x learning rates x epochs
    assert results["selected"].sum() == 2 * 3  # one epoch per loss and seed, at the loss's chosen learning rate
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "summary.csv", index_col="loss")
    assert list(summary.index) == ["aum", "ce", "weighted_ce"]
    assert "breast_cancer: 397 rows (benign 357, malignant 40); per seed 222 train, 75 validation, 100 test" in out
    assert "positives per seed: validation 8, test 10" in out
    assert "pooled 95% CI" in out and "verdict" in out and "  aum: " in out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["target"] == "label" and config["pos_label"] == "malignant"
    assert config["protocol"]["seeds"] == [0, 1] and config["protocol"]["split"] == "per_seed"
    assert "torch" in config["versions"] and len(config["columns"]["continuous"]) == 30


def _user_csv(path, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    n = 240
    y = rng.integers(0, n_classes, n)
    df = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], n), "size": rng.normal(size=n) + y,
                       "count": rng.integers(0, 3, n), "outcome": np.array(["no", "yes", "maybe"])[y]})
    df.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_recipes_on_the_command_line_are_compared_and_resumed(tmp_path, capsys):
    argv = ["compare", "--quick", "--lr", "0.01", "--losses", "ce, aum(margin=1.0), aum(last_layer_scale=0,ce_weight=0.5)",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0, capsys.readouterr().err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    hybrid = "aum(ce_weight=0.5,last_layer_scale=0)"  # canonical names: options in a fixed order, numbers as %g
    assert list(dict.fromkeys(results["loss"])) == ["ce", "aum(margin=1)", hybrid]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["protocol"]["losses"][hybrid] == {"loss": "aum", "last_layer_scale": 0.0, "ce_weight": 0.5}
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0  # the recipes' settings round-trip through config.json
    assert "resuming: 6 finished run(s)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_users_csv(tmp_path, capsys, n_classes):
    csv = _user_csv(tmp_path / "mine.csv", n_classes)
    code = main(["compare", "--data", str(csv), "--target", "outcome", "--quick", "--losses", "aum,ce", "--lr", "0.01",
                 "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["loss"]) == {"aum", "ce"}
    assert results["valid_auroc"].between(0, 1).all()


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.csv"], "no such file"),
    (["--data", "iris"], "--data must be one of"),
    (["--losses", "aum,hinge"], "unknown loss 'hinge'"),
    (["--losses", "aum,aum"], "--losses must be distinct"),
    (["--losses", "aum(margin=1),aum(margin=1.0)"], "--losses must be distinct, got aum(margin=1) twice"),
    (["--losses", "aum(),aum"], "--losses must be distinct, got aum twice"),
    (["--losses", "aum(margin=1,margin=2)"], "gives margin twice"),
    (["--losses", "aum(margin=-1)"], "the recipe 'aum(margin=-1)': `margin` must be a finite number >= 0, got -1.0"),
    (["--losses", "aum(margni=1)"], "expected option=value with an option among margin, ce_weight"),
    (["--losses", "aum(last_layer_scale=x)"], "last_layer_scale must be a number >= 0, got 'x'"),
    (["--losses", "ce(margin=1)"], "unknown loss 'ce(margin=1)'"),
    (["--pos-frac", "1.5"], "--pos-frac must be between 0 and 1"),
    (["--seeds", "0"], "at least 1"),
    (["--epochs", "three"], "invalid int value"),
    (["--quick", "--seeds", "4", "--epochs", "1"], "give either --quick or --seeds/--epochs"),
    (["--quick", "--seeds", "4"], "give either --quick or --seeds/--epochs"),
    (["--lr", "0"], "--lr 0: `lr` must be a positive finite number, got 0.0"),
    (["--lr", "-1"], "--lr -1: `lr` must be a positive finite number, got -1.0"),
    (["--lr", "nan"], "--lr nan: `lr` must be a positive finite number, got nan"),
    (["--lr", "0.01,inf"], "--lr 0.01,inf: `lr` must be a positive finite number, got inf"),
    (["--lr", "0.01,0.01"], "--lr 0.01,0.01: `lr` must hold distinct learning rates"),
    (["--lr", "fast"], "--lr must be positive finite numbers"),
    (["--bs", "100000"], "--bs 100000 is larger than the 222 training rows of each split"),
    (["--test-pct", "0.95"], "training rows"),
    (["--test-pct", "0.99"], "leaves class 'malignant' with no row in the training split"),
    (["--test-pct", "1"], "--test-pct must be between 0 and 1"),
    (["--resume", "--force"], "give one of them"),
])
def test_bad_arguments_fail_in_one_line(args, message, capsys, tmp_path):
    """Each of these used to train nonsense, train nothing, or end in a traceback."""
    assert main(["compare", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "results.csv").exists()


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastai-aum: error: ") and "Traceback" not in err, err
    assert len(err) <= 320
    return err


def test_out_is_checked_before_training(tmp_path, capsys):
    """An --out that is a file, or cannot be written, or holds earlier results, is refused before any training."""
    file = tmp_path / "a_file"
    file.write_text("x")
    assert "is a file; give a folder" in _one_line_error(["compare", "--out", str(file)], capsys)
    assert "cannot write to" in _one_line_error(["compare", "--out", str(file / "sub")], capsys)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "results.csv").write_text("loss,seed\n")
    err = _one_line_error(["compare", "--out", str(earlier)], capsys)
    assert "holds the results of an earlier comparison" in err and "--resume" in err and "--force" in err
    assert (earlier / "results.csv").read_text() == "loss,seed\n"  # not overwritten
    assert "holds results.csv from an older version" in _one_line_error(["compare", "--resume", "--out",
                                                                        str(earlier)], capsys)
    assert "has no compare.sqlite" in _one_line_error(["compare", "--resume", "--out", str(tmp_path / "new")], capsys)


def test_csv_needs_a_target_and_says_so_in_one_short_line(tmp_path, capsys):
    long = ["x" * 5000 + str(i) for i in range(20)]
    pd.DataFrame({name: [1.0, 2.0] for name in long}).to_csv(tmp_path / "wide.csv", index=False)
    err = _one_line_error(["compare", "--data", str(tmp_path / "wide.csv"), "--out", str(tmp_path / "o")], capsys)
    assert "--target is required for a CSV file" in err and "(20 in all)" in err
    csv = _user_csv(tmp_path / "mine.csv")
    assert "--target is required" in _one_line_error(["compare", "--data", str(csv), "--out", str(tmp_path / "o")],
                                                      capsys)


def test_csv_delimiter_and_unusable_columns(tmp_path, capsys):
    csv = _user_csv(tmp_path / "mine.csv")
    pd.read_csv(csv).to_csv(tmp_path / "semi.csv", sep=";", index=False)
    out = ["--out", str(tmp_path / "o")]
    err = _one_line_error(["compare", "--data", str(tmp_path / "semi.csv"), "--sep", ",", "--target", "outcome", *out],
                          capsys)
    assert "reads as 1 column with delimiter ','" in err and "--sep" in err
    err = _one_line_error(["compare", "--data", str(csv), "--target", "outcome", "--drop", "colour,size,count", *out],
                          capsys)
    assert "no usable feature column" in err
    assert "--drop: no column nope" in _one_line_error(["compare", "--data", str(csv), "--target", "outcome",
                                                       "--drop", "nope", *out], capsys)
    pd.DataFrame({"x": [1.0] * 8, "y": ["a", "b"] * 4}).to_csv(tmp_path / "flat.csv", index=False)
    assert "no usable feature column" in _one_line_error(["compare", "--data", str(tmp_path / "flat.csv"),
                                                         "--target", "y", *out], capsys)


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
    """`--pos-frac` subsamples the class `--pos-label` names, and the header says which class is positive."""
    assert main(["compare", "--quick", "--losses", "aum,ce", "--lr", "0.01", "--pos-label", "benign", "--pos-frac",
                 "0.2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # 212 malignant rows kept; benign subsampled to 20% of the rows: 53 of 265
    assert "breast_cancer: 265 rows (malignant 212, benign 53)" in out, out
    assert "positive class: benign" in out


def test_unknown_positive_class_is_a_one_line_error(tmp_path, capsys):
    assert main(["compare", "--pos-label", "cancer", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fastai-aum: error: --pos-label: no class 'cancer' in 'label'; its classes are benign, malignant"
    assert main(["compare", "--data", "wine", "--pos-label", "class_0", "--out", str(tmp_path)]) == 2
    assert "--pos-label and --pos-frac are for a binary target" in capsys.readouterr().err


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


def _messy_csv(path):
    """Semicolon-separated, with an id column, a row-number column, a missing target and an inf feature."""
    rng = np.random.default_rng(1)
    n = 200
    y = rng.random(n) < 0.3
    df = pd.DataFrame({"id": [f"row{i:04d}" for i in range(n)], "row_no": np.arange(n),
                       "size": rng.normal(size=n) + 1.5 * y, "weight": rng.normal(size=n),
                       "outcome": np.where(y, "yes", "no")})
    df.loc[3, "outcome"] = None
    df.loc[5, "size"] = np.inf
    df.to_csv(path, sep=";", index=False)
    return path


@pytest.mark.slow
def test_a_messy_csv_is_read_without_guessing(tmp_path, capsys):
    csv = _messy_csv(tmp_path / "messy.csv")
    out = tmp_path / "out"
    assert main(["compare", "--data", str(csv), "--target", "outcome", "--pos-label", "yes", "--drop", "id",
                 "--quick", "--losses", "aum,ce", "--lr", "0.01", "--out", str(out)]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "delimiter: ';'" in text
    assert "rows dropped: 1 (missing target), 1 (inf in size)" in text
    # an integer that differs in every row is an identifier: left out, with a note (it used to be a feature)
    assert "columns used: 2 continuous (size, weight); left out: id, row_no" in text
    assert "left out as identifiers (a different integer or text in every row): row_no" in text
    config = json.loads((out / "config.json").read_text())
    assert config["columns"]["dropped"] == ["id"] and config["delimiter"] == ";" and config["rows"] == 198
    assert config["columns"]["identifiers"] == ["row_no"]
    assert config["rows_dropped"] == {"missing target": 1, "inf in size": 1}
