"""Probability calibration of binary scores (Platt scaling, isotonic regression) and the scores of
probabilities (Brier score, log loss), as scikit-learn defines them (pure torch)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import as_tensor, prepare
from .thresholds import binary_problem

__all__ = ["PlattScaling", "platt_scaling", "IsotonicCalibration", "isotonic_calibration", "brier_score",
           "log_loss"]


def _calibration_input(scores) -> tuple[Tensor, torch.dtype]:
    """Binary scores as float64 (shape (N,) for (N, 1) and (N, 2) input, whose score is z1 - z0), and
    the float dtype to return calibrated probabilities in."""
    s = scores.detach() if isinstance(scores, Tensor) else as_tensor(scores, "scores").double()
    out = s.dtype if s.dtype in (torch.float32, torch.float64) else torch.float32 if s.is_floating_point() \
        else torch.float64
    if s.ndim == 2 and s.shape[1] == 2:
        return s[:, 1].double() - s[:, 0].double(), out
    if s.ndim == 2 and s.shape[1] == 1:
        return s[:, 0].double(), out
    if s.ndim > 1:
        raise ValueError(f"`scores` must have shape (), (N,), (N, 1) or (N, 2), got {tuple(s.shape)}")
    return s.double(), out


# ------------------------------------------------------------------------------------------ Platt ---

class PlattScaling(NamedTuple):
    """A fitted Platt scaling: probability = sigmoid(slope * score + intercept). Call it on scores.

    Args:
        slope: the slope of the scores.
        intercept: the intercept.
    """
    slope: float
    intercept: float

    def __call__(self, scores: Tensor) -> Tensor:
        """Calibrated probabilities of binary scores, computed in float64, returned in the scores' float
        dtype (float32 for half, float64 for integers).

        Args:
            scores: (), (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns).
        """
        s, dtype = _calibration_input(scores)
        return torch.sigmoid(self.slope * s + self.intercept).to(dtype)


def _nll(x: Tensor, t: Tensor, a: float, b: float) -> float:
    """Mean negative log-likelihood of targets `t` under sigmoid(a * x + b), overflow-free."""
    z = a * x + b
    return float((torch.nn.functional.softplus(z) - t * z).mean())


def _fit_logistic(x: Tensor, t: Tensor, max_iter: int, tol: float) -> tuple[float, float]:
    """Maximum likelihood (a, b) of sigmoid(a * x + b) for standardised `x` and targets `t` in [0, 1]:
    damped Newton with step halving, so the loss never increases and nothing becomes NaN."""
    mean_t = float(t.mean())
    a, b = 0.0, math.log(mean_t / (1 - mean_t))
    loss = _nll(x, t, a, b)
    for _ in range(max_iter):
        p = torch.sigmoid(a * x + b)
        r, w = p - t, p * (1 - p)
        g0, g1, h00, h01, h11 = torch.stack([r * x, r, w * x * x, w * x, w]).mean(1).tolist()
        damping = 1e-12 * (h00 + h11) + 1e-300
        h00, h11 = h00 + damping, h11 + damping
        det = h00 * h11 - h01 * h01
        if det > 0:
            da, db = -(h11 * g0 - h01 * g1) / det, -(h00 * g1 - h01 * g0) / det
        else:  # flat curvature: a gradient step instead
            da, db = -g0, -g1
        decrement = -(g0 * da + g1 * db)  # the Newton decrement squared: twice the predicted decrease
        if not math.isfinite(decrement) or decrement <= 0:
            break
        step = 1.0
        for _ in range(60):
            new_loss = _nll(x, t, a + step * da, b + step * db)
            if new_loss <= loss:
                break
            step /= 2
        else:
            break  # no step decreases the loss: the optimum to rounding
        a, b, loss = a + step * da, b + step * db, new_loss
        if decrement <= tol:
            break
    return a, b


def platt_scaling(preds, target, *, prior_correction: bool = True, max_iter: int = 100,
                  tol: float = 1e-12, pos_label=None) -> PlattScaling:
    """Fit Platt scaling, sigmoid(slope * score + intercept), by maximum likelihood on binary scores.

    With `prior_correction` (Platt 1999, as scikit-learn's `CalibratedClassifierCV(method='sigmoid')`)
    positives are fitted to (n_pos + 1) / (n_pos + 2) and negatives to 1 / (n_neg + 2), which keeps the
    fit finite when the scores separate the classes; without it such data has no maximum-likelihood
    fit, and a ValueError says so. Newton's method runs in float64. Scores that are all equal give slope 0.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns).
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels with `pos_label`; both classes needed.
        prior_correction: fit Platt's corrected targets instead of 0 and 1.
        max_iter: the most Newton steps.
        tol: stop when the Newton decrement falls below it.
        pos_label: the positive label (needed unless the labels are {0, 1} or {-1, 1}), as for `best_threshold`.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
        raise ValueError(f"`tol` must be a number >= 0, got {tol!r}")
    score, positive = binary_problem(preds, target, what="platt_scaling", pos_label=pos_label)
    s = score.double()
    n_pos = int(positive.sum())
    n_neg = len(s) - n_pos
    if prior_correction:
        hit, miss = s.new_tensor((n_pos + 1) / (n_pos + 2)), s.new_tensor(1 / (n_neg + 2))
        t = torch.where(positive, hit, miss)
    else:
        t = positive.double()
    lo, hi = float(s.min()), float(s.max())
    center, scale = lo / 2 + hi / 2, hi / 2 - lo / 2  # maps the scores onto [-1, 1] without overflow
    if scale == 0:  # all scores equal: only the intercept is identified
        mean_t = float(t.mean())
        return PlattScaling(0.0, math.log(mean_t / (1 - mean_t)))
    if not prior_correction:
        lo_pos, hi_pos = float(s[positive].min()), float(s[positive].max())
        lo_neg, hi_neg = float(s[~positive].min()), float(s[~positive].max())
        if hi_neg <= lo_pos or hi_pos <= lo_neg:
            raise ValueError("`preds` separate the classes of `target` perfectly (or up to ties), so the "
                             "maximum-likelihood Platt scaling does not exist (its slope is infinite); "
                             "use prior_correction=True")
    a, b = _fit_logistic(s / scale - center / scale, t, max_iter, tol)  # Newton is affine invariant
    return PlattScaling(slope=a / scale, intercept=b - a * center / scale)


# --------------------------------------------------------------------------------------- isotonic ---

class IsotonicCalibration(NamedTuple):
    """A fitted isotonic calibration. Call it on scores: linear interpolation, clipped outside [x[0], x[-1]].

    Args:
        x: increasing breakpoints (float64).
        y: non-decreasing probabilities at them.
    """
    x: Tensor
    y: Tensor

    def __call__(self, scores: Tensor) -> Tensor:
        """Calibrated probabilities of binary scores, as scikit-learn's `IsotonicRegression(
        out_of_bounds='clip')` predicts them, in the scores' float dtype.

        Args:
            scores: (), (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns).
        """
        s, dtype = _calibration_input(scores)
        x, y = self.x.to(s.device), self.y.to(s.device)
        if len(x) == 1:
            return y[0].expand(s.shape).to(dtype)
        s = s.clamp(x[0], x[-1])
        i = torch.searchsorted(x, s, right=True).clamp(1, len(x) - 1)  # x[i - 1] <= s < x[i], or the last piece
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        return (y0 + (y1 - y0) * ((s - x0) / (x1 - x0))).to(dtype)


def _pool_adjacent_violators(y: list[float], w: list[float]) -> list[float]:
    """Weighted least-squares non-decreasing fit of the sequence `y` (weights `w`), one value per element."""
    means, weights, sizes = [], [], []
    for yi, wi in zip(y, w):
        means.append(yi)
        weights.append(wi)
        sizes.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            w2 = weights[-2] + weights[-1]
            means[-2] = (weights[-2] * means[-2] + weights[-1] * means[-1]) / w2
            weights[-2], sizes[-2] = w2, sizes[-2] + sizes[-1]
            del means[-1], weights[-1], sizes[-1]
    return [m for m, k in zip(means, sizes) for _ in range(k)]


def isotonic_calibration(preds, target, *, pos_label=None) -> IsotonicCalibration:
    """Fit an isotonic (non-decreasing) calibration of binary scores, as scikit-learn's
    `IsotonicRegression(out_of_bounds='clip', y_min=0, y_max=1)`.

    Tied scores are first merged into one point (mean label, weighted by their count); then
    pool-adjacent-violators.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns).
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels with `pos_label`; both classes needed.
        pos_label: the positive label (needed unless the labels are {0, 1} or {-1, 1}), as for `best_threshold`.
    """
    score, positive = binary_problem(preds, target, what="isotonic_calibration", pos_label=pos_label)
    s = score.double().cpu()
    x, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    hits = torch.zeros(len(x), dtype=torch.float64).index_add_(0, inverse, positive.double().cpu())
    w = counts.double()
    y = torch.tensor(_pool_adjacent_violators((hits / w).tolist(), w.tolist()), dtype=torch.float64).clamp(0, 1)
    if len(y) > 2:  # drop the interior points of constant runs, as scikit-learn does (same interpolation)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[1:-1] = (y[1:-1] != y[:-2]) | (y[1:-1] != y[2:])
        x, y = x[keep], y[keep]
    return IsotonicCalibration(x=x, y=y)


# ------------------------------------------------------------------------------------ proper scores ---

def _probabilities(probs, target, pos_label, implicit_positive: bool) -> tuple[Tensor, Tensor]:
    """Probabilities of the positive class (float64) and labels (float64) of binary `(probs, target)`.

    `probs` is (N,) or (N, 1) positive-class probabilities, or (N, 2) probability rows, one column per
    sorted label (the positive class's used). `implicit_positive`: two labels other than numbers need no
    `pos_label` (the greater is positive).
    """
    if isinstance(probs, Tensor):
        probs = probs.detach()
    try:
        inp = prepare(probs, target, allow_empty=True, pos_label=pos_label, implicit_positive=implicit_positive)
    except (ValueError, TypeError) as e:
        raise type(e)(str(e).replace("`preds`", "`probs`")) from None
    p = inp.scores
    if not inp.binary:
        raise ValueError(f"`probs` must have shape (N,), (N, 1) or (N, 2) (binary only), got shape {tuple(p.shape)}")
    if len(p) == 0:
        raise ValueError("`probs` and `target` are empty: there is nothing to score")
    p = (p if p.ndim == 1 else p[:, 1]).double()
    bad = int(((p < 0) | (p > 1)).sum())
    if bad:
        raise ValueError(f"`probs` must be probabilities in [0, 1], got {bad} value(s) outside, "
                         f"from {float(p.min()):g} to {float(p.max()):g}")
    labels = inp.labels
    return p, (labels if labels.dtype == torch.bool else labels == 1).double()


def brier_score(probs, target, *, pos_label=None) -> Tensor:
    """The Brier score of binary positive-class probabilities: mean (p - y)^2, a float64 0-d tensor, as
    scikit-learn's `brier_score_loss`.

    Args:
        probs: (N,) or (N, 1) positive-class probabilities, or (N, 2) probability rows, one column per sorted
            label (column 1 for {0, 1} labels).
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels with `pos_label`.
        pos_label: the positive label, whose probability (N,) `probs` are (needed unless the labels are
            {0, 1} or {-1, 1}, as scikit-learn needs it).
    """
    p, y = _probabilities(probs, target, pos_label, implicit_positive=False)
    return ((p - y) ** 2).mean()


def log_loss(probs, target, eps: float = 1e-15, *, pos_label=None) -> Tensor:
    """Binary log loss: mean -[y log p + (1 - y) log(1 - p)] with p clipped to [eps, 1 - eps], float64 0-d.

    Args:
        probs: (N,) or (N, 1) positive-class probabilities, or (N, 2) probability rows, one column per sorted
            label (column 1 for {0, 1} labels).
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels: the greater is positive, as
            scikit-learn's `log_loss` reads them, unless `pos_label` says.
        eps: the clipping of p, in [0, 0.5).
        pos_label: the positive label, whose probability (N,) `probs` are.
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 0.5:
        raise ValueError(f"`eps` must be a number in [0, 0.5), got {eps!r}")
    p, y = _probabilities(probs, target, pos_label, implicit_positive=True)
    p = p.clamp(eps, 1 - eps)
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()
