"""The differentiable AUM loss (Area Under Min(FP, FN)) and its directional derivatives (pure torch)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._inputs import (Inputs, check_choice, check_finite, check_multiclass_margin, check_non_negative,
                       check_sample_weight, prepare)
from .distributed import check_distributed, gather_inputs, is_distributed
from ._scores import binary_score, one_hot, positive_mask
from ._sorting import find_ties, group_bounds, sort_rows_descending

__all__ = ["aum", "aum_directional_derivatives", "binary_aum_on_host"]


def _aum_rows(scores: Tensor, positive: Tensor, normalize: str, need_derivatives: bool):
    """AUM of (N,) scores or of each row of (B, N) scores and, if asked, the left and right
    directional derivatives.

    Sorting the scores in decreasing order sorts the thresholds `-s` in increasing order. Once the
    constant passes sorted element k, FP is the negative weight up to k and FN the positive weight
    after k; AUM sums the gaps between consecutive thresholds times min(FP, FN). Returns the values,
    the derivatives in sorted order (or None), the sort permutation and the number of positives (a
    Python number for one row on the CPU, else (B, 1)).
    """
    # Stable: the tied elements' derivatives do not depend on the order of ties, but their last bits do.
    v, perm = sort_rows_descending(scores)
    y = positive.gather(-1, perm)
    n = v.shape[-1]
    sparse = v.device.type in _SPARSE_TIES_ON
    tp = y.cumsum(-1, dtype=torch.float64)
    fp = _one_to(n, v.device) - tp
    if sparse and v.ndim == 1:  # on the CPU, class counts as Python numbers save tensor operations
        n_pos = tp[-1].item()
        n_neg = n - n_pos
    else:
        n_pos, n_neg = tp[..., -1:], fp[..., -1:]
    fn = torch.rsub(tp, n_pos)  # n_pos - tp, without the Python-level wrapper of float.__sub__
    w_neg = w_pos = 1.0
    if normalize == "rate":  # a missing class gets weight 1, harmlessly: its count is 0 everywhere
        if isinstance(n_pos, float):
            w_neg, w_pos = 1 / max(n_neg, 1.0), 1 / max(n_pos, 1.0)  # the same IEEE division as reciprocal_
        else:
            w_neg, w_pos = torch.stack([n_neg, n_pos]).clamp_min_(1).reciprocal_()
        fp, fn = fp.mul_(w_neg), fn.mul_(w_pos)
    m = torch.minimum(fp, fn)
    vd = v if v.dtype == torch.float64 else v.double()  # gaps between float32 scores are exact in float64
    gaps = vd[..., :-1] - vd[..., 1:]  # tied gaps are 0
    value = (gaps * m[..., :-1]).sum(-1)
    if not need_derivatives:
        return value, None, perm, n_pos
    if not sparse:  # no host-device sync: group bookkeeping for every element
        return value, _dense_tied_derivatives(v, y, fp, fn, w_neg, w_pos), perm, n_pos
    # One reduction tells whether there are ties at all (usually not: no group bookkeeping then). The
    # gaps are >= 0; a NaN gap (non-finite scores, only with validate=False) goes to `find_ties` too.
    untied = n == 1 or gaps.min().item() > 0
    if not untied and n < _COMPACT_TIES_FROM:  # a short row: bookkeeping for every element costs fewer operations
        return value, _dense_tied_derivatives(v, y, fp, fn, w_neg, w_pos), perm, n_pos  # than compacting
    # Away from ties the derivative by sorted score k is min(FP, FN) after k minus before it.
    if m.ndim == 1:
        grad = torch.diff(m, prepend=_ZERO)
    else:
        grad = m.clone()
        grad[..., 1:].sub_(m[..., :-1])
    if untied:
        return value, (grad, grad), perm, n_pos
    left, right = _tied_derivatives(v, y, fp, fn, w_neg, w_pos, grad)
    return value, (left, right), perm, n_pos


def _dense_tied_derivatives(v, y, fp, fn, w_neg, w_pos):
    """Left and right derivatives with the group bookkeeping done for every element (no host-device
    sync off the CPU)."""
    start, end = group_bounds(v)
    yd = y.double()
    neg, pos = (1 - yd).mul_(w_neg), yd.mul(w_pos)
    # FP and FN before each element crossed, at its group's first element: before the group crossed
    fp_before, fn_before = (fp - neg).gather(-1, start), (fn + pos).gather(-1, start)
    return _group_derivatives(neg, pos, fp_before, fn_before, fp.gather(-1, end), fn.gather(-1, end))


def _tied_derivatives(v, y, fp, fn, w_neg, w_pos, grad):
    """Left and right derivatives on the CPU: `grad` away from ties, group bookkeeping for the tied
    elements only (there are usually few)."""
    one_row = v.ndim == 1
    if one_row:
        v, y, fp, fn, grad = v[None], y[None], fp[None], fn[None], grad[None]
    t = find_ties(v)
    if t is None:
        return (grad[0], grad[0]) if one_row else (grad, grad)
    if isinstance(w_neg, Tensor):
        w_neg, w_pos = w_neg[t.row, 0], w_pos[t.row, 0]
    labels, y_start = y[t.row, t.col].double(), y[t.row, t.start].double()
    fp_before = fp[t.row, t.start] - (1 - y_start) * w_neg
    fn_before = fn[t.row, t.start] + y_start * w_pos
    left, right = grad, grad.clone()
    left[t.row, t.col], right[t.row, t.col] = _group_derivatives(
        (1 - labels) * w_neg, labels * w_pos, fp_before, fn_before, fp[t.row, t.end], fn[t.row, t.end])
    return (left[0], right[0]) if one_row else (left, right)


def _group_derivatives(neg, pos, fp_before, fn_before, fp_after, fn_after):
    """Left and right derivatives of elements in groups of equal scores, from each one's share of FP
    (`neg`) and FN (`pos`), and FP, FN before its group's first element crossed and after its last.

    Moving a tied element changes only the interval next to its group: moving it up (right) opens one
    where it alone has crossed; moving it down (left), one where all its group but it has.
    """
    right = torch.minimum(fp_before + neg, fn_before - pos) - torch.minimum(fp_before, fn_before)
    left = torch.minimum(fp_after, fn_after) - torch.minimum(fp_after - neg, fn_after + pos)
    return left, right


_SPARSE_TIES_ON = ("cpu",)  # devices where a sync to count the tied elements costs nothing
_COMPACT_TIES_FROM = 8192  # on those, rows at least this long compact their tied elements (measured on the CPU)
_ZERO = torch.zeros(1, dtype=torch.float64)
_ONE_TO = torch.arange(1, 2**14 + 1, dtype=torch.float64)  # read only


def _one_to(n: int, device: torch.device) -> Tensor:
    """float64 1, 2, ..., n; on the CPU a view of a shared tensor for small n (one operation fewer)."""
    if n <= len(_ONE_TO) and device.type == "cpu":
        return _ONE_TO[:n]
    return torch.arange(1, n + 1, device=device, dtype=torch.float64)


def _unsort(sorted_values: Tensor, perm: Tensor, dtype: torch.dtype) -> Tensor:
    src = _cast(sorted_values, dtype)
    return torch.empty_like(src).scatter_(-1, perm, src)


def _cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x if x.dtype == dtype else x.float() if dtype == torch.float32 else x.to(dtype)


def _forward(scores: Tensor, positive: Tensor, normalize: str, need_grad: bool, counts: list | None = None):
    """AUM of (N,) scores or of each row of (B, N) scores, and (when `need_grad`) its gradient, unsorted
    (else None); the number of positives is appended to `counts`, if given."""
    value, lr, perm, n_pos = _aum_rows(scores, positive, normalize, need_derivatives=need_grad)
    if counts is not None:
        counts.append(n_pos)
    value = _cast(value, scores.dtype)
    if lr is None:
        return value, None
    left, right = lr
    return value, _unsort(left if left is right else (left + right) / 2, perm, scores.dtype)


class _AUMFunction(torch.autograd.Function):
    """AUM of (N,) scores, or of each row of (B, N) scores, and (when `need_grad`) its gradient.

    Its gradient is the mean of the left and right directional derivatives: at ties that does not
    depend on how the sort ordered them, and it is not zero where autograd through argsort can be
    (see `fastai_aum.baseline`). The forward computes it along with the value, from the same sort,
    and returns it as a second, non-differentiable output (empty unless `need_grad`), so that
    `torch.func.grad` works (forward and `setup_context` are separate). `vmap` is not supported: the
    forward finds ties with host-device syncs. Plain autograd uses `_EagerAUMFunction` instead."""

    @staticmethod
    def forward(scores: Tensor, positive: Tensor, normalize: str, need_grad: bool) -> tuple[Tensor, Tensor]:
        value, grad = _forward(scores, positive, normalize, need_grad)
        return value, scores.new_empty(0) if grad is None else grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)
        ctx.need_grad = inputs[3]

    @staticmethod
    def backward(ctx, grad_output: Tensor, _grad_of_grad):  # AUM is piecewise linear: its gradient's derivative is 0
        (grad,) = ctx.saved_tensors
        if not ctx.need_grad:
            raise RuntimeError("_AUMFunction: the gradient was not computed in the forward (need_grad=False)")
        return grad_output.unsqueeze(-1) * grad, None, None, None


class _EagerAUMFunction(torch.autograd.Function):
    """`_AUMFunction` for plain autograd (no torch.func transform active), with the same value and
    gradient. Its forward takes `ctx`: torch binds the arguments of a `setup_context`-style Function
    through `inspect.signature` on every call, which costs more than a small batch's whole AUM.
    With `two_outputs`, (N, 2) binary outputs are ranked as `z1 - z0` (and `margin` is applied) inside
    the one node: for a small batch the autograd nodes of a difference of columns cost more than the AUM."""

    @staticmethod
    def forward(ctx, scores: Tensor, positive: Tensor, normalize: str, counts: list | None = None,
                margin: float = 0.0, two_outputs: bool = False) -> Tensor:
        ranked = _shift(scores[:, 1] - scores[:, 0] if two_outputs else scores, positive, margin)
        value, grad = _forward(ranked, positive, normalize, True, counts)
        ctx.grad, ctx.two_outputs = grad, two_outputs  # neither an input nor an output: no save_for_backward checks
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = ctx.grad
        if ctx.two_outputs:
            g = grad_output * grad
            return torch.stack((-g, g), 1), None, None, None, None, None
        return (grad_output * grad if grad.ndim == 1 else grad_output.unsqueeze(-1) * grad), None, None, None, None, None


def _aum_apply(scores: Tensor, positive: Tensor, normalize: str) -> Tensor:
    if not (torch.is_grad_enabled() and scores.requires_grad):
        return _forward(scores, positive, normalize, False)[0]
    if torch._C._are_functorch_transforms_active():
        return _AUMFunction.apply(scores, positive, normalize, True)[0]
    return _EagerAUMFunction.apply(scores, positive, normalize)


def binary_aum_on_host(outputs: Tensor, positive: Tensor, normalize: str, margin: float = 0.0) -> tuple[Tensor, float]:
    """The hot path of `AUMLossFlat` on the CPU: the AUM of finite (N,) float32 or float64 CPU scores, or
    of (N, 2) outputs scored `z1 - z0` (N >= 2), against (N,) booleans, with `aum`'s value and gradient
    (the same bits) under `margin`, and the number of positives, from the same pass. No checks: the
    caller has made them."""
    counts = []
    two_outputs = outputs.ndim == 2
    if torch.is_grad_enabled() and outputs.requires_grad and not torch._C._are_functorch_transforms_active():
        return _EagerAUMFunction.apply(outputs, positive, normalize, counts, margin, two_outputs), counts[0]
    scores = _shift(outputs[:, 1] - outputs[:, 0] if two_outputs else outputs, positive, margin)
    if scores.requires_grad and torch.is_grad_enabled():
        return _AUMFunction.apply(scores, positive, normalize, True)[0], float(positive.sum())
    return _forward(scores, positive, normalize, False, counts)[0], counts[0]


def _weighted_rows(scores: Tensor, positive: Tensor, weight: Tensor, normalize: str, need_derivatives: bool):
    """`_aum_rows` with float64 sample weights ((N,) or the shape of `scores`): FP is the negative weight
    predicted positive, FN the positive weight predicted negative ('rate': over their totals). Every
    element's [left, right] derivative comes from its group of ties (an untied one is its own group)."""
    v, perm = sort_rows_descending(scores)
    y = positive.gather(-1, perm).double()
    w = weight.expand_as(scores).gather(-1, perm)
    b = y * w  # each element's share of the positive weight (FN falls by it as it crosses)
    a = w - b  # ... and of the negative weight (FP rises by it)
    fp, tp = a.cumsum(-1), b.cumsum(-1)
    fn = tp[..., -1:] - tp
    if normalize == "rate":  # a class without weight gets divisor 1, harmlessly: its weight is 0 everywhere
        w_neg = 1 / torch.where(fp[..., -1:] > 0, fp[..., -1:], 1.0)
        w_pos = 1 / torch.where(tp[..., -1:] > 0, tp[..., -1:], 1.0)
        fp, fn, a, b = fp * w_neg, fn * w_pos, a * w_neg, b * w_pos
    m = torch.minimum(fp, fn)
    vd = v if v.dtype == torch.float64 else v.double()
    value = ((vd[..., :-1] - vd[..., 1:]) * m[..., :-1]).sum(-1)
    if not need_derivatives:
        return value, None, perm
    start, end = group_bounds(v)
    fp_before, fn_before = (fp - a).gather(-1, start), (fn + b).gather(-1, start)  # before the element's group crossed
    return value, _group_derivatives(a, b, fp_before, fn_before, fp.gather(-1, end), fn.gather(-1, end)), perm


