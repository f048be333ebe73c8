"""Slow, obviously-correct reference implementations (numpy/python, float64).

Independent of fastai_aum on purpose: nothing here imports the package. They evaluate the
definitions in `docs/definitions.md` literally, in O(N^2), and are only meant for small inputs.
"""
from __future__ import annotations

import numpy as np


def _as_arrays(scores, labels):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError("scores and labels must have the same length")
    return s, y.astype(bool) if y.dtype == bool else (y == 1)


def _fp_fn(s, pos, c, normalize, w=None):
    """FP(c) and FN(c) when example i is predicted positive iff s_i + c > 0; with weights `w`, the
    weight of the negatives predicted positive and of the positives predicted negative."""
    w = np.ones(len(s)) if w is None else w
    predicted_positive = s + c > 0
    fp = float(np.sum(w * (predicted_positive & ~pos)))
    fn = float(np.sum(w * (~predicted_positive & pos)))
    if normalize == "rate":
        fp /= np.sum(w * ~pos) or 1.0
        fn /= np.sum(w * pos) or 1.0
    elif normalize != "count":
        raise ValueError(normalize)
    return fp, fn


def brute_aum(scores, labels, normalize="rate", weights=None) -> float:
    """Integral over c of min(FP(c), FN(c)), evaluated piece by piece.

    The integrand is constant between consecutive distinct breakpoints t_i = -s_i, zero below the
    smallest (FP = 0) and above the largest (FN = 0); so the integral is the sum over consecutive
    breakpoints of (width) * min(FP, FN) evaluated at the midpoint. A missing class gives 0.
    `weights` (N non-negative numbers) weigh FP and FN (and their totals, for 'rate').
    """
    s, pos = _as_arrays(scores, labels)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if pos.all() or (~pos).all():
        return 0.0
    t = np.unique(-s)  # sorted distinct breakpoints
    total = 0.0
    for lo, hi in zip(t[:-1], t[1:]):
        fp, fn = _fp_fn(s, pos, (lo + hi) / 2, normalize, w)
        total += (hi - lo) * min(fp, fn)
    # sanity: the integrand really is zero outside [t_min, t_max]
    if len(t):
        assert min(_fp_fn(s, pos, t[0] - 1.0, normalize, w)) == 0
        assert min(_fp_fn(s, pos, t[-1] + 1.0, normalize, w)) == 0
    return total


def brute_directional_derivatives(scores, labels, normalize="rate", h=None, weights=None) -> np.ndarray:
    """(N, 2) array of [left, right] one-sided finite differences of `brute_aum`.

    right = (AUM(s + h e_i) - AUM(s)) / h, left = (AUM(s) - AUM(s - h e_i)) / h. AUM is piecewise
    linear, so with h far below the smallest nonzero gap between distinct scores these are exact up
    to rounding.
    """
    s, _ = _as_arrays(scores, labels)
    y = np.asarray(labels).reshape(-1)
    distinct = np.unique(s)
    gaps = np.diff(distinct)
    if h is None:
        scale = gaps.min() if len(gaps) else max(1.0, float(np.abs(s).max(initial=0.0)))
        h = scale * 1e-3
    base = brute_aum(s, y, normalize, weights)
    out = np.zeros((len(s), 2))
    for i in range(len(s)):
        up, down = s.copy(), s.copy()
        up[i] += h
        down[i] -= h
        out[i, 1] = (brute_aum(up, y, normalize, weights) - base) / h
        out[i, 0] = (base - brute_aum(down, y, normalize, weights)) / h
    return out


def softmax64(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def brute_multiclass_aum(probs, labels, normalize="rate", average="micro") -> float:
    """One-vs-rest AUM of an (N, K) probability matrix, from the binary brute force.

    micro: all N*K (p_ik, [y_i == k]) pairs pooled into one binary problem.
    macro: mean of the per-class binary AUMs over classes with at least one positive and one negative.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    k = p.shape[1]
    onehot = y[:, None] == np.arange(k)[None, :]
    if average == "micro":
        return brute_aum(p.reshape(-1), onehot.reshape(-1).astype(int), normalize)
    values = []
    for c in range(k):
        col = onehot[:, c]
        if col.any() and not col.all():
            values.append(brute_aum(p[:, c], col.astype(int), normalize))
    return float(np.mean(values)) if values else 0.0


def brute_multilabel_aum(scores, multi_hot, normalize="rate", average="micro", weights=None) -> float:
    """Multi-label AUM of (N, L) scores against an (N, L) 0/1 matrix, from the binary brute force.

    micro: all N*L (s_il, y_il) pairs pooled (example i's weight repeated over its labels).
    macro: mean of the per-label binary AUMs over labels whose both classes have weight.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(multi_hot).astype(bool)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    if average == "micro":
        return brute_aum(s.reshape(-1), y.reshape(-1).astype(int), normalize, np.repeat(w, s.shape[1]))
    values = [brute_aum(s[:, c], y[:, c].astype(int), normalize, w) for c in range(s.shape[1])
              if np.sum(w * y[:, c]) > 0 and np.sum(w * ~y[:, c]) > 0]
    return float(np.mean(values)) if values else 0.0
