"""The comparison's store: exact round trips, one transaction per run, keys that refuse a duplicate, a lock
that refuses a second process, and an earlier store moved aside, not deleted."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fastai_aum.compare import store as store_module
from fastai_aum.compare.store import RESULT_COLUMNS, Store, StoreError


def _run(loss="aum", seed=0, lr=0.01, epochs=3, n=7, n_classes=2, rng=None):
    """One run's rows and scores, as `compare_losses` hands them to `on_run` (NaN off the chosen epoch)."""
    rng = rng or np.random.default_rng(seed)
    best = int(rng.integers(epochs))
    recipe = "" if loss != "m" else "aum(margin=1)"
    rows = pd.DataFrame([{"loss": loss, "seed": seed, "epoch": e, "lr": lr, "recipe": recipe,
                          "train_loss": rng.random(), "valid_loss": rng.random() if e else np.nan,
                          "valid_auroc": rng.random(), "selected": e == best, "run_best": e == best, "best_ties": 2,
                          "valid_positives": 8, **{k: (rng.random() if e == best else np.nan) for k in
                                                   ("test_auroc", "test_auroc_low", "test_auroc_high", "test_auroc_se",
                                                    "test_ap")},
                          "test_positives": 10 if e == best else np.nan} for e in range(epochs)])
    target = rng.integers(0, n_classes, n)
    frame = ({"score": rng.normal(size=n)} if n_classes == 2 else
             {f"score_{k}": rng.normal(size=n) for k in range(n_classes)})
    scores = pd.DataFrame({"loss": loss, "seed": seed, "lr": lr, "row": np.arange(n), "target": target, **frame})
    return rows, scores


@pytest.mark.parametrize("n_classes", [2, 3])
def test_runs_round_trip_exactly_in_the_order_asked(tmp_path, n_classes):
    s = Store.open(tmp_path)
    runs = [_run(loss, seed, lr, n_classes=n_classes)
            for seed in (0, 1) for lr in (0.003, 0.01) for loss in ("aum", "m")]
    for rows, scores in reversed(runs):  # the store's order is the plan's, not the order runs finished in
        s.add_run(rows, scores)
    keys = [(r["loss"].iloc[0], int(r["seed"].iloc[0]), float(r["lr"].iloc[0])) for r, _ in runs]
    results, scores = s.frames(keys)
    expected = pd.concat([r for r, _ in runs], ignore_index=True)
    assert list(results.columns) == list(RESULT_COLUMNS)
    pd.testing.assert_frame_equal(results, expected)
    pd.testing.assert_frame_equal(scores, pd.concat([sc for _, sc in runs], ignore_index=True))
    assert results.to_csv(index=False) == expected.to_csv(index=False)  # the bytes users read
    subset, _ = s.frames(keys[:2] + [("ce", 9, 0.5)])  # an unfinished key is left out
    assert len(subset) == 2 * 3
    s.close()


def test_a_run_is_written_once_or_not_at_all(tmp_path, monkeypatch):
    s = Store.open(tmp_path)
    s.add_run(*_run("aum", 0))
    with pytest.raises(sqlite3.IntegrityError):  # the key (loss, seed, lr) is primary: no run twice
        s.add_run(*_run("aum", 0))
    original = store_module._score_rows

    def full_disk(scores):
        for i, row in enumerate(original(scores)):
            if i == 3:
                raise OSError(28, "No space left on device")
            yield row

    monkeypatch.setattr(store_module, "_score_rows", full_disk)
    with pytest.raises(OSError, match="No space"):
        s.add_run(*_run("ce", 0))  # its run and epoch rows were inserted before the scores failed
    assert s.keys() == [("aum", 0, 0.01)]
    counts = [s.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "epochs", "scores")]
    assert counts == [1, 3, 7]  # exactly the first run: nothing of the failed one
    monkeypatch.undo()
    s.add_run(*_run("ce", 0))  # and the store takes it again afterwards
    assert len(s.keys()) == 2
    s.close()


def test_meta_round_trips(tmp_path):
    s = Store.open(tmp_path)
    assert s.get("identity") is None
    s.put("identity", {"protocol": {"lr": [0.01]}, "fingerprint": "ab"})
    s.close()
    s = Store.open(tmp_path)
    assert s.get("identity") == {"protocol": {"lr": [0.01]}, "fingerprint": "ab"} and s.get("schema") == 1
    s.close()


