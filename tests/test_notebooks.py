"""Execute every notebook in nbs/ and fail on any error.

Each notebook is read into memory and executed there, as a fresh copy, in a new `python3` kernel
whose working directory is nbs/ (the notebooks read ../tests/data and write their data under nbs/,
which git ignores). The notebook files are never written back. The notebooks select matplotlib's inline
backend themselves (`%matplotlib inline`), which needs no display.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
CELL_TIMEOUT_S = 600


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path):
    nb = nbformat.read(path, as_version=4)  # an in-memory copy: the file is left as it is
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NBS)}})
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback, on any error
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: {[(e['ename'], e['evalue']) for e in errors]}"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NBS}"
