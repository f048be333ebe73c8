"""Pure-torch ROC curves, exact AUROC and the differentiable AUM loss (no fastai import).

Everything here sorts once per problem and works batched over rows, on any device. Scores are
"larger means more positive"; see DESIGN.md for the definitions this module implements.
"""
from __future__ import annotations

import math
import numbers
from itertools import combinations
from typing import NamedTuple

import torch
from torch import Tensor

from ._inputs import AUROCUndefinedWarning, Inputs, check_choice, prepare, warn_undefined

__all__ = ["ROC", "roc_curve", "auroc", "aum", "aum_directional_derivatives", "binary_score",
           "check_auroc_options", "AUROCUndefinedWarning"]


def binary_score(preds: Tensor) -> Tensor:
    """The binary score of model outputs: the value itself for (N,) or (N, 1), `z1 - z0` for (N, 2)."""
    if preds.ndim == 2 and preds.shape[1] == 2:
        return preds[:, 1] - preds[:, 0]
    return preds if preds.ndim == 1 else preds.reshape(preds.shape[0])


def _ranking_scores(inp: Inputs) -> Tensor:
    """Scores to rank by for AUROC: never squashed through a float32 sigmoid or softmax."""
    s = inp.scores
    if inp.binary:
        if s.ndim == 1:
            return s  # sort in the input's own dtype; sums are float64 later
        if inp.probabilities:
            return s[:, 1].double()
        return s[:, 1].double() - s[:, 0].double()
    return s.double() if inp.probabilities else _log_softmax(s.double())


def _log_softmax(z: Tensor) -> Tensor:
    """Row-wise log_softmax whose normaliser is summed in sorted order: rows that permute the same
    logits then give exactly equal values to equal logits, so mathematical ties stay ties."""
    shifted = z - z.max(1, keepdim=True).values
    return shifted - shifted.sort(1).values.exp().sum(1, keepdim=True).log()


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(N, K) boolean matrix whose column k marks `labels == k`."""
    return labels[:, None] == torch.arange(num_classes, device=labels.device)


def _positive(labels: Tensor) -> Tensor:
    return labels if labels.dtype == torch.bool else labels == 1


def _descending_key(scores: Tensor) -> Tensor:
    """Integers whose ascending order is the descending order of the float `scores` (ties kept as ties)."""
    wide = scores.dtype == torch.float64
    negated = 0.0 - (scores if wide else scores.float())  # also maps -0.0 to +0.0, so that 0.0 and -0.0 tie
    bits = negated.view(torch.int64 if wide else torch.int32)
    # IEEE floats order like sign-magnitude integers: flip the magnitude bits of negatives to get two's complement.
    return bits ^ ((bits >> (63 if wide else 31)) & (2**63 - 1 if wide else 2**31 - 1))


# torch's CPU sort radix-sorts a 1-d integer tensor from this length on (at::internal::GRAIN_SIZE) and
# compares below it; padding a shorter key up to it pays from a few thousand elements (measured).
_RADIX_FROM, _PAD_FROM = 32768, 4096


def _argsort_keys(key: Tensor) -> Tensor:
    """Stable ascending argsort of a 1-d integer tensor, as fast as torch allows."""
    n = len(key)
    if key.device.type == "cpu" and _PAD_FROM <= n < _RADIX_FROM:
        padding = key.new_full((_RADIX_FROM - n,), torch.iinfo(key.dtype).max)  # sorts after every real key
        return torch.sort(torch.cat([key, padding]), stable=True).indices[:n]
    return torch.sort(key, stable=True).indices


def _sort_rows_descending(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row of (B, N) scores in decreasing order: (values, indices).

    torch.sort of floats on the CPU is a comparison sort; of a long 1-d integer tensor, a radix sort
    several times faster. So this sorts integer keys that order like the scores: all rows in one
    flat sort (row index in the high bits) where the 32-bit keys of float32 scores leave room.
    """
    b, n = scores.shape
    key = _descending_key(scores)
    if b == 1:
        perm = _argsort_keys(key.view(n)).view(1, n)
    elif key.dtype == torch.int32:
        rows = torch.arange(b, device=scores.device)[:, None]
        flat = (rows << 32) | (key.long() + 2**31)
        perm = _argsort_keys(flat.view(-1)).view(b, n) - rows * n
    else:  # 64-bit keys leave no room for the row: sort the rows one by one, still by integer key
        perm = torch.stack([_argsort_keys(row) for row in key])
    return scores.gather(-1, perm), perm


