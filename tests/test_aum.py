"""`aum` and `aum_directional_derivatives` against the brute-force oracle (tests/oracles.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastai_aum.functional import aum, aum_directional_derivatives
from fastai_aum.functional.aum_loss import _aum
from oracles import brute_aum, brute_directional_derivatives, brute_multiclass_aum, brute_multilabel_aum, softmax64

TOL = 1e-6
NORMALIZE = ["rate", "count"]


def _random_binary(rng, n=None, levels=None):
    n = int(rng.integers(2, 13)) if n is None else n
    levels = int(rng.integers(1, 6)) if levels is None else levels
    scores = rng.integers(-levels, levels + 1, n).astype(np.float64) * float(rng.choice([1.0, 0.5, 3.0]))
    labels = rng.integers(0, 2, n)
    return scores, labels


# --------------------------------------------------------------------------------- binary ---

@pytest.mark.parametrize("normalize", NORMALIZE)
def test_binary_random_ties_vs_brute_force(normalize):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n_one_class = n_tied = 0
        for _ in range(40):
            s, y = _random_binary(rng)
            n_one_class += y.min() == y.max()
            n_tied += len(np.unique(s)) < len(s)
            expected = brute_aum(s, y, normalize)
            lr = brute_directional_derivatives(s, y, normalize)
            st = torch.tensor(s, requires_grad=True)
            value = aum(st, torch.from_numpy(y), normalize=normalize)
            assert value.item() == pytest.approx(expected, abs=TOL), (s, y)
            got_lr = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize)
            np.testing.assert_allclose(got_lr.numpy(), lr, atol=TOL, rtol=0, err_msg=f"s={s}, y={y}")
            value.backward()
            np.testing.assert_allclose(st.grad.numpy(), lr.mean(1), atol=TOL, rtol=0, err_msg=f"s={s}, y={y}")
            if y.min() == y.max():
                assert value.item() == 0.0
        assert n_tied > 20  # the draws really contain ties


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_binary_one_class_inputs_give_zero(normalize):
    rng = np.random.default_rng(123)
    for label in (0, 1):
        for n in (1, 2, 5, 12):
            s = rng.integers(-3, 4, n).astype(np.float64)
            y = np.full(n, label)
            assert brute_aum(s, y, normalize) == 0.0
            assert float(aum(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize)) == 0.0
            d = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize)
            assert torch.equal(d, torch.zeros(n, 2, dtype=d.dtype))


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_binary_continuous_float32_and_float64(normalize):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        s = rng.normal(size=30)
        y = rng.integers(0, 2, 30)
        expected = brute_aum(s, y, normalize)
        lr = brute_directional_derivatives(s, y, normalize)
        np.testing.assert_allclose(lr[:, 0], lr[:, 1], atol=TOL)  # no ties: left == right
        got = float(aum(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize))
        assert got == pytest.approx(expected, abs=1e-9)
        s32 = s.astype(np.float32)
        t32 = torch.from_numpy(s32).requires_grad_()
        v32 = aum(t32, torch.from_numpy(y), normalize=normalize)
        assert v32.dtype == torch.float32
        assert v32.item() == pytest.approx(brute_aum(s32, y, normalize), abs=1e-4)
        v32.backward()
        assert t32.grad.dtype == torch.float32
        expected_grad = brute_directional_derivatives(s32, y, normalize).mean(1)
        np.testing.assert_allclose(t32.grad.numpy(), expected_grad, atol=1e-5)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_binary_larger_n_with_ties(normalize):
    """N = 60 over 5 levels: big tie groups; the directional derivatives still match."""
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        s = rng.integers(0, 5, 60).astype(np.float64)
        y = rng.integers(0, 2, 60)
        lr = brute_directional_derivatives(s, y, normalize)
        assert float(aum(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize)) == pytest.approx(
            brute_aum(s, y, normalize), abs=TOL)
        got = aum_directional_derivatives(torch.from_numpy(s), torch.from_numpy(y), normalize=normalize)
        np.testing.assert_allclose(got.numpy(), lr, atol=TOL, rtol=0)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_binary_shapes(normalize):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        s, y = _random_binary(rng, n=10, levels=3)
        expected = brute_aum(s, y, normalize)
        lr = brute_directional_derivatives(s, y, normalize)
        target = torch.from_numpy(y)
        # (N, 1)
        col = torch.tensor(s[:, None], requires_grad=True)
        v = aum(col, target, normalize=normalize)
        assert v.item() == pytest.approx(expected, abs=TOL)
        v.backward()
        assert col.grad.shape == (10, 1)
        np.testing.assert_allclose(col.grad[:, 0].numpy(), lr.mean(1), atol=TOL)
        np.testing.assert_allclose(aum_directional_derivatives(col.detach(), target, normalize=normalize).numpy(), lr,
                                   atol=TOL)
        # (N, 2): the score is z1 - z0
        z0 = rng.integers(-2, 3, 10).astype(np.float64)
        z = torch.tensor(np.stack([z0, z0 + s], axis=1), requires_grad=True)
        v = aum(z, target, normalize=normalize)
        assert v.item() == pytest.approx(expected, abs=TOL)
        v.backward()
        np.testing.assert_allclose(z.grad[:, 1].numpy(), lr.mean(1), atol=TOL)
        np.testing.assert_allclose(z.grad[:, 0].numpy(), -lr.mean(1), atol=TOL)
        np.testing.assert_allclose(aum_directional_derivatives(z.detach(), target, normalize=normalize).numpy(), lr,
                                   atol=TOL)
        # target as (N, 1), float and bool
        for t in (target[:, None], target.double(), target.bool()):
            assert float(aum(torch.from_numpy(s), t, normalize=normalize)) == pytest.approx(expected, abs=TOL)


# ----------------------------------------------------------------------------- multiclass ---

def _multiclass(rng, n, k):
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)) * 2
    return z, y


@pytest.mark.parametrize("k", [3, 4, 7])
@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_multiclass_logits_vs_brute_force(k, average, normalize):
    rng = np.random.default_rng(k * 10 + len(average) + len(normalize))
    for _ in range(6):
        n = int(rng.integers(2, 12))
        z, y = _multiclass(rng, n, k)
        expected = brute_multiclass_aum(softmax64(z), y, normalize, average)
        got = aum(torch.from_numpy(z), torch.from_numpy(y), normalize=normalize, average=average)
        assert float(got) == pytest.approx(expected, abs=TOL), (z, y)
    # float32 logits: same value up to float32 rounding
    z, y = _multiclass(rng, 9, k)
    got = aum(torch.from_numpy(z).float(), torch.from_numpy(y), normalize=normalize, average=average)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(brute_multiclass_aum(softmax64(z.astype(np.float32)), y, normalize, average),
                                       abs=1e-5)


def _tied_probabilities(rng, n, k):
    counts = rng.integers(1, 4, (n, k)).astype(np.float64)
    return counts / counts.sum(1, keepdims=True)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_multiclass_probability_matrix_with_ties(k, normalize):
    """Probability rows are used as they are; gradients w.r.t. them match the oracle's derivatives."""
    rng = np.random.default_rng(7 + k)
    for _ in range(5):
        n = int(rng.integers(3, 10))
        p = _tied_probabilities(rng, n, k)
        y = rng.integers(0, k, n)
        onehot = (y[:, None] == np.arange(k)).astype(int)
        # micro
        P = torch.tensor(p, requires_grad=True)
        v = aum(P, torch.from_numpy(y), normalize=normalize, average="micro")
        expected = brute_multiclass_aum(p, y, normalize, "micro")
        assert expected != pytest.approx(brute_multiclass_aum(softmax64(p), y, normalize, "micro"), abs=1e-6)
        assert v.item() == pytest.approx(expected, abs=TOL)
        v.backward()
        lr = brute_directional_derivatives(p.reshape(-1), onehot.reshape(-1), normalize)
        np.testing.assert_allclose(P.grad.numpy(), lr.mean(1).reshape(n, k), atol=TOL)
        # macro
        P = torch.tensor(p, requires_grad=True)
        v = aum(P, torch.from_numpy(y), normalize=normalize, average="macro")
        assert v.item() == pytest.approx(brute_multiclass_aum(p, y, normalize, "macro"), abs=TOL)
        v.backward()
        defined = [c for c in range(k) if 0 < onehot[:, c].sum() < n]
        expected_grad = np.zeros((n, k))
        for c in defined:
            expected_grad[:, c] = brute_directional_derivatives(p[:, c], onehot[:, c], normalize).mean(1) / len(defined)
        np.testing.assert_allclose(P.grad.numpy(), expected_grad, atol=TOL)


