"""Execute every notebook in nbs/ with nbdev's test runner and fail on any error.

Each notebook is run by `nbdev-test NOTEBOOK` (nbdev 3, configured by `[tool.nbdev]` in pyproject.toml), in
a subprocess of its own so that no notebook's state (seeds, torch threads, matplotlib backend) leaks into
another or into the rest of the suite. nbdev runs the cells in an IPython shell, not a Jupyter kernel, with
the notebook's folder as the working directory. The notebooks run from copies in a temporary repository
(the notebooks, tests/data and pyproject.toml), with this checkout first on `PYTHONPATH` so that they import
its `fastai_aum`: what they write (the digits' PNG files, saved models, comparison stores) lands there, never
in the checkout. On an error nbdev prints the failing cell and its traceback, which the assertion message
repeats.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
NOTEBOOK_TIMEOUT_S = 1800  # per notebook; nbdev's own per-cell limit is `cell_timeout` in pyproject.toml
# nbdev's console script, from this interpreter's environment first (then PATH). Its function cannot be called
# with `python -c`: fastcore's `call_parse` reads the command line only when run as a script.
NBDEV_TEST = shutil.which("nbdev-test", path=sysconfig.get_path("scripts")) or shutil.which("nbdev-test")


@pytest.fixture(scope="module")
def scratch_repo(tmp_path_factory) -> Path:
    """A temporary repository the notebooks run in: what they find (`ROOT` is the folder holding tests/data)
    and what nbdev reads (pyproject.toml), shared by the notebooks of one test run."""
    root = tmp_path_factory.mktemp("notebooks")
    (root / "nbs").mkdir()
    for nb in NOTEBOOKS:
        shutil.copy2(nb, root / "nbs" / nb.name)
    shutil.copytree(ROOT / "tests" / "data", root / "tests" / "data")
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, scratch_repo: Path):
    assert NBDEV_TEST, "nbdev-test not found: install the dev extras, pip install -e '.[dev]'"
    before = sorted(ROOT.rglob("*"))  # the checkout: a notebook's run must leave it as it was
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([NBDEV_TEST, str(scratch_repo / "nbs" / path.name)], capture_output=True, text=True,
                          timeout=NOTEBOOK_TIMEOUT_S, env=env,
                          cwd=scratch_repo)  # nbdev reads its settings from the scratch repository's pyproject.toml
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and "Success." in proc.stdout, \
        f"nbdev-test {path.name} failed (exit status {proc.returncode}):\n{output[-10000:]}"
    wrote = sorted(set(ROOT.rglob("*")) - set(before) - _caches(ROOT))
    assert not wrote, f"{path.name} wrote into the checkout: {[str(p.relative_to(ROOT)) for p in wrote[:10]]}"


def _caches(root: Path) -> set[Path]:
    """What git, Python and the test tools write beside the code, whoever runs: not the notebooks' doing."""
    return {p for p in root.rglob("*") if {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"} & set(p.parts)}


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NBS}"
