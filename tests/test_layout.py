"""The package's layers, read from its source (AST), not from its documentation: `functional/` is pure
torch and stands alone, the fastai layer above it never imports the comparison tool, no module
imports another that imports it back, and no module or class grows past what one reader holds."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fastai_aum

ROOT = Path(fastai_aum.__file__).parent
THIRD_PARTY_ABOVE_TORCH = {"fastai", "fastcore", "fastprogress", "matplotlib", "pandas"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module that `name` imports, at module level or inside a function, as absolute names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # `from . import x` and `from .functional import aum_loss` may name submodules
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return found


def internal_imports(name: str) -> set[str]:
    out = set()
    for target in imports(name):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def test_the_source_tree_is_what_this_test_reads():
    assert {"fastai_aum", "fastai_aum.functional", "fastai_aum.functional.roc", "fastai_aum.losses",
            "fastai_aum.compare", "fastai_aum.compare.cli"} <= set(MODULES)
    # the reader sees relative imports: the callback imports the metric it attaches
    assert "fastai_aum.metrics" in internal_imports("fastai_aum.callback")


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("fastai_aum.functional")])
def test_functional_stands_alone(name):
    """Pure torch: no module of the package outside `functional/`, and nothing from fastai's stack."""
    outside = {m for m in internal_imports(name) if not m.startswith("fastai_aum.functional")}
    assert not outside, f"{name} imports {sorted(outside)}"
    third = {m.split(".")[0] for m in imports(name)} & THIRD_PARTY_ABOVE_TORCH
    assert not third, f"{name} imports {sorted(third)}"


@pytest.mark.parametrize("name", [n for n in MODULES if not n.startswith("fastai_aum.compare")])
def test_nothing_below_the_comparison_imports_it(name):
    if name == "fastai_aum.__main__":  # the command's entry point sits above everything
        return
    up = {m for m in internal_imports(name) if m.startswith("fastai_aum.compare")}
    assert not up, f"{name} imports {sorted(up)}"


def test_no_import_circles():
    # `from .. import __version__` reads the top-level package, which imports nothing at module level
    graph = {name: internal_imports(name) - {"fastai_aum"} for name in MODULES}
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 450, f"{name} has {lines} lines"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_classes_stay_small(name):
    classes = [n for n in ast.walk(ast.parse(MODULES[name].read_text())) if isinstance(n, ast.ClassDef)]
    big = {c.name: c.end_lineno - c.lineno + 1 for c in classes if c.end_lineno - c.lineno + 1 > 120}
    assert not big, f"{name}: classes over 120 lines: {big}"


def test_the_functional_api_does_not_load_fastai():
    code = ("import sys; from fastai_aum.functional import auroc, aum; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'fastai', 'fastcore', 'matplotlib', 'pandas'}); "
            "assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def test_every_module_declares_all():
    missing = [n for n, p in MODULES.items() if "__all__" not in p.read_text()]
    assert not missing, missing