def _group_start(first: Tensor) -> Tensor:
    """Given a mask (along the last dim) of the elements that open a group, the index where each
    element's group starts."""
    idx = torch.arange(first.shape[-1], device=first.device).expand_as(first)
    return torch.where(first, idx, 0).cummax(-1).values


def _group_end(last: Tensor) -> Tensor:
    """Given a mask (along the last dim) of the elements that close a group, the index where each
    element's group ends."""
    n = last.shape[-1]
    idx = torch.arange(n, device=last.device).expand_as(last)
    return torch.where(last, idx, n - 1).flip(-1).cummin(-1).values.flip(-1)


def _group_marks(v: Tensor) -> tuple[Tensor, Tensor]:
    """Masks of the elements of sorted rows that open and that close a group of equal values."""
    first = torch.ones_like(v, dtype=torch.bool)
    first[..., 1:] = v[..., 1:] != v[..., :-1]
    last = torch.ones_like(first)
    last[..., :-1] = first[..., 1:]
    return first, last


class _Ties(NamedTuple):
    """The elements of sorted (B, N) rows that share their value with a neighbour, in row-major order:
    `row`, `col`, and the columns where each one's group of equal values starts and ends."""
    row: Tensor
    col: Tensor
    start: Tensor
    end: Tensor


def _find_ties(v: Tensor) -> _Ties | None:
    """Ties of rows sorted along the last dim, or None. Untied elements need no group bookkeeping, so
    only the (usually few) tied ones are compacted; that costs a host-device sync."""
    if not bool((v[..., 1:] == v[..., :-1]).any()):
        return None
    first, last = _group_marks(v)
    row, col = (~(first & last)).nonzero(as_tuple=True)
    # Every row opens and closes a group at its ends, so groups found in the flat subset never span rows.
    return _Ties(row, col, col[_group_start(first[row, col])], col[_group_end(last[row, col])])


# ----------------------------------------------------------------------------------------- ROC ---

class ROC(NamedTuple):
    """ROC points, ties grouped, in order of increasing constant `c` added to the scores.

    Point j is what thresholding `score + c > 0` gives for every `c` in `(min_constant[j], max_constant[j])`.
    """
    fpr: Tensor
    tpr: Tensor
    fnr: Tensor
    min_constant: Tensor
    max_constant: Tensor


def _binary_roc(score: Tensor, positive: Tensor) -> ROC:
    v, perm = _sort_rows_descending(score.unsqueeze(0))
    v, perm = v[0], perm[0]
    pos = positive[perm].double()
    tp = pos.cumsum(0)
    fp = torch.arange(1, len(v) + 1, device=v.device, dtype=torch.float64) - tp
    last = torch.ones_like(positive)
    last[:-1] = v[1:] != v[:-1]
    tp, fp, thr = tp[last], fp[last], -v[last].double()
    n_pos, n_neg = tp[-1], fp[-1]
    zero = tp.new_zeros(1)
    inf = tp.new_full((1,), math.inf)
    tp, fp = torch.cat([zero, tp]), torch.cat([zero, fp])
    return ROC(fpr=fp / n_neg, tpr=tp / n_pos, fnr=(n_pos - tp) / n_pos,
               min_constant=torch.cat([-inf, thr]), max_constant=torch.cat([thr, inf]))