def test_the_loss_entry_says_what_multiclass_scores_are():
    """`aum` finds out whether (N, K) scores are probabilities; `_aum` (the loss's entry) is told: True uses
    them as they are, False softmaxes even probability rows, None finds out; weighted alike."""
    rng = np.random.default_rng(3)
    p, y = _tied_probabilities(rng, 12, 4), np.r_[np.arange(4), rng.integers(0, 4, 8)]
    w = rng.uniform(0, 2, 12)
    P, Y = torch.from_numpy(p), torch.from_numpy(y)
    with pytest.raises(TypeError, match="probabilities"):
        aum(P, Y, probabilities=True)
    for average in ["micro", "macro"]:
        as_is = brute_multiclass_aum(p, y, "rate", average)
        softmaxed = brute_multiclass_aum(softmax64(p), y, "rate", average)
        assert aum(P, Y, average=average).item() == pytest.approx(as_is, abs=TOL)
        for probabilities, expected in [(True, as_is), (None, as_is), (False, softmaxed)]:
            assert _aum(P, Y, average=average, probabilities=probabilities).item() == pytest.approx(expected, abs=TOL)
            weighted = _aum(P, Y, average=average, probabilities=probabilities, sample_weight=w).item()
            rows, onehot = p if expected is as_is else softmax64(p), y[:, None] == np.arange(4)
            assert weighted == pytest.approx(brute_multilabel_aum(rows, onehot, "rate", average, w), abs=TOL)