def test_a_second_process_is_refused_while_one_holds_the_store(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fastai_aum.compare.store import Store; "
                               f"s = Store.open({str(tmp_path)!r}); print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="another fastai-aum compare is writing to"):
            Store.open(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    Store.open(tmp_path).close()  # the lock went with the killed process


def test_replace_moves_the_earlier_store_aside(tmp_path):
    s = Store.open(tmp_path)
    s.add_run(*_run())
    s.close()
    (tmp_path / "report.txt").write_text("old")
    s = Store.open(tmp_path, replace=("report.txt", "summary.csv"))
    assert s.keys() == [] and s.replaced.name.startswith("replaced-")
    assert (s.replaced / "report.txt").read_text() == "old" and not (tmp_path / "report.txt").exists()
    s.close()
    old = Store.open(s.replaced)
    assert old.keys() == [("aum", 0, 0.01)]
    old.close()


# The command on the store: every numbered failure of issue 19 that concerns results, reproduced first.

SMALL = ["--losses", "aum,ce", "--seeds", "2", "--epochs", "2", "--lr", "0.01"]
EXPORTED = ("results.csv", "scores.csv", "summary.csv", "report.txt")


def _main(argv, capsys=None):
    from fastai_aum.compare.cli import main
    return main(argv)


def _one_line_error(argv, capsys) -> str:
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastai-aum: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted comparison of SMALL, run once for the module."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert _main(["compare", *SMALL, "--out", str(out)]) == 0
    return out


def _same_outputs(out, reference) -> None:
    for name in EXPORTED:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _count(out, table="runs", where="") -> int:
    with sqlite3.connect(out / "compare.sqlite") as db:
        return db.execute(f"SELECT COUNT(*) FROM {table} {where}").fetchone()[0]


def _runs_written(out) -> int:
    """Runs in the store so far; 0 while the writer has created the file but not yet its tables."""
    try:
        return _count(out) if (out / "compare.sqlite").exists() else 0
    except sqlite3.OperationalError:
        return 0


def _wait_for(predicate, process, seconds=240):
    import time
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _lock_held(out) -> bool:
    import fcntl
    path = out / ".compare.lock"
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _command(out, *extra):
    return [sys.executable, "-m", "fastai_aum", "compare", *SMALL, "--out", str(out), *extra]


@pytest.mark.slow
def test_two_compares_on_one_out_do_not_both_write(tmp_path, reference):
    """Issue 19, item 1: both exited 0 and scores.csv held every run twice. Now the second is refused in one line
    while the first holds the store, and the first's files are those of a lone comparison."""
    out, go = tmp_path / "out", tmp_path / "go"
    # the first holds after its first run until the second has tried, so that the test does not race
    code = ("import pathlib, sys, time; from fastai_aum.compare import cli; record = cli._Recorder.__call__\n"
            "def held(self, rows, scores):\n    record(self, rows, scores)\n"
            f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
            f"cli._Recorder.__call__ = held; sys.exit(cli.main({_command(out)[3:]!r}))")
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _runs_written(out) == 1, first)
        assert _lock_held(out)
        second = subprocess.run(_command(out), capture_output=True, text=True, timeout=300)
        go.write_text("")
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:  # a failed check never leaves the held process waiting for `go`
        if first.poll() is None:
            first.kill()
            first.wait()
    log = first.stdout.read()  # item 8: without a terminal, one line per finished run, no \r updates
    assert "\r" not in log and [line[:8] for line in log.splitlines() if line.startswith("run ")] == [
        "run 1/4:", "run 2/4:", "run 3/4:", "run 4/4:"]
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"fastai-aum: error: --out: another fastai-aum compare is writing to {out}; wait until it ends, or give "
        "another --out"]
    assert _count(out) == 4 and len(pd.read_csv(out / "scores.csv")) == 4 * 100
    _same_outputs(out, reference)


