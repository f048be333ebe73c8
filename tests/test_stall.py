"""The stall case: at ties, `aum`'s gradient (mean of left and right derivatives) is not zero, so a
model initialised at zero learns; plain autograd through argsort returns 0 there and never moves."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fastai_aum.functional.baseline import blog_autograd_aum, plain_autograd_aum
from fastai_aum.functional import aum
from oracles import brute_aum, brute_directional_derivatives

STEPS = 50
LR = 1.0


@pytest.mark.parametrize("normalize", ["rate", "count"])
@pytest.mark.parametrize("labels", [[0, 1], [1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 0, 1, 1, 0]])
def test_gradient_at_a_tie_is_not_zero(normalize, labels):
    y = np.array(labels)
    s = torch.zeros(len(y), dtype=torch.float64, requires_grad=True)
    value = aum(s, torch.from_numpy(y), normalize=normalize)
    assert value.item() == 0.0 == brute_aum(np.zeros(len(y)), y, normalize)  # constant scores: a trivial minimum
    value.backward()
    expected = brute_directional_derivatives(np.zeros(len(y)), y, normalize).mean(1)
    assert np.abs(expected).min() > 0  # the oracle says every example has a nonzero mean derivative
    np.testing.assert_allclose(s.grad.numpy(), expected, atol=1e-9)
    # descending the gradient raises positives and lowers negatives
    assert (s.grad[torch.from_numpy(y) == 1] < 0).all() and (s.grad[torch.from_numpy(y) == 0] > 0).all()


def test_plain_autograd_stalls_at_a_tie_in_input_order():
    y = torch.tensor([1, 1, 0, 0, 0])  # positives first
    s = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    value = plain_autograd_aum(s, y)
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(s.grad, torch.zeros(5, dtype=torch.float64))


def _dataset(n_pos=60, n_neg=140, dim=5, seed=0):
    """Features carrying signal (positives shifted by +1.2 on every axis); positives listed first."""
    g = torch.Generator().manual_seed(seed)
    x_pos = torch.randn(n_pos, dim, generator=g) + 1.2
    x_neg = torch.randn(n_neg, dim, generator=g)
    x = torch.cat([x_pos, x_neg])
    y = torch.cat([torch.ones(n_pos, dtype=torch.long), torch.zeros(n_neg, dtype=torch.long)])
    return x, y


def _train(loss_fn, x, y, steps=STEPS, lr=LR):
    model = torch.nn.Linear(x.shape[1], 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    grad_norms = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x)[:, 0], y)
        loss.backward()
        grad_norms.append(float(model.weight.grad.norm()) + float(model.bias.grad.abs()))
        opt.step()
    with torch.no_grad():
        scores = model(x)[:, 0].double().numpy()
    return model, scores, grad_norms


def test_dataset_is_learnable():
    """Sanity of the setup: the best linear direction (mean difference) ranks well, constant scores do not."""
    x, y = _dataset()
    direction = x[y == 1].mean(0) - x[y == 0].mean(0)
    assert roc_auc_score(y.numpy(), (x @ direction).numpy()) > 0.9
    assert roc_auc_score(y.numpy(), np.zeros(len(y))) == 0.5


def test_aum_trains_from_zero_init():
    x, y = _dataset()
    model, scores, grad_norms = _train(lambda s, t: aum(s, t), x, y)
    assert grad_norms[0] > 0  # the first step, at the all-tied start, already has a gradient
    assert model.weight.abs().sum().item() > 0
    train_auroc = roc_auc_score(y.numpy(), scores)
    assert train_auroc > 0.85, train_auroc  # zero gradient leaves 0.5; a sign error gives ~0.05
    # and close to what the best linear direction (mean difference) achieves
    direction = x[y == 1].mean(0) - x[y == 0].mean(0)
    assert train_auroc > roc_auc_score(y.numpy(), (x @ direction).numpy()) - 0.05


def test_plain_autograd_aum_does_not_move():
    x, y = _dataset()
    model, scores, grad_norms = _train(plain_autograd_aum, x, y)
    assert grad_norms == [0.0] * STEPS  # gradient exactly zero at every step
    assert torch.equal(model.weight, torch.zeros_like(model.weight))
    assert torch.equal(model.bias, torch.zeros_like(model.bias))
    assert np.all(scores == 0)
    assert roc_auc_score(y.numpy(), scores) == 0.5


@pytest.mark.parametrize("tied", [False, True])
def test_the_blog_baseline_is_aum_by_its_own_route(tied):
    """The benchmarks' peer, the blog's autograd AUM, has the brute-force value (float32 rates, as the blog's
    integer counts divided give), at ties too, and autograd gives it a gradient of the right size away from ties."""
    rng = np.random.default_rng(3 + tied)
    for n in (2, 7, 50, 400):
        s = rng.normal(size=n)
        s = np.round(s * 2) / 2 if tied else s
        y = (rng.random(n) < 0.4).astype(np.int64)
        y[:2] = [0, 1]
        x = torch.tensor(s, requires_grad=True)
        value = blog_autograd_aum(x, torch.tensor(y))
        assert value.item() == pytest.approx(brute_aum(s, y), rel=1e-6, abs=1e-7)
        value.backward()
        if not tied:
            ours = torch.tensor(s, requires_grad=True)
            aum(ours, torch.tensor(y)).backward()
            assert torch.allclose(x.grad, ours.grad, rtol=1e-6, atol=1e-7)