def roc_curve(preds, target) -> ROC | list[ROC]:
    """ROC points of binary scores (ties grouped), or one-vs-rest, a list with one `ROC` per class.

    `preds` is (N,), (N, 1) or (N, 2) for a binary problem and (N, K) logits or probabilities for K
    classes; `target` holds the N labels. The constants are those of `aum`: added to the binary score
    (`z1 - z0` for two columns), or to each class's probability. A class with no examples makes its
    rate NaN, with one warning.
    """
    inp = prepare(preds.detach() if isinstance(preds, Tensor) else preds, target)
    s = inp.scores
    if inp.binary:
        score = s if s.ndim == 1 else s[:, 1].double() - s[:, 0].double()
        curves = [_binary_roc(score, _positive(inp.labels))]
    else:
        p = s.double() if inp.probabilities else torch.softmax(s.double(), dim=1)
        curves = [_binary_roc(p[:, k], inp.labels == k) for k in range(inp.num_classes)]
    undefined = [k for k, c in enumerate(curves) if math.isnan(c.fpr[-1]) or math.isnan(c.tpr[-1])]
    if undefined:
        which = "" if inp.binary else f" for class(es) {undefined}"
        warn_undefined(f"roc_curve: only one class present{which}; the rate with no examples is NaN")
    return curves[0] if inp.binary else curves


# --------------------------------------------------------------------------------------- AUROC ---

def _auroc_rows(scores: Tensor, positive: Tensor) -> Tensor:
    """Exact AUROC of each row of (B, N) scores against (B, N) boolean labels; NaN where a row has one class.

    Mann-Whitney: each negative counts the positives ranked above it, plus half of those tied with it.
    """
    v, perm = _sort_rows_descending(scores)
    pos = positive.gather(-1, perm).double()
    tp = pos.cumsum(-1)
    pairs = ((1 - pos) * tp).sum(-1)  # exact for untied negatives
    t = _find_ties(v)
    if t is not None:
        tp_group = (tp[t.row, t.start] - pos[t.row, t.start] + tp[t.row, t.end]) / 2
        fix = (1 - pos[t.row, t.col]) * (tp_group - tp[t.row, t.col])
        pairs = pairs.index_add(0, t.row, fix)
    n_pos = tp[..., -1]
    return pairs / (n_pos * (v.shape[-1] - n_pos))


def _partial_auroc(score: Tensor, positive: Tensor, max_fpr: float) -> Tensor:
    """McClish-corrected partial AUROC up to `max_fpr`, as scikit-learn computes it."""
    roc = _binary_roc(score, positive)
    fpr, tpr = roc.fpr, roc.tpr
    stop = int(torch.searchsorted(fpr, torch.tensor([max_fpr], dtype=fpr.dtype, device=fpr.device), right=True))
    x0, x1, y0, y1 = fpr[stop - 1], fpr[stop], tpr[stop - 1], tpr[stop]
    y_max = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
    fpr = torch.cat([fpr[:stop], fpr.new_tensor([max_fpr])])
    tpr = torch.cat([tpr[:stop], y_max.reshape(1)])
    partial = torch.trapezoid(tpr, fpr)
    min_area, max_area = 0.5 * max_fpr ** 2, max_fpr
    return 0.5 * (1 + (partial - min_area) / (max_area - min_area))


def check_auroc_options(average, multi_class, max_fpr) -> None:
    """Raise a ValueError unless `auroc` accepts these options (for some problem)."""
    check_choice("multi_class", multi_class, ("ovr", "ovo"))
    check_choice("average", average, ("macro", "weighted", "micro", None))
    if max_fpr is not None and (isinstance(max_fpr, bool) or not isinstance(max_fpr, numbers.Real)
                                or not 0 < max_fpr <= 1):
        raise ValueError(f"`max_fpr` must be a number in (0, 1], got {max_fpr!r}")


