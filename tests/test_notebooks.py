"""Execute every notebook in nbs/ with nbdev's test runner and fail on any error.

Each notebook is run by `nbdev-test NOTEBOOK` (nbdev 3, configured by `[tool.nbdev]` in pyproject.toml), in
a subprocess of its own so that no notebook's state (seeds, torch threads, matplotlib backend) leaks into
another or into the rest of the suite. nbdev runs the cells in an IPython shell, not a Jupyter kernel, with
the notebook's folder (nbs/) as the working directory and the repository root first on `sys.path`, so the
notebooks import this checkout's `fastai_aum`. The notebook files are never written back; the notebooks
write their data under nbs/data and nbs/models, which git ignores. On an error nbdev prints the failing
cell and its traceback, which the assertion message repeats.
"""
from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
NOTEBOOK_TIMEOUT_S = 1800  # per notebook; nbdev's own per-cell limit is `cell_timeout` in pyproject.toml
# nbdev's console script, from this interpreter's environment first (then PATH). Its function cannot be called
# with `python -c`: fastcore's `call_parse` reads the command line only when run as a script.
NBDEV_TEST = shutil.which("nbdev-test", path=sysconfig.get_path("scripts")) or shutil.which("nbdev-test")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path):
    assert NBDEV_TEST, "nbdev-test not found: install the dev extras, pip install -e '.[dev]'"
    proc = subprocess.run([NBDEV_TEST, str(path)], capture_output=True, text=True, timeout=NOTEBOOK_TIMEOUT_S,
                          cwd=NBS.parent)  # nbdev reads its settings from the repository's pyproject.toml
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and "Success." in proc.stdout, \
        f"nbdev-test {path.name} failed (exit status {proc.returncode}):\n{output[-10000:]}"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NBS}"
