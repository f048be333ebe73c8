"""`compare --jobs N --backend loky|dask|ray`: the same bytes as the sequential comparison, the parent writing
each run to the store as it comes back, and one-line errors for bad settings or a missing engine."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pandas as pd
import pytest

from fastai_aum.compare import cli, parallel, store as store_module
from fastai_aum.compare.cli import main

SMALL = ["compare", "--seeds", "2", "--epochs", "2", "--losses", "aum,ce", "--lr", "0.01,0.03"]
_BEFORE = os.environ.get("PYTHONWARNINGS")
EXPORTED = ("results.csv", "scores.csv", "summary.csv", "report.txt")


def _same_outputs(a, b) -> None:
    for name in EXPORTED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    assert main([*SMALL, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_loky_processes_give_the_sequential_bytes(sequential, tmp_path, capfd):
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)  # new workers: they import fastai during this comparison
    capfd.readouterr()
    assert main([*SMALL, "--jobs", "2", "--out", str(tmp_path)]) == 0
    _same_outputs(sequential, tmp_path)
    err = capfd.readouterr().err
    assert "jit.script" not in err  # fastai's import-time notice, once per worker before
    assert os.environ.get("PYTHONWARNINGS") == _BEFORE  # the command's own environment is restored
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2 * 2 * 2 * 2  # seeds x losses x rates x epochs


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason='dask.distributed is not installed (pip install "fastai-aum[dask]")')
def test_a_dask_local_cluster_gives_the_sequential_bytes(sequential, tmp_path):
    assert main([*SMALL, "--jobs", "2", "--backend", "dask", "--out", str(tmp_path)]) == 0
    _same_outputs(sequential, tmp_path)


@pytest.mark.slow
def test_an_interrupted_parallel_comparison_keeps_its_runs_and_resumes_to_the_same_bytes(
        sequential, tmp_path, capsys, monkeypatch):
    """The parent writes each run as it arrives: an interruption after the first keeps exactly that one, and a
    parallel --resume trains the rest (one of them in the seed whose first run is stored)."""
    writes, real_add_run = [], store_module.Store.add_run

    def interrupted_on_the_second(self, rows, scores):
        writes.append(os.getpid())
        if len(writes) == 2:
            raise KeyboardInterrupt
        real_add_run(self, rows, scores)
    monkeypatch.setattr(store_module.Store, "add_run", interrupted_on_the_second)
    assert main([*SMALL, "--jobs", "2", "--out", str(tmp_path)]) == 130
    assert writes == [os.getpid()] * 2  # in this process, not in a worker
    assert "1 finished run(s) are kept" in capsys.readouterr().err
    monkeypatch.undo()
    trained = []
    monkeypatch.setattr(cli._Recorder, "__call__", lambda self, rows, scores: (
        trained.append((rows["loss"].iloc[0], int(rows["seed"].iloc[0]), float(rows["lr"].iloc[0]))),
        self.store.add_run(rows, scores)))
    assert main([*SMALL, "--jobs", "2", "--resume", "--out", str(tmp_path)]) == 0
    assert len(trained) == 7 and len(set(trained)) == 7  # 8 planned, 1 kept
    _same_outputs(sequential, tmp_path)


@pytest.mark.slow
def test_a_sequential_start_resumed_in_parallel_gives_the_same_bytes(sequential, tmp_path):
    one_seed = [*SMALL]
    one_seed[one_seed.index("--seeds") + 1] = "1"
    assert main([*one_seed, "--out", str(tmp_path)]) == 0
    assert main([*SMALL, "--jobs", "2", "--resume", "--out", str(tmp_path)]) == 0
    _same_outputs(sequential, tmp_path)


@pytest.mark.slow
def test_the_api_returns_the_sequential_order_and_calls_on_run_here():
    from fastai_aum.compare.run import compare_losses_on_df
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    df = pd.DataFrame(x, columns=list("abcd")).assign(label=np.where(x[:, 0] + rng.normal(size=240) > 1, "y", "n"))
    kwargs = dict(losses=["aum", "ce"], seeds=[3, 1, 2], epochs=1, lr=[0.01, 0.03], show_progress=False, threads=1)
    one = compare_losses_on_df(df, "label", **kwargs)
    seen = []
    two = compare_losses_on_df(df, "label", n_jobs=2, on_run=lambda rows, scores: seen.append(
        (os.getpid(), int(rows["seed"].iloc[0]))), **kwargs)
    pd.testing.assert_frame_equal(one.results, two.results, check_exact=True)
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    assert [pid for pid, _ in seen] == [os.getpid()] * 12
    # a seed's four runs arrive together, whatever order the seeds finish in
    assert [s for _, s in seen][::4] == [s for _, s in seen][3::4] and sorted({s for _, s in seen}) == [1, 2, 3]


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be an integer >= 1, or -1"),
    (["--jobs", "-2"], "--jobs must be an integer >= 1, or -1"),
    (["--backend", "spark"], "--backend must be one of loky, dask, ray, got 'spark'"),
    (["--scheduler", "tcp://10.0.0.1:8786"], "--scheduler must be the address of a dask or Ray cluster"),
    (["--backend", "dask", "--scheduler", " "], "--scheduler must be the address"),
])
def test_bad_parallel_settings_fail_in_one_line(args, message, capsys, tmp_path):
    assert main(["compare", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend, engine", [("dask", "dask.distributed"), ("ray", "Ray")])
def test_a_missing_engine_is_one_line_naming_its_extra(backend, engine, capsys, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(parallel.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("distributed", "ray") else real(name, *a))
    assert main(["compare", "--backend", backend, "--jobs", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fastai-aum: error: --backend {backend} needs {engine}, which is not installed: "
                   f'pip install "fastai-aum[{backend}]"'), err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")
def test_ray_missing_here_is_the_same_line(capsys, tmp_path):
    assert main(["compare", "--backend", "ray", "--out", str(tmp_path / "out")]) == 2
    assert 'pip install "fastai-aum[ray]"' in capsys.readouterr().err


def test_the_api_checks_its_parallel_arguments():
    from fastai_aum.compare.run import compare_losses
    for kwargs, message in [({"n_jobs": 0}, "`n_jobs` must be"), ({"n_jobs": True}, "`n_jobs` must be"),
                            ({"n_jobs": 2.0}, "`n_jobs` must be"), ({"backend": "threads"}, "`backend` must be"),
                            ({"scheduler": "tcp://x:1"}, "`scheduler` must be"),
                            ({"threads": 0}, "`threads` must be an integer >= 1, got 0")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            compare_losses(None, losses=["aum", "ce"], seeds=[0], epochs=1, **kwargs)