def auroc(preds, target, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
          *, validate: bool = True) -> Tensor:
    """Exact area under the ROC curve, with scikit-learn's `roc_auc_score` semantics (ties get half credit).

    Binary `preds` are (N,), (N, 1) or (N, 2); multiclass `preds` are (N, K) logits or probabilities,
    scored one-vs-rest (`multi_class='ovr'`, `average` in 'macro', 'weighted', 'micro' or None for
    per-class values) or one-vs-one (`'ovo'`, Hand and Till, `average` in 'macro', 'weighted').
    `max_fpr` gives the McClish-corrected partial AUROC (binary only). Returns a float64 tensor, NaN
    with an `AUROCUndefinedWarning` where AUROC is undefined. `validate=False` skips the value
    checks (finiteness, label range), which cost host-device syncs.
    """
    check_auroc_options(average, multi_class, max_fpr)
    if isinstance(preds, Tensor):
        preds = preds.detach()
    inp = prepare(preds, target, validate=validate, allow_empty=True)
    n = len(inp.labels)
    if max_fpr is not None and not inp.binary:
        raise ValueError(f"`max_fpr` (partial AUROC) is defined for binary problems only, got {inp.num_classes} classes")
    per_class = not inp.binary and multi_class == "ovr" and average is None
    nan = torch.full((inp.num_classes,) if per_class else (), math.nan, dtype=torch.float64, device=inp.scores.device)
    if n == 0:
        warn_undefined("auroc: empty input, AUROC is undefined (NaN)")
        return nan
    s = _ranking_scores(inp)
    if inp.binary:
        positive = _positive(inp.labels)
        n_pos = int(positive.sum())
        if n_pos in (0, n):
            warn_undefined(f"auroc: only one class present in `target` ({n_pos} positives of {n}); "
                           "AUROC is undefined (NaN)")
            return nan
        if max_fpr is not None and max_fpr != 1:
            return _partial_auroc(s, positive, float(max_fpr))
        return _auroc_rows(s[None], positive[None])[0]
    if multi_class == "ovo":
        check_choice("average", average, ("macro", "weighted"))  # as scikit-learn allows for ovo
        return _auroc_ovo(s, inp.labels, inp.num_classes, average)
    onehot = _one_hot(inp.labels, inp.num_classes)
    if average == "micro":
        return _auroc_rows(s.reshape(1, -1), onehot.reshape(1, -1))[0]
    values = _auroc_rows(s.T.contiguous(), onehot.T)
    support = onehot.sum(0)
    defined = (support > 0) & (support < n)
    if not bool(defined.all()):
        missing = (~defined).nonzero().flatten().tolist()
        what = "set to NaN" if average is None else f"{average} average over the {int(defined.sum())} others"
        warn_undefined(f"auroc: class(es) {missing} have no positive or no negative example in `target`; {what}")
    if average is None:
        return values
    if not bool(defined.any()):
        return nan
    weights = support.double() if average == "weighted" else torch.ones_like(values)
    weights = weights * defined
    return (values.nan_to_num() * weights).sum() / weights.sum()


def _auroc_ovo(s: Tensor, labels: Tensor, num_classes: int, average: str) -> Tensor:
    """Hand and Till's one-vs-one AUROC over the pairs of classes present, as scikit-learn computes it."""
    present = torch.unique(labels).tolist()
    if len(present) < 2:
        warn_undefined(f"auroc: only class(es) {present} present in `target`; AUROC is undefined (NaN)")
        return s.new_tensor(math.nan, dtype=torch.float64)
    if len(present) < num_classes:
        warn_undefined(f"auroc: only classes {present} of {num_classes} are present in `target`; "
                       "ovo averages over the pairs of present classes")
    scores, weights = [], []
    for a, b in combinations(present, 2):
        in_pair = (labels == a) | (labels == b)
        pair_labels = labels[in_pair]
        rows = torch.stack([s[in_pair, a], s[in_pair, b]])
        positive = torch.stack([pair_labels == a, pair_labels == b])
        scores.append(_auroc_rows(rows, positive).mean())
        weights.append(in_pair.double().mean())
    scores, weights = torch.stack(scores), torch.stack(weights)
    if average == "macro":
        return scores.mean()
    return (scores * weights).sum() / weights.sum()