def _weighted_forward(scores: Tensor, positive: Tensor, weight: Tensor, normalize: str, need_grad: bool):
    """`_forward` with sample weights."""
    value, lr, perm = _weighted_rows(scores, positive, weight, normalize, need_grad)
    value = _cast(value, scores.dtype)
    return value, None if lr is None else _unsort((lr[0] + lr[1]) / 2, perm, scores.dtype)


class _WeightedAUMFunction(torch.autograd.Function):
    """`_AUMFunction` with sample weights (for plain autograd and torch.func alike)."""

    @staticmethod
    def forward(scores: Tensor, positive: Tensor, weight: Tensor, normalize: str) -> tuple[Tensor, Tensor]:
        return _weighted_forward(scores, positive, weight, normalize, True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)

    @staticmethod
    def backward(ctx, grad_output: Tensor, _grad_of_grad):
        (grad,) = ctx.saved_tensors
        return grad_output.unsqueeze(-1) * grad, None, None, None


def _weighted_apply(scores: Tensor, positive: Tensor, weight: Tensor, normalize: str) -> Tensor:
    if not (torch.is_grad_enabled() and scores.requires_grad):
        return _weighted_forward(scores, positive, weight, normalize, False)[0]
    return _WeightedAUMFunction.apply(scores, positive, weight, normalize)[0]


