"""The small-batch fast paths of `aum` against the tie path, the sync-free path and the brute-force oracle.

The CPU path skips the tie bookkeeping when one reduction finds no zero gap, sorts short rows as floats
(long ones by integer keys), counts classes on the host and uses a ctx-style autograd Function outside
torch.func: each must give the values and gradients of the general paths.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastai_aum.functional._sorting as sorting
import fastai_aum.functional.aum_loss as aum_module
from fastai_aum.functional import aum, aum_directional_derivatives
from oracles import brute_aum, brute_directional_derivatives

SIZES = [2, 3, 5, 17, 64, 300, 2100, 5000]


def _scores(rng, n, tied):
    if tied:  # few levels: many ties, including -0.0 against 0.0
        s = rng.integers(-3, 4, n).astype(np.float64) * 0.5
        s[s == 0] *= rng.choice([-1.0, 1.0], int((s == 0).sum()))
        return s
    return rng.normal(size=n)


def _labels(rng, n):
    y = rng.random(n) < 0.3
    y[0], y[-1] = True, False  # both classes
    return y


def _derivatives(s, y, normalize, monkeypatch, sparse):
    monkeypatch.setattr(aum_module, "_SPARSE_TIES_ON", ("cpu",) if sparse else ())
    return aum_directional_derivatives(torch.tensor(s), torch.tensor(y), normalize).numpy()


@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("tied", [False, True], ids=["no_ties", "ties"])
@pytest.mark.parametrize("n", SIZES)
def test_fast_and_tie_paths_match_the_sync_free_path_and_the_oracle(monkeypatch, normalize, tied, n):
    rng = np.random.default_rng(n + 7 * tied)
    s, y = _scores(rng, n, tied), _labels(rng, n)
    assert (len(np.unique(s)) < n) == tied or n <= 3
    sparse = _derivatives(s, y, normalize, monkeypatch, sparse=True)
    dense = _derivatives(s, y, normalize, monkeypatch, sparse=False)
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-12)
    if n <= 17:
        np.testing.assert_allclose(sparse, brute_directional_derivatives(s, y, normalize), rtol=0, atol=1e-9)
    if not tied:
        np.testing.assert_array_equal(sparse[:, 0], sparse[:, 1])
    x = torch.tensor(s, requires_grad=True)
    value = aum(x, torch.tensor(y), normalize)
    if n <= 2100:
        assert value.item() == pytest.approx(brute_aum(s, y, normalize), rel=1e-9, abs=1e-9)
    value.backward()
    np.testing.assert_allclose(x.grad.numpy(), sparse.mean(1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [300, 7000])
def test_float_sort_and_key_sort_give_the_same_loss(monkeypatch, dtype, n):
    """Short rows sort as floats, long ones by integer keys: bit-identical values and gradients."""
    rng = np.random.default_rng(n)
    s = torch.tensor(np.concatenate([_scores(rng, n // 2, True), _scores(rng, n - n // 2, False)]), dtype=dtype)
    y = torch.tensor(_labels(rng, n))
    z = torch.tensor(rng.normal(size=(n // 10, 10)), dtype=dtype)
    labels = torch.tensor(rng.integers(0, 10, n // 10))
    results = []
    for keys_from in (0, 10**9):
        monkeypatch.setattr(sorting, "_KEYS_FROM", keys_from)
        out = []
        for args, kw in [((s, y), {}), ((z, labels), {"average": "micro"}), ((z, labels), {"average": "macro"})]:
            x = args[0].clone().requires_grad_()
            value = aum(x, args[1], **kw)
            value.backward()
            out += [value.detach(), x.grad]
        results.append(out)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_macro_with_rows_long_enough_for_the_key_sort():
    """Macro sorts a transposed view of the probabilities; long rows take the integer-key sort."""
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(size=(7000, 3)), requires_grad=True)
    y = torch.tensor(rng.integers(0, 3, 7000))
    value = aum(z, y, average="macro")
    p = torch.softmax(z.detach(), 1)
    expected = sum(aum(p[:, k], y == k) for k in range(3)) / 3
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    value.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_eager_function_matches_the_torch_func_one(average):
    """Plain autograd uses `_EagerAUMFunction`; torch.func.grad the setup_context one. Same gradient."""
    rng = np.random.default_rng(5)
    for preds, target in [(torch.tensor(_scores(rng, 40, True)), torch.tensor(_labels(rng, 40))),
                          (torch.tensor(rng.integers(-2, 3, (30, 4)).astype(np.float64)), torch.arange(30) % 4)]:
        x = preds.clone().requires_grad_()
        value = aum(x, target, average=average)
        assert type(value.grad_fn).__name__.startswith("_EagerAUMFunction") or average == "macro"
        value.backward()
        assert torch.equal(torch.func.grad(lambda t: aum(t, target, average=average))(preds), x.grad)


def test_macro_counts_only_classes_with_both_labels():
    z = torch.tensor(np.random.default_rng(0).normal(size=(6, 4)), requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])  # class 3 has no positive
    p = torch.softmax(z.detach(), 1)
    expected = sum(aum(p[:, k], y == k) for k in range(3)) / 3
    assert aum(z, y, average="macro").item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("preds, count", [([math.nan], 1), ([[0.0, math.inf]], 1), ([math.nan, 0.0, 1.0], 1),
                                          ([math.inf, math.inf, 0.0], 2)])
def test_binary_non_finite_scores_found_from_the_value(preds, count):
    """Binary `aum` tells non-finite scores from its value (each score borders a gap), also for
    one example and for one class."""
    y = torch.zeros(len(preds), dtype=torch.long)
    for labels in (y, 1 - y):
        with pytest.raises(ValueError, match=rf"`preds` contains {count} non-finite value\(s\)"):
            aum(torch.tensor(preds, dtype=torch.float64), labels)
    assert math.isnan(aum(torch.tensor(preds, dtype=torch.float64), y, validate=False).item()) or len(preds) == 1


@pytest.mark.parametrize("compact_from", [2, 10**9])
@pytest.mark.parametrize("normalize", ["rate", "count"])
def test_both_cpu_tie_paths_match_the_oracle(monkeypatch, compact_from, normalize):
    """Short rows do the group bookkeeping for every element; long ones compact their tied elements
    first. Forced both ways, each gives the oracle's derivatives at ties."""
    monkeypatch.setattr(aum_module, "_COMPACT_TIES_FROM", compact_from)
    rng = np.random.default_rng(5)
    for n in (2, 5, 17, 64, 300):
        for _ in range(10):
            s, y = _scores(rng, n, tied=True), rng.integers(0, 2, n)
            got = aum_directional_derivatives(torch.tensor(s), torch.tensor(y), normalize).numpy()
            np.testing.assert_allclose(got, brute_directional_derivatives(s, y, normalize), atol=1e-9)
    z = torch.randint(-2, 3, (300, 4)).double().requires_grad_()  # macro: several rows at once
    labels = torch.arange(300) % 4
    aum(z, labels, normalize, average="macro").backward()
    monkeypatch.setattr(aum_module, "_SPARSE_TIES_ON", ())  # the sync-free path as the reference
    reference = z.detach().clone().requires_grad_()
    aum(reference, labels, normalize, average="macro").backward()
    torch.testing.assert_close(z.grad, reference.grad)


