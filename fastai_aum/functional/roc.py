"""ROC curves and exact AUROC with scikit-learn's `roc_auc_score` semantics (pure torch)."""
from __future__ import annotations

import math
import numbers
from itertools import combinations
from typing import NamedTuple

import torch
from torch import Tensor

from .._inputs import check_choice, prepare, warn_undefined
from ._scores import one_hot, positive_mask, ranking_scores
from ._sorting import find_ties, sort_rows_descending

__all__ = ["ROC", "roc_curve", "auroc", "check_auroc_options"]


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
    v, perm = sort_rows_descending(score.unsqueeze(0))
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
        curves = [_binary_roc(score, positive_mask(inp.labels))]
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
    v, perm = sort_rows_descending(scores)
    pos = positive.gather(-1, perm).double()
    tp = pos.cumsum(-1)
    pairs = ((1 - pos) * tp).sum(-1)  # exact for untied negatives
    t = find_ties(v)
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
    s = ranking_scores(inp)
    if inp.binary:
        positive = positive_mask(inp.labels)
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
    onehot = one_hot(inp.labels, inp.num_classes)
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
