"""ROC curves and exact AUROC with scikit-learn's `roc_auc_score` semantics (pure torch)."""
from __future__ import annotations

import math
import numbers
from itertools import combinations

import torch
from torch import Tensor

from ._inputs import check_choice, check_sample_weight, prepare, warn_undefined
from ._auc import ROC, _auroc_rows, _partial_auroc, binary_auroc, roc_rows
from ._scores import one_hot, positive_mask, ranking_scores
from .multilabel import auroc_columns, auroc_samples

__all__ = ["ROC", "roc_curve", "auroc", "check_auroc_options"]


def roc_curve(preds, target, *, sample_weight=None, pos_label=None, labels=None) -> ROC | list[ROC]:
    """ROC points of binary scores (ties grouped), or a list with one `ROC` per class (one-vs-rest) or label.

    The constants are those of `aum`: added to the binary score (`z1 - z0` for two columns), to each
    class's probability, or to each label's score. A class with no examples makes its rate NaN, with one
    warning. As scikit-learn, examples of weight 0 are dropped first (their scores are no thresholds).

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, (N, K) logits or probabilities, or (N, L) label scores.
        target: N labels, or a multi-hot (N, L) matrix of the shape of `preds` (multi-label).
        sample_weight: N non-negative weights, for weighted rates.
        pos_label: the positive label of binary scores (needed unless the labels are {0, 1} or {-1, 1}); the
            columns of (N, 2) scores are the two sorted labels, so the first one's gives `z0 - z1`.
        labels: the K class labels in sorted order, one per score column (default: the sorted labels).
    """
    inp = prepare(preds.detach() if isinstance(preds, Tensor) else preds, target, labels=labels, pos_label=pos_label,
                  implicit_positive=False, multilabel=True)
    s = inp.scores
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(inp.labels), s.device)
    if w is not None and not bool((w > 0).any()):
        raise ValueError("`sample_weight` is 0 for every example: there is no ROC curve to draw")
    if inp.binary:
        score = s if s.ndim == 1 else s[:, 1].double() - s[:, 0].double()
        curves = roc_rows(score, positive_mask(inp.labels), w)
    elif inp.multilabel:
        curves = roc_rows(s.T, inp.labels.T, w)
    else:
        p = s.double() if inp.probabilities else torch.softmax(s.double(), dim=1)
        curves = roc_rows(p.T, one_hot(inp.labels, inp.num_classes).T, w)
    undefined = [k for k, c in enumerate(curves) if math.isnan(c.fpr[-1]) or math.isnan(c.tpr[-1])]
    if undefined:
        which = "" if inp.binary else f" for {'label(s)' if inp.multilabel else 'class(es)'} {undefined}"
        warn_undefined(f"roc_curve: only one class present{which}; the rate with no examples is NaN")
    return curves[0] if inp.binary else curves


# --------------------------------------------------------------------------------------- AUROC ---

def check_auroc_options(average, multi_class, max_fpr) -> None:
    """Raise a ValueError unless `auroc` accepts these options (for some problem).

    Args:
        average: as for `auroc`: 'macro', 'weighted', 'micro', 'samples' (multi-label only) or None.
        multi_class: as for `auroc`.
        max_fpr: as for `auroc`.
    """
    check_choice("multi_class", multi_class, ("ovr", "ovo"))
    check_choice("average", average, ("macro", "weighted", "micro", "samples", None))
    if max_fpr is not None and (isinstance(max_fpr, bool) or not isinstance(max_fpr, numbers.Real)
                                or not 0 < max_fpr <= 1):
        raise ValueError(f"`max_fpr` must be a number in (0, 1], got {max_fpr!r}")