def _columns(inp: Inputs, probabilities: bool | None) -> tuple[Tensor, Tensor]:
    """(N, K) scores and (N, K) boolean membership of a multiclass (softmax, one-vs-rest) or multi-label problem."""
    if inp.multilabel:
        return inp.scores, inp.labels
    p = inp.scores if _are_probabilities(inp, probabilities) else torch.softmax(inp.scores, dim=1)
    return p, one_hot(inp.labels, inp.num_classes)


def _shift(scores: Tensor, member: Tensor, margin: float) -> Tensor:
    """The scores that AUM with a margin ranks: `scores - margin * member` (each positive held back by `margin`)."""
    return scores if margin == 0 else scores - margin * member.to(scores.dtype)


def _are_probabilities(inp: Inputs, probabilities: bool | None) -> bool:
    """Whether multiclass scores are probabilities: as the caller knows, else found out (a host-device sync)."""
    return inp.probabilities if probabilities is None else probabilities


def _weighted_aum(inp: Inputs, normalize: str, average: str, w: Tensor, validate: bool, margin: float,
                  probabilities: bool | None) -> Tensor:
    """`aum` with (N,) float64 sample weights."""
    if validate and not inp.multilabel:
        check_finite(inp.scores)
    if inp.binary:
        positive = positive_mask(inp.labels)
        return _weighted_apply(_shift(binary_score(inp.scores), positive, margin), positive, w, normalize)
    if margin and not inp.multilabel:
        check_multiclass_margin(margin)
    s, member = _columns(inp, probabilities)
    s = _shift(s, member, margin)
    if average == "micro":
        return _weighted_apply(s.reshape(-1), member.reshape(-1), w[:, None].expand_as(s).reshape(-1), normalize)
    values = _weighted_apply(s.T, member.T, w, normalize)
    pos_weight = (w[:, None] * member).sum(0)
    defined = (pos_weight > 0) & ((w[:, None] * ~member).sum(0) > 0)
    return values.sum() / defined.sum().clamp_min(1)