# ----------------------------------------------------------------------------------------- AUM ---

def _aum_rows(scores: Tensor, positive: Tensor, normalize: str, need_derivatives: bool):
    """AUM of each row of (B, N) scores and, if asked, the left and right directional derivatives.

    Sorting the scores in decreasing order sorts the thresholds `-s` in increasing order. Once the
    constant passes sorted element k, FP is the negative weight up to k and FN the positive weight
    after k; AUM sums the gaps between consecutive thresholds times min(FP, FN). Returns the values,
    the derivatives in sorted order (or None) and the sort permutation.
    """
    v, perm = _sort_rows_descending(scores)
    y = positive.gather(-1, perm)
    n = v.shape[-1]
    tp = y.cumsum(-1, dtype=torch.float64)
    n_pos = tp[..., -1:]
    fp = torch.arange(1, n + 1, device=v.device, dtype=torch.float64) - tp
    fn = n_pos - tp
    w_neg = w_pos = 1.0
    if normalize == "rate":  # a missing class gets weight 1, harmlessly: its count is 0 everywhere
        w_neg, w_pos = torch.stack([fp[..., -1:], n_pos]).clamp_min_(1).reciprocal_()
        fp, fn = fp.mul_(w_neg), fn.mul_(w_pos)
    m = torch.minimum(fp, fn)
    vd = v.double()  # the gaps between float32 scores are exact in float64; tied gaps are 0
    value = ((vd[..., :-1] - vd[..., 1:]) * m[..., :-1]).sum(-1)
    if not need_derivatives:
        return value, None, perm
    if v.device.type not in _SPARSE_TIES_ON:  # no host-device sync: group bookkeeping for every element
        first, last = _group_marks(v)
        start, end = _group_start(first), _group_end(last)
        at_start, at_end = (lambda x: x.gather(-1, start)), (lambda x: x.gather(-1, end))  # noqa: E731
        return value, _group_derivatives(y, fp, fn, y, w_neg, w_pos, at_start, at_end), perm
    # Away from ties the derivative by sorted score k is min(FP, FN) after k minus before it.
    grad = m.clone()
    grad[..., 1:] -= m[..., :-1]
    left = right = grad
    t = _find_ties(v)
    if t is not None:  # on the CPU, only the (usually few) tied elements need it
        w = (w_neg[t.row, 0], w_pos[t.row, 0]) if normalize == "rate" else (w_neg, w_pos)
        at_start, at_end = (lambda x: x[t.row, t.start]), (lambda x: x[t.row, t.end])  # noqa: E731
        left, right = grad, grad.clone()
        left[t.row, t.col], right[t.row, t.col] = _group_derivatives(y[t.row, t.col], fp, fn, y, *w, at_start, at_end)
    return value, (left, right), perm


_SPARSE_TIES_ON = ("cpu",)  # devices where a sync to count the tied elements costs nothing


def _group_derivatives(labels, fp, fn, y, w_neg, w_pos, at_start, at_end):
    """Left and right derivatives of elements with `labels`, in groups of equal scores.

    Moving a tied element changes only the interval next to its group: moving it up (right) opens one
    where it alone has crossed; moving it down (left), one where all its group but it has. `at_start`
    and `at_end` pick, from the sorted rows' FP, FN (after each element) and labels `y`, the values at
    each element's group's first and last element.
    """
    neg, pos = (1 - labels.double()) * w_neg, labels.double() * w_pos
    y_start = at_start(y).double()
    fp_before = at_start(fp) - (1 - y_start) * w_neg  # before the group's first element crossed
    fn_before = at_start(fn) + y_start * w_pos
    fp_after, fn_after = at_end(fp), at_end(fn)
    right = torch.minimum(fp_before + neg, fn_before - pos) - torch.minimum(fp_before, fn_before)
    left = torch.minimum(fp_after, fn_after) - torch.minimum(fp_after - neg, fn_after + pos)
    return left, right