@pytest.mark.slow
def test_a_killed_comparison_resumes_to_the_report_of_an_uninterrupted_one(tmp_path, reference):
    """SIGKILL mid-run (after the first run is committed): the store is consistent and --resume finishes it."""
    out = tmp_path / "out"
    victim = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _runs_written(out) >= 1, victim)
    finally:
        victim.kill()
    victim.wait()
    assert 1 <= _count(out) < 4 and _count(out, "epochs") == 2 * _count(out)
    assert _main(["compare", *SMALL, "--out", str(out), "--resume"]) == 0
    _same_outputs(out, reference)


@pytest.mark.slow
def test_force_checks_everything_first_and_moves_the_old_store_aside(tmp_path, reference, capsys):
    """Item 2: --force deleted every output before checking the other arguments; a typo left an empty folder."""
    import shutil
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    for bad, message in ((["--target", "lable"], "--target: the bundled data set"),
                         (["--data", "nope.csv"], "--data: no such file"), (["--bs", "100000"], "--bs 100000")):
        assert message in _one_line_error(["compare", *SMALL, "--out", str(out), "--force", *bad], capsys)
        assert _count(out) == 4 and (out / "results.csv").exists()
    assert _main(["compare", *SMALL[:-2], "--lr", "0.03", "--out", str(out), "--force"]) == 0
    moved = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert len(moved) == 1 and "moved to" in capsys.readouterr().out
    _same_outputs(moved[0], reference)
    assert _count(moved[0]) == 4 and _count(out, where="WHERE lr = 0.03") == 4


@pytest.mark.slow
def test_a_failed_write_leaves_the_store_as_it_was(tmp_path, reference, capsys, monkeypatch):
    """Item 3: a full disk mid-append left a partial row that broke every later --resume. Now the run's
    transaction is rolled back: one line, exit 2, and --resume ends as an uninterrupted comparison."""
    out = tmp_path / "out"
    original, calls = store_module._score_rows, []

    def full_disk_on_the_third_run(scores):
        calls.append(1)
        for i, row in enumerate(original(scores)):
            if len(calls) == 3 and i == 50:
                raise OSError(28, "No space left on device")
            yield row

    monkeypatch.setattr(store_module, "_score_rows", full_disk_on_the_third_run)
    err = _one_line_error(["compare", *SMALL, "--out", str(out)], capsys)
    assert "cannot write the store" in err and "No space left on device" in err and "2 run(s) finished" in err
    assert _count(out) == 2 and _count(out, "epochs") == 4 and _count(out, "scores") == 200
    monkeypatch.undo()
    assert _main(["compare", *SMALL, "--out", str(out), "--resume"]) == 0
    _same_outputs(out, reference)
    # a results.csv cut off mid-row is only an export: --resume rewrites it and blames nothing
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[: len(text) // 2])
    assert _main(["compare", *SMALL, "--out", str(out), "--resume"]) == 0
    _same_outputs(out, reference)


@pytest.mark.slow
def test_a_failed_export_is_one_line_and_keeps_the_earlier_files(tmp_path, reference, capsys, monkeypatch):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(reference, out)

    to_csv = pd.DataFrame.to_csv

    def full_disk(self, path=None, *args, **kwargs):
        if path is None:  # to text (the data's fingerprint), not to disk
            return to_csv(self, path, *args, **kwargs)
        open(path, "w").write("partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    err = _one_line_error(["compare", *SMALL, "--out", str(out), "--resume"], capsys)
    assert "cannot write" in err and "results.csv: No space left on device; the store is intact" in err
    monkeypatch.undo()
    _same_outputs(out, reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_resume_with_fewer_seeds_keeps_the_others(tmp_path, reference, capsys, monkeypatch):
    """Item 4: --resume --seeds 1 dropped the other seeds' runs; resuming with 2 retrained and duplicated them."""
    import shutil
    from fastai_aum.compare import cli
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    one = ["compare", "--losses", "aum,ce", "--seeds", "1", "--epochs", "2", "--lr", "0.01", "--out", str(out)]
    assert _main([*one, "--resume"]) == 0
    text = capsys.readouterr().out
    assert "resuming: 2 finished run(s) of this plan" in text and "and 2 outside it" in text
    assert "the store also holds 2 finished run(s) outside this plan" in (out / "report.txt").read_text()
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {0} and _count(out) == 4
    monkeypatch.setattr(cli._Recorder, "__call__", lambda *a: pytest.fail("trained again"))
    assert _main(["compare", *SMALL, "--out", str(out), "--resume"]) == 0
    _same_outputs(out, reference)


def _changed_csv_resume(tmp_path, capsys, monkeypatch, change):
    """A CSV comparison interrupted before any run ends, then resumed after `change(df)`; its error line."""
    from fastai_aum.compare import run
    rng = np.random.default_rng(0)
    y = rng.random(120) < 0.3
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"x": rng.normal(size=120) + y, "z": rng.normal(size=120), "y": np.where(y, "yes", "no")}).to_csv(
        csv, index=False)
    argv = ["compare", "--data", str(csv), "--target", "y", *SMALL, "--out", str(tmp_path / "out")]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "compare_losses_on_df", interrupted)
    assert _main(argv) == 130
    err = capsys.readouterr().err.strip()
    # item 8: this used to name a results.csv that did not exist
    assert err == "fastai-aum: interrupted; no run had finished; the settings are kept in the store; add --resume " \
                  "to continue" and not (tmp_path / "out" / "results.csv").exists()
    df = pd.read_csv(csv)
    change(df)
    df.to_csv(csv, index=False)
    return _one_line_error([*argv, "--resume"], capsys)