def aum(preds, target, normalize: str = "rate", average: str = "micro", *, margin: float = 0.0,
        sample_weight=None, pos_label=None, labels=None, validate: bool = True, distributed: str = "local") -> Tensor:
    """Differentiable Area Under Min(FP, FN), the sort-based ROC surrogate loss (Hillman & Hocking, 2023).

    AUM integrates, over the constant c added to every score, min(FP(c), FN(c)) of the decision
    `score + c > 0` (`docs/definitions.md`); its gradient is the mean of the left and right directional
    derivatives (they differ only at ties). Binary scores are `z1 - z0` for two columns; K > 2 columns
    go through softmax unless they already are probabilities (which costs a host-device sync off the
    CPU to find out), one-vs-rest; a multi-hot target ranks each label's own column (a logit, as it is).
    A problem with one class gives 0, still attached to the graph.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, (N, K > 2) multiclass logits or probabilities, or
            (N, L) multi-label scores.
        target: N labels, or a multi-hot (N, L) matrix of the shape of `preds` (multi-label); class labels
            may be strings, as for `roc_curve`.
        normalize: 'rate' divides FP by the (weighted) negatives and FN by the positives; 'count' does not.
        average: 'micro' pools all (score, label) pairs into one binary AUM; 'macro' averages the AUMs of
            the classes or labels with both classes.
        margin: m >= 0 ranks each positive's (member's) score minus m (multiclass: the probabilities, so
            m < 1): the loss is 0 only when every positive beats every negative by m.
        sample_weight: N non-negative weights of FP and FN; each score's gradient scales with its weight.
        pos_label: the positive label of binary scores (needed unless the labels are {0, 1} or {-1, 1}); for
            (N, 2) scores, whose columns are the two sorted labels, the score is `z_pos - z_other`.
        labels: the K class labels in sorted order, one per score column (default: the sorted labels).
        validate: False skips the value checks (finiteness, label range).
        distributed: 'local' ranks this process's rows; 'global' (in a torch.distributed group) ranks every
            rank's rows together, numeric labels only: every rank gets the AUM of the whole batch, and the
            gradient of its own rows times the world size, so that DDP's mean of gradients is the gradient of
            the global batch's AUM (`functional.distributed.gather_batch`). Every rank must call it.
    """
    if check_distributed(distributed) == "global" and is_distributed():
        preds, target, sample_weight = gather_inputs(preds, target, sample_weight)
    return _aum(preds, target, normalize, average, margin=margin, sample_weight=sample_weight, pos_label=pos_label,
                labels=labels, validate=validate)