def _unsort(sorted_values: Tensor, perm: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.empty(perm.shape, dtype=dtype, device=perm.device).scatter_(-1, perm, sorted_values.to(dtype))


class _AUMFunction(torch.autograd.Function):
    """AUM of (N,) scores, or of each row of (B, N) scores.

    Its gradient is the mean of the left and right directional derivatives: at ties that does not
    depend on how the sort ordered them, and it is not zero where autograd through argsort can be
    (see `fastai_aum.baseline`)."""

    @staticmethod
    def forward(ctx, scores: Tensor, positive: Tensor, normalize: str) -> Tensor:
        rows = scores.ndim == 2  # reshaping in here keeps view nodes out of the autograd graph
        value, lr, perm = _aum_rows(scores if rows else scores[None], positive if rows else positive[None],
                                    normalize, need_derivatives=ctx.needs_input_grad[0])
        if lr is not None:
            left, right = lr
            grad = _unsort(left if left is right else (left + right) / 2, perm, scores.dtype)
            ctx.save_for_backward(grad if rows else grad[0])
        return value.to(scores.dtype) if rows else value[0].to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # AUM is piecewise linear: the saved gradient's own derivative is 0
        (grad,) = ctx.saved_tensors
        return grad_output.unsqueeze(-1) * grad, None, None


def aum(preds, target, normalize: str = "rate", average: str = "micro", *, validate: bool = True) -> Tensor:
    """Differentiable Area Under Min(FP, FN), the sort-based ROC surrogate loss (Hillman & Hocking, 2023).

    Binary `preds` are (N,), (N, 1) or (N, 2) (scored as `z1 - z0`); (N, K > 2) are multiclass,
    taken through softmax unless they already are probabilities, and scored one-vs-rest: `'micro'`
    pools all N*K (probability, is-class) pairs into one binary AUM, `'macro'` averages the per-class
    AUMs over the classes with both positives and negatives. `normalize='rate'` divides FP by the
    number of negatives and FN by the number of positives; `'count'` does not. A problem with one
    class gives 0, still attached to the graph. `validate=False` skips the value checks; finding
    ties (and, for K > 2, telling probabilities from logits) still costs a host-device sync.
    """
    check_choice("normalize", normalize, ("rate", "count"))
    check_choice("average", average, ("micro", "macro"))
    inp = prepare(preds, target, validate=validate)
    if inp.binary:
        return _AUMFunction.apply(binary_score(inp.scores), _positive(inp.labels), normalize)
    p = inp.scores if inp.probabilities else torch.softmax(inp.scores, dim=1)
    onehot = _one_hot(inp.labels, inp.num_classes)
    if average == "micro":
        return _AUMFunction.apply(p.reshape(-1), onehot.reshape(-1), normalize)
    values = _AUMFunction.apply(p.T.contiguous(), onehot.T, normalize)
    support = onehot.sum(0)
    defined = (support > 0) & (support < len(inp.labels))
    return (values * defined).sum() / defined.sum().clamp_min(1)


def aum_directional_derivatives(preds, target, normalize: str = "rate", *, validate: bool = True) -> Tensor:
    """Binary AUM's (N, 2) one-sided derivatives `[left, right]` with respect to each score.

    left = lim (AUM(s) - AUM(s - h e_i)) / h and right = lim (AUM(s + h e_i) - AUM(s)) / h as h -> 0+.
    They differ only at ties; `aum`'s gradient is their mean. Half-precision scores give float32.
    """
    check_choice("normalize", normalize, ("rate", "count"))
    inp = prepare(preds, target, validate=validate)
    if not inp.binary:
        raise ValueError(f"`preds` must be binary scores of shape (N,), (N, 1) or (N, 2), got {tuple(inp.scores.shape)}")
    score = binary_score(inp.scores).detach()
    _, (left, right), perm = _aum_rows(score[None], _positive(inp.labels)[None], normalize, need_derivatives=True)
    return torch.stack([_unsort(left, perm, score.dtype)[0], _unsort(right, perm, score.dtype)[0]], dim=1)
