"""ROC and precision-recall plots with matplotlib: one curve, or one per class or label."""
from __future__ import annotations

import math

import torch

from .functional import PR, ROC

__all__ = ["plot_roc", "plot_pr", "format_roc_axes"]


def plot_roc(roc: ROC | list[ROC], ax=None, labels=None, title: str | None = None):
    """Plot one ROC curve, or one per class, with the chance diagonal; returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    curves = [roc] if isinstance(roc, ROC) else list(roc)
    names = [None] if isinstance(roc, ROC) else (list(labels) if labels is not None else [str(k) for k in range(len(curves))])
    for curve, name in zip(curves, names):
        fpr, tpr = curve.fpr.cpu().numpy(), curve.tpr.cpu().numpy()
        area = float(torch.trapezoid(curve.tpr, curve.fpr)) if not math.isnan(fpr[-1] + tpr[-1]) else math.nan
        ax.plot(fpr, tpr, label=f"{name + ': ' if name else ''}AUROC {area:.3f}")
    return format_roc_axes(ax, title)


def format_roc_axes(ax, title: str | None = None):
    """The chance diagonal, axis labels and limits, and the legend of a ROC plot; returns the axes."""
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_pr(pr: PR | list[PR], ax=None, labels=None, title: str | None = None):
    """Plot one precision-recall curve, or one per class or label, as steps (average precision is their
    step-wise area, as scikit-learn computes it, not an interpolation); returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    curves = [pr] if isinstance(pr, PR) else list(pr)
    names = [None] if isinstance(pr, PR) else (list(labels) if labels is not None else [str(k) for k in range(len(curves))])
    for curve, name in zip(curves, names):
        precision, recall = curve.precision.double().cpu(), curve.recall.double().cpu()
        ap = float(-(torch.diff(recall) * precision[:-1]).sum())
        ax.plot(recall.numpy(), precision.numpy(), drawstyle="steps-post",
                label=f"{name + ': ' if name else ''}AP {ap:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower left", fontsize="small")
    return ax