def _aum(preds, target, normalize: str = "rate", average: str = "micro", *, margin: float = 0.0,
         sample_weight=None, pos_label=None, labels=None, validate: bool = True,
         probabilities: bool | None = None) -> Tensor:
    """`aum`, for callers that already know what multiclass `preds` are (`AUMLossFlat` decides it once,
    on its first batch): `probabilities=True` means rows of probabilities, False logits (softmaxed),
    None finds out as `aum` does (a host-device sync off the CPU). Ignored for binary and multi-label
    scores. Private: the public `aum` always finds out.
    """
    check_choice("normalize", normalize, ("rate", "count"))
    check_choice("average", average, ("micro", "macro"))
    margin = check_non_negative("margin", margin)
    inp = prepare(preds, target, validate=validate, binary_finite_check=False, multilabel=True, labels=labels,
                  pos_label=pos_label, implicit_positive=False, one_class_any_column=True)
    if sample_weight is not None:
        w = check_sample_weight(sample_weight, len(inp.labels), inp.scores.device)
        return _weighted_aum(inp, normalize, average, w, validate, margin, probabilities)
    if inp.binary:
        positive = positive_mask(inp.labels)
        value = _aum_apply(_shift(binary_score(inp.scores), positive, margin), positive, normalize)
        # Every score borders a gap, so a NaN or inf one makes the value NaN or inf: one look at the
        # value replaces a reduction over the scores (which counts them, and may find none after an overflow).
        if validate and (len(inp.scores) == 1 or not math.isfinite(value.item())):
            check_finite(inp.scores)
        return value
    if margin and not inp.multilabel:
        check_multiclass_margin(margin)
    if inp.multilabel:
        p, member = _shift(inp.scores, inp.labels, margin), inp.labels.T
        if average == "micro":
            return _aum_apply(p.reshape(-1), inp.labels.reshape(-1), normalize)
    else:
        p = inp.scores if _are_probabilities(inp, probabilities) else torch.softmax(inp.scores, dim=1)
        if average == "micro" or margin:
            onehot = one_hot(inp.labels, inp.num_classes)
            p = _shift(p, onehot, margin)
        if average == "micro":
            return _aum_apply(p.reshape(-1), onehot.reshape(-1), normalize)
        classes = torch.arange(inp.num_classes, device=p.device)[:, None]
        member = classes == inp.labels
    # Macro: one row per class (a transposed view: sorting copies it anyway). A class without both
    # labels has AUM 0 and gradient 0, so the sum over all classes is the sum over those defined.
    values = _aum_apply(p.T, member, normalize)
    n = member.shape[1]
    support = member.sum(1)
    if p.device.type in _SPARSE_TIES_ON:  # free on the CPU: count the defined classes on the host
        return values.sum() / max(sum(0 < c < n for c in support.tolist()), 1)
    return values.sum() / ((support > 0) & (support < n)).sum().clamp_min(1)