@pytest.mark.parametrize("values", [[3.0], [1.0, 1.0], [2.0, 1.0, 0.0], [1.0, 0.0, -0.0, 0.0, -1.0],
                                    [math.nan, math.nan, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0, 5.0, 2.0, 2.0, 1.0]])
def test_group_bounds_of_one_row_agree_with_the_group_marks(values):
    """One CPU row finds its groups in one run-length pass (`unique_consecutive`), other rows by marks:
    each element gets its group's first and last index, as a loop over the values says."""
    v = torch.tensor(values, dtype=torch.float64)
    start, end = sorting.group_bounds(v)
    first, last = sorting.group_marks(v)
    assert torch.equal(start, sorting.group_start(first)) and torch.equal(end, sorting.group_end(last))
    for i, x in enumerate(values):
        lo, hi = i, i  # the run of equal values around i (NaN equals nothing, so it stands alone)
        while lo > 0 and values[lo - 1] == x:
            lo -= 1
        while hi < len(values) - 1 and values[hi + 1] == x:
            hi += 1
        assert (start[i].item(), end[i].item()) == (lo, hi)
    rows = torch.stack([v, v.flip(0)])  # two rows: the marks path
    start2, end2 = sorting.group_bounds(rows)
    assert torch.equal(start2[0], start) and torch.equal(end2[0], end)
