"""The README's Python examples run as written, each block alone, and print what their comments say.

A statement whose trailing comment starts with a value (`# tensor(0.7481)`, `# 0.75`,
`# BestThreshold(threshold=1.2018, ...)`), or is followed by a comment line that starts with
such a value, is evaluated and every number in that comment is compared with the value's, to the
comment's own precision.
"""
import ast
import io
import re
import tokenize
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
VALUE = re.compile(r"^(tensor\(|[A-Z]\w*\(\w+=|-?\d)")
NUMBER = re.compile(r"[-+]?\d+\.\d*|[-+]?\d+(?![\w.])")


def _leading_value(comment: str) -> str:
    """The value at the start of a comment: a balanced `name(...)` or a number, without what follows."""
    if comment[0].isdigit() or comment[0] == "-":
        return re.match(r"-?\d+(\.\d+)?", comment).group(0)
    depth = 0
    for i, ch in enumerate(comment):
        depth += ch == "("
        depth -= ch == ")"
        if ch == ")" and depth == 0:
            return comment[: i + 1]
    return comment


def _numbers(value) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().reshape(-1).tolist()]
    if isinstance(value, tuple):
        return [x for v in value for x in _numbers(v)]
    if isinstance(value, (int, float)):
        return [float(value)]
    raise TypeError(f"cannot compare a {type(value).__name__} with a README comment")


def _expected(comment: str) -> list[tuple[float, float]]:
    """(number, tolerance) for each number of a comment: half a unit of its last printed decimal."""
    text = re.sub(r"dtype=torch\.\w+|requires_grad=True|grad_fn=<\w+>", "", _leading_value(comment))
    found = []
    for n in NUMBER.findall(text):
        decimals = len(n.split(".")[1]) if "." in n else 0  # `tensor(3.)`: 0 decimals
        found.append((float(n), 0.5 * 10 ** -decimals + 1e-12))
    return found


def _checks(block: str) -> list[tuple[int, str]]:
    """(line number, comment) of each statement whose output the block's comments state."""
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(block).readline) if tok.type == tokenize.COMMENT}
    checks = []
    for node in ast.parse(block).body:
        if not isinstance(node, ast.Expr):
            continue
        own, below = comments.get(node.end_lineno, ""), comments.get(node.end_lineno + 1, "")
        if own and VALUE.match(own):
            checks.append((node.end_lineno, own))
        elif VALUE.match(below) and block.splitlines()[node.end_lineno].lstrip().startswith("#"):
            checks.append((node.end_lineno, below))
    return checks


def _run(block: str) -> dict:
    """Run `block` in a fresh namespace, recording the value of each statement `_checks` names."""
    tree = ast.parse(block)
    lines = {line for line, _ in _checks(block)}
    for node in tree.body:
        if isinstance(node, ast.Expr) and node.end_lineno in lines:
            node.value = ast.Call(ast.Name("_record", ast.Load()), [ast.Constant(node.end_lineno), node.value], [])
    ast.fix_missing_locations(tree)
    seen = {}
    namespace = {"_record": lambda line, value: seen.__setitem__(line, value), "__name__": "__readme__"}
    exec(compile(tree, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    return seen


def test_readme_has_examples_with_stated_outputs():
    assert len(BLOCKS) >= 5
    assert sum(len(_checks(b)) for b in BLOCKS) >= 14  # the functional examples state their outputs


def test_comment_parsing():
    assert _expected("tensor(0.5000, dtype=torch.float64)") == [(0.5, 0.5e-4 + 1e-12)]
    assert _expected("tensor(3.)") == [(3.0, 0.5 + 1e-12)]
    assert [n for n, _ in _expected("0.75: 'dog' positive")] == [0.75]
    assert [n for n, _ in _expected("AUROCTest(auroc_a=0.7048, z=1.3410, p_value=0.1799): paired DeLong")] == \
        [0.7048, 1.341, 0.1799]
    assert _checks("x = 1\nx  # 1\nx  # the value\nprint(x)  # 2: two\n") == [(2, "1"), (4, "2: two")]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_alone_and_prints_what_it_says(index):
    block = BLOCKS[index]
    seen = _run(block)
    for line, comment in _checks(block):
        expected, got = _expected(comment), _numbers(seen[line])
        assert len(got) == len(expected), (block.splitlines()[line - 1], comment, got)
        for (want, tol), value in zip(expected, got):
            assert abs(value - want) <= tol, (block.splitlines()[line - 1], comment, got)