def aum_directional_derivatives(preds, target, normalize: str = "rate", *, margin: float = 0.0, sample_weight=None,
                                pos_label=None, validate: bool = True) -> Tensor:
    """Binary AUM's (N, 2) one-sided derivatives `[left, right]` with respect to each score.

    left = lim (AUM(s) - AUM(s - h e_i)) / h and right = lim (AUM(s + h e_i) - AUM(s)) / h as h -> 0+.
    They differ only at ties; `aum`'s gradient is their mean. Half-precision scores give float32.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores (`z1 - z0` for two columns).
        target: N labels in {0, 1}, {-1, 1} (or bools), or any two labels with `pos_label`.
        normalize: 'rate' or 'count', as for `aum`.
        margin: as for `aum`.
        sample_weight: as for `aum`.
        pos_label: as for `aum`.
        validate: False skips the value checks.
    """
    check_choice("normalize", normalize, ("rate", "count"))
    margin = check_non_negative("margin", margin)
    inp = prepare(preds, target, validate=validate, pos_label=pos_label, implicit_positive=False,
                  one_class_any_column=True)
    if not inp.binary:
        raise ValueError(f"`preds` must be binary scores of shape (N,), (N, 1) or (N, 2), got {tuple(inp.scores.shape)}")
    positive = positive_mask(inp.labels)
    score = _shift(binary_score(inp.scores).detach(), positive, margin)
    if sample_weight is None:
        _, (left, right), perm, _ = _aum_rows(score, positive, normalize, need_derivatives=True)
    else:
        w = check_sample_weight(sample_weight, len(score), score.device)
        _, (left, right), perm = _weighted_rows(score, positive, w, normalize, True)
    return torch.stack([_unsort(left, perm, score.dtype), _unsort(right, perm, score.dtype)], dim=1)
