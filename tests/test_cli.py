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


# The CSV reader never changes the problem silently (issue 19, items 6 and 7).

def _load(path, *extra, error=True):
    """`load_data` for `compare --data path --target y *extra`: its result, or its error message."""
    from fastai_aum.compare.cli import UsageError, _parser
    from fastai_aum.compare.data import load_data
    args = _parser().parse_args(["compare", "--data", str(path), "--target", "y", *extra])
    try:
        return load_data(args, UsageError)
    except UsageError as e:
        if not error:
            raise
        return str(e)


def _frame(n=60, seed=0, **columns):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), **columns, "y": np.array(["no", "yes"])[np.arange(n) % 2]})


def test_duplicated_headers_are_an_error_that_names_them(tmp_path):
    """They became `y.1`: a copy of the label used as a feature."""
    path = tmp_path / "dup.csv"
    df = _frame()
    df.insert(1, "z", df["y"])
    df.to_csv(path, index=False)
    path.write_text(path.read_text().replace("x,z,y", "x,y,y", 1))
    assert _load(path) == "--data: dup.csv names more than one column y; give each column its own name"


def test_target_values_are_stripped_of_surrounding_spaces_with_a_note(tmp_path):
    """'yes ' and ' yes' were extra classes: a binary problem became 4 classes."""
    df = _frame()
    df["y"] = [v + " " if i % 4 == 1 else " " + v if i % 4 == 3 else v for i, v in enumerate(df["y"])]
    df.to_csv(tmp_path / "t.csv", index=False)
    data = _load(tmp_path / "t.csv", error=False)
    assert data["classes"] == ["no", "yes"] and data["pos_label"] == "yes"
    assert "target: surrounding spaces stripped from 30 value(s) of 'y'" in data["notes"]


def test_a_stray_string_in_a_numeric_column_is_an_error_with_two_ways_out(tmp_path):
    """One stray string made a numeric column categorical."""
    df = _frame(z=np.arange(60) / 7.0)
    df["z"] = df["z"].astype(object)
    df.loc[4, "z"] = "n/a?"
    df.to_csv(tmp_path / "s.csv", index=False)
    err = _load(tmp_path / "s.csv")
    assert err.startswith("column 'z' holds numbers but for n/a?; name it in --cont-names") and "--cat-names" in err
    data = _load(tmp_path / "s.csv", "--cont-names", "z", error=False)
    assert "z" in data["columns"]["continuous"] and data["df"]["z"].isna().sum() == 1
    assert data["df"]["z"].drop(index=4).tolist() == pytest.approx([v / 7.0 for v in range(60) if v != 4])
    assert "--cont-names: 1 value(s) of 'z' are not numbers; they are missing" in data["notes"]
    assert "z" in _load(tmp_path / "s.csv", "--cat-names", "z", error=False)["columns"]["categorical"]


def test_decimal_commas_are_detected_with_the_delimiter(tmp_path):
    df = _frame()
    text = df.to_csv(sep=";", index=False, float_format="%.6f").replace(".", ",")
    (tmp_path / "d.csv").write_text(text)
    data = _load(tmp_path / "d.csv", error=False)
    assert "delimiter: ';', decimal comma" in data["notes"] and data["columns"]["continuous"] == ["x"]
    assert data["df"]["x"].to_numpy() == pytest.approx(df["x"].to_numpy(), abs=1e-6)


def test_the_integer_rule_is_announced_and_overridable(tmp_path):
    """Integer columns with at most 10 values were categorical by an undocumented rule, with no way out."""
    _frame(k=np.arange(60) % 3).to_csv(tmp_path / "k.csv", index=False)
    data = _load(tmp_path / "k.csv", error=False)
    assert data["columns"]["categorical"] == ["k"]
    assert any(n.startswith("categorical by the rule for integer columns with at most 10 values: k") for n in
               data["notes"])
    data = _load(tmp_path / "k.csv", "--cont-names", "k", error=False)
    assert data["columns"] == {"continuous": ["x", "k"], "categorical": [], "dropped": [], "identifiers": [],
                               "constant": []}
    assert "--cont-names and --cat-names" not in _load(tmp_path / "k.csv", "--cont-names", "k", "--cat-names", "k")


def test_identifier_columns_are_left_out_unless_named(tmp_path):
    """An id column was warned about but still used."""
    _frame(id=[f"r{i}" for i in range(60)], num=np.arange(60) * 3).to_csv(tmp_path / "i.csv", index=False)
    data = _load(tmp_path / "i.csv", error=False)
    assert data["columns"]["identifiers"] == ["id", "num"] and data["columns"]["continuous"] == ["x"]
    assert "columns used: 1 continuous (x); left out: id, num" in data["notes"]
    data = _load(tmp_path / "i.csv", "--cont-names", "num", error=False)
    assert data["columns"]["identifiers"] == ["id"] and data["columns"]["continuous"] == ["x", "num"]


def test_a_changed_row_changes_the_fingerprint(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "a.csv", index=False)
    df.loc[7, "x"] += 1e-9
    df.to_csv(tmp_path / "b.csv", index=False)
    a, b = (_load(tmp_path / f"{n}.csv", error=False)["fingerprint"] for n in "ab")
    assert a != b and a == _load(tmp_path / "a.csv", error=False)["fingerprint"]


@pytest.mark.parametrize("loss, n_out", [("aum", 1), ("ce", 2), ("weighted_ce", 2)])
def test_columns_named_like_fastai_attributes_work(loss, n_out):
    """`dls.c` resolved to a categorical column named `c` through fastai's attribute delegation."""
    import warnings
    from fastai_aum import aum_learner
    from fastai_aum.datasets import tabular_dls
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"c": rng.choice(["1,5", "2,5", "3"], 80), "vocab": rng.choice(["a", "b"], 80),
                       "loss_func": rng.normal(size=80), "y": np.array(["no", "yes"])[np.arange(80) % 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = tabular_dls(df, label="y", bs=16, cat_names=["c", "vocab"], cont_names=["loss_func"])
        learn = aum_learner(dls, loss=loss, layers=[8])
        out = learn.model(*dls.one_batch()[:2])
    assert out.shape == (16, n_out)


@pytest.mark.slow
def test_the_command_takes_columns_named_like_fastai_attributes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.random(160) < 0.3
    df = pd.DataFrame({"c": np.where(rng.random(160) < 0.5, "1,5", "2,5"), "vocab": rng.normal(size=160) + y,
                       "loss_func": rng.normal(size=160), "y": np.where(y, "yes", "no")})
    df.to_csv(tmp_path / "attr.csv", index=False)
    assert main(["compare", "--data", str(tmp_path / "attr.csv"), "--target", "y", "--losses", "aum,ce,weighted_ce",
                 "--seeds", "1", "--epochs", "1", "--lr", "0.01", "--out", str(tmp_path / "out")]) == 0, \
        capsys.readouterr().err
    assert "1 categorical (c)" in capsys.readouterr().out