def test_multiclass_macro_skips_classes_without_both_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 4))
    y = np.array([0, 0, 1, 1, 3, 3, 0, 1])  # class 2 absent
    p = softmax64(z)
    per_class = [brute_aum(p[:, c], (y == c).astype(int), "rate") for c in (0, 1, 3)]
    got = aum(torch.from_numpy(z), torch.from_numpy(y), average="macro")
    assert float(got) == pytest.approx(np.mean(per_class), abs=TOL)
    # mean over all 4 columns would differ (the absent class's column has AUM 0)
    assert np.mean(per_class) != pytest.approx(np.sum(per_class) / 4, abs=1e-6)


def _distinct_logits(seed, n, k, min_gap=1e-3):
    """Logits whose softmax probabilities are pairwise at least `min_gap` apart (away from ties)."""
    rng = np.random.default_rng(seed)
    while True:
        z = rng.normal(size=(n, k))
        p = np.sort(softmax64(z).reshape(-1))
        if np.diff(p).min() > min_gap:
            return torch.tensor(z, requires_grad=True)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("k", [3, 4])
def test_multiclass_gradcheck(average, normalize, k):
    z = _distinct_logits(k, 6, k)
    y = torch.tensor(np.random.default_rng(k).permutation(np.arange(6) % k))
    assert torch.autograd.gradcheck(lambda t: aum(t, y, normalize=normalize, average=average), (z,),
                                    eps=1e-7, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ half dtypes ---

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_half_precision_binary(dtype, normalize):
    rng = np.random.default_rng(5)
    s = rng.integers(-8, 9, 40) * 0.25  # representable in fp16 and bf16
    y = rng.integers(0, 2, 40)
    half = torch.tensor(s, dtype=dtype, requires_grad=True)
    assert np.array_equal(half.detach().double().numpy(), s)
    full = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    v_half, v_full = aum(half, torch.from_numpy(y), normalize), aum(full, torch.from_numpy(y), normalize)
    assert v_half.item() == v_full.item()
    assert v_full.item() == pytest.approx(brute_aum(s, y, normalize), abs=TOL)
    v_half.backward()
    v_full.backward()
    assert half.grad.dtype == dtype
    assert torch.equal(half.grad, full.grad.to(dtype))  # the float32 gradient, rounded once to the input dtype
    np.testing.assert_allclose(full.grad.numpy(), brute_directional_derivatives(s, y, normalize).mean(1), atol=TOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("average", ["micro", "macro"])
def test_half_precision_multiclass(dtype, average):
    rng = np.random.default_rng(6)
    z = torch.tensor(rng.integers(-6, 7, (12, 3)) * 0.5, dtype=dtype, requires_grad=True)
    y = torch.tensor(rng.integers(0, 3, 12))
    z32 = z.detach().float().requires_grad_()
    v_half, v_full = aum(z, y, average=average), aum(z32, y, average=average)
    assert v_half.item() == pytest.approx(v_full.item(), abs=1e-6)
    v_half.backward()
    v_full.backward()
    assert z.grad.dtype == dtype
    torch.testing.assert_close(z.grad.float(), z32.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_probability_matrix_used_as_is(average, dtype):
    """Softmax outputs stored in fp16/bf16 are probabilities (rows sum to 1 up to the dtype's rounding):
    AUM is taken on them as they are, not on softmax(p)."""
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 5, (12,), generator=g)
    p = torch.softmax(torch.randn(12, 5, generator=g) * 2, 1).to(dtype)
    p64 = p.double().numpy()
    expected = brute_multiclass_aum(p64, y.numpy(), "rate", average)
    assert abs(expected - brute_multiclass_aum(softmax64(p64), y.numpy(), "rate", average)) > 1e-3
    got = aum(p, y, average=average).item()
    assert got == pytest.approx(expected, abs=1e-5), (got, expected)


# ---------------------------------------------------------------------------- one class ---

@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("shape", ["n", "n1", "n2"])
def test_one_class_batch_is_zero_and_attached(normalize, label, shape):
    rng = np.random.default_rng(label)
    s = rng.normal(size=(16, 2) if shape == "n2" else (16, 1) if shape == "n1" else (16,))
    x = torch.tensor(s, requires_grad=True)
    v = aum(x, torch.full((16,), label), normalize=normalize)
    assert v.item() == 0.0
    assert v.requires_grad
    v.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_one_class_batch_through_a_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    loss = aum(model(torch.randn(8, 3)), torch.ones(8, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(model.weight.grad, torch.zeros_like(model.weight))


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_multiclass_single_label_batch(average):
    """All rows of one class: macro has no class with both labels (0, attached); micro pools K columns."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 3))
    y = np.zeros(6, dtype=np.int64)
    x = torch.tensor(z, requires_grad=True)
    v = aum(x, torch.from_numpy(y), average=average)
    assert v.item() == pytest.approx(brute_multiclass_aum(softmax64(z), y, "rate", average), abs=TOL)
    assert v.requires_grad
    v.backward()
    if average == "macro":
        assert v.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("normalize", ["rate", "count"])
def test_sync_free_tie_path_matches_the_oracle(monkeypatch, normalize):
    """The path GPUs take (group bounds for every element, no host-device sync), forced on the CPU."""
    import fastai_aum.functional as F
    import fastai_aum.functional.aum_loss as aum_module
    monkeypatch.setattr(aum_module, "_SPARSE_TIES_ON", ())
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 12))
        s = rng.integers(-2, 3, n).astype(np.float64)
        y = rng.integers(0, 2, n)
        got = F.aum_directional_derivatives(torch.tensor(s), torch.tensor(y), normalize).numpy()
        np.testing.assert_allclose(got, brute_directional_derivatives(s, y, normalize), atol=1e-9)
    z = torch.randint(-2, 3, (30, 4)).double().requires_grad_()
    labels = torch.arange(30) % 4
    F.aum(z, labels, normalize, average="macro").backward()
    dense = z.grad.clone()
    monkeypatch.setattr(aum_module, "_SPARSE_TIES_ON", ("cpu",))
    z.grad = None
    F.aum(z, labels, normalize, average="macro").backward()
    torch.testing.assert_close(dense, z.grad)


# --------------------------------------------------------------------------- labels by name ---

@pytest.mark.parametrize("neg, pos", [("ok", "fraud"), ("fraud", "ok"), (1, 0), (-1, 1)])
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_labels_by_name_vs_brute_force(neg, pos, normalize):
    """`target == pos_label` is positive; two columns are the sorted labels (score `z_pos - z_other`)."""
    rng = np.random.default_rng(21)
    for _ in range(30):
        s, y = _random_binary(rng)
        t = np.asarray([neg, pos], dtype=object if isinstance(neg, str) else None)[y]
        leaf = torch.tensor(s, requires_grad=True)
        value = aum(leaf, t, normalize, pos_label=pos)
        assert value.item() == pytest.approx(brute_aum(s, y, normalize), abs=TOL)
        lr = brute_directional_derivatives(s, y, normalize)
        (grad,) = torch.autograd.grad(value, leaf)
        np.testing.assert_allclose(grad.numpy(), lr.mean(1), atol=TOL)
        got = aum_directional_derivatives(torch.tensor(s), list(t), normalize, pos_label=pos)
        np.testing.assert_allclose(got.numpy(), lr, atol=TOL)
        columns = np.stack([np.zeros_like(s), s], 1)
        columns = columns if neg < pos else columns[:, ::-1].copy()
        assert aum(columns, t, normalize, pos_label=pos).item() == pytest.approx(brute_aum(s, y, normalize), abs=TOL)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_multiclass_labels_by_name_vs_brute_force(average):
    """K class labels by name: the sorted labels (or `labels=`) name the score columns, as for `auroc`."""
    rng = np.random.default_rng(3)
    classes = np.array(["ant", "bee", "cat"])
    for _ in range(10):
        z, y = _multiclass(rng, 12, 3)
        y[:3] = [0, 1, 2]
        expected = brute_multiclass_aum(softmax64(z), y, "rate", average)
        assert aum(torch.tensor(z), classes[y], average=average).item() == pytest.approx(expected, abs=TOL)
        assert aum(torch.tensor(z), list(classes[y]), average=average, labels=list(classes)).item() == \
            pytest.approx(expected, abs=TOL)
    with pytest.raises(ValueError, match=r"`pos_label` names the positive class of binary scores"):
        aum(torch.rand(3, 3), ["ant", "bee", "cat"], pos_label="ant")