def auroc(preds, target, average: str | None = "macro", multi_class: str = "ovr", max_fpr: float | None = None,
          *, sample_weight=None, labels=None, pos_label=None, validate: bool = True) -> Tensor:
    """Exact area under the ROC curve, with scikit-learn's `roc_auc_score` semantics (ties get half credit).

    Multiclass scores are ranked one-vs-rest (`ovr`) or one-vs-one (Hand and Till); a multi-hot target
    ranks each label by its own column of scores, as it is. Class labels may be strings: two labels with
    binary scores make the greater (sorted) one positive, as `roc_auc_score` does; binary {-1, 1} labels
    read as {0, 1}. Returns float64, NaN with an `AUROCUndefinedWarning` where AUROC is undefined; a class
    or label with one class only is averaged out with that warning.

    Args:
        preds: (N,), (N, 1) or (N, 2) binary scores, (N, K) logits or probabilities, or (N, L) label scores.
        target: N labels, or a multi-hot (N, L) matrix of the shape of `preds` (multi-label).
        average: 'macro', 'weighted' (by positives), 'micro' (not ovo), 'samples' (multi-label) or None.
        multi_class: 'ovr' (one-vs-rest) or 'ovo' (one-vs-one, 'macro' or 'weighted' only).
        max_fpr: McClish-corrected partial AUROC up to this FPR (binary and multi-label).
        sample_weight: N non-negative weights of each example's pairs, as scikit-learn (not with 'ovo').
        labels: the K class labels in sorted order, one per score column (default: the sorted labels).
        pos_label: the positive label of binary scores (default: the greater of two labels), as for
            `roc_curve`.
        validate: False skips the value checks (finiteness, label range), which cost host-device syncs.
    """
    check_auroc_options(average, multi_class, max_fpr)
    if isinstance(preds, Tensor):
        preds = preds.detach()
    inp = prepare(preds, target, validate=validate, allow_empty=True, multilabel=True, labels=labels,
                  pos_label=pos_label, implicit_positive=True, one_class_any_column=True)
    n = len(inp.labels)
    w = None if sample_weight is None else check_sample_weight(sample_weight, n, inp.scores.device)
    if average == "samples" and not inp.multilabel:
        raise ValueError("`average='samples'` needs a multi-hot (N, L) `target` (multi-label), got a target "
                         f"of shape {tuple(inp.labels.shape)} with class labels")
    if max_fpr is not None and not (inp.binary or inp.multilabel):
        raise ValueError(f"`max_fpr` (partial AUROC) is defined for binary problems only, got {inp.num_classes} classes")
    per_class = not inp.binary and (multi_class == "ovr" or inp.multilabel) and average is None
    nan = torch.full((inp.num_classes,) if per_class else (), math.nan, dtype=torch.float64, device=inp.scores.device)
    if n == 0:
        warn_undefined("auroc: empty input, AUROC is undefined (NaN)")
        return nan
    if inp.multilabel:
        max_fpr = None if max_fpr is None else float(max_fpr)
        if average == "samples":
            return auroc_samples(inp.scores, inp.labels, w, max_fpr)
        return auroc_columns(inp.scores, inp.labels, average, w, max_fpr, what="label")
    s = ranking_scores(inp)
    if inp.binary:
        positive = positive_mask(inp.labels)
        if w is None:
            n_pos = int(positive.sum())
            one_class = n_pos in (0, n)
        else:
            n_pos = float((w * positive).sum())
            one_class = n_pos <= 0 or float((w * ~positive).sum()) <= 0
        if one_class:
            weighted = "" if w is None else " with non-zero weight"
            warn_undefined(f"auroc: only one class present{weighted} in `target` ({n_pos:g} positives of {n}); "
                           "AUROC is undefined (NaN)")
            return nan
        if max_fpr is not None and max_fpr != 1:
            return _partial_auroc(s, positive, float(max_fpr), w)
        if w is None:
            return binary_auroc(s, positive, n_pos)
        return _auroc_rows(s[None], positive[None], w[None])[0]
    if multi_class == "ovo":
        check_choice("average", average, ("macro", "weighted"))  # as scikit-learn allows for ovo
        if w is not None:
            raise ValueError("`sample_weight` is not supported with multi_class='ovo' (nor by scikit-learn); "
                             "use multi_class='ovr'")
        return _auroc_ovo(s, inp.labels, inp.num_classes, average)
    return auroc_columns(s, one_hot(inp.labels, inp.num_classes), average, w)


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