def test_resume_refuses_changed_data(tmp_path, capsys, monkeypatch):
    """Item 5: --resume pooled runs on the old and the new data without a word."""
    err = _changed_csv_resume(tmp_path, capsys, monkeypatch, lambda df: df.loc.__setitem__((5, "x"), 99.0))
    assert "used different the data (its fingerprint)" in err and "--force or another --out" in err


def test_resume_names_the_changed_settings(tmp_path, capsys, monkeypatch):
    err = _changed_csv_resume(tmp_path, capsys, monkeypatch, lambda df: df.insert(0, "w", np.arange(len(df)) % 3))
    assert "used different fingerprint" not in err and "columns" in err


def test_a_bad_target_in_a_folder_with_results_names_the_target(tmp_path, capsys):
    """Item 8: the --out conflict was reported instead of the typo."""
    out = tmp_path / "out"
    out.mkdir()
    Store.open(out).close()
    (out / "results.csv").write_text("loss\n")
    err = _one_line_error(["compare", "--target", "lable", "--out", str(out)], capsys)
    assert "--target: the bundled data set breast_cancer has its label in 'label'" in err
@pytest.mark.slow
def test_an_interrupted_comparison_keeps_its_finished_run_and_resumes(tmp_path, reference, capsys, monkeypatch):
    """Ctrl-C after the first run: exit 130, that run is in the store; --resume trains only the rest, and the
    files are those of an uninterrupted comparison."""
    from fastai_aum.compare import cli
    out = tmp_path / "out"
    argv = ["compare", *SMALL, "--out", str(out)]
    original = cli._Recorder.__call__

    def interrupt_after_first(self, rows, scores):
        original(self, rows, scores)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._Recorder, "__call__", interrupt_after_first)
    assert _main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 finished run(s) are kept in" in err and "--resume" in err
    assert not (out / "results.csv").exists()  # nothing is exported before the end
    calls = []
    monkeypatch.setattr(cli._Recorder, "__call__",
                        lambda self, rows, scores: (calls.append(1), original(self, rows, scores)))
    assert _main([*argv, "--resume"]) == 0
    assert len(calls) == 3  # aum seed 0 was not trained again
    assert "resuming: 1 finished run(s) of this plan" in capsys.readouterr().out
    _same_outputs(out, reference)
    err = _one_line_error(["compare", *SMALL[:-4], "--epochs", "3", "--lr", "0.01", "--out", str(out), "--resume"],
                          capsys)
    assert "used different protocol (epochs)" in err


def test_a_file_that_is_not_a_store_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.sqlite").write_text("results,by,hand\n")
    err = _one_line_error(["compare", *SMALL, "--out", str(out), "--resume"], capsys)
    assert "cannot open" in err and "as the comparison's store: file is not a database" in err
    assert (out / "compare.sqlite").read_text() == "results,by,hand\n"
