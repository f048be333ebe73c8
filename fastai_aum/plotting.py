"""ROC and precision-recall plots with matplotlib: one curve, or one per class or label."""
from __future__ import annotations

import math
import textwrap

import torch

from .functional import PR, ROC

__all__ = ["plot_roc", "plot_pr", "format_roc_axes"]


def plot_roc(roc: ROC | list[ROC], ax=None, labels=None, title: str | None = None):
    """Plot one ROC curve, or one per class, with the chance diagonal; returns the axes.

    Args:
        roc: a `ROC` (from `roc_curve` or `learn.auroc.roc`) or a list of them.
        ax: the matplotlib axes to draw on (default: a new figure's).
        labels: a legend label per curve.
        title: the axes' title.
    """
    ax, named = _axes_and_curves(roc, ROC, ax, labels)
    for curve, name in named:
        fpr, tpr = curve.fpr.cpu().numpy(), curve.tpr.cpu().numpy()
        area = float(torch.trapezoid(curve.tpr, curve.fpr)) if not math.isnan(fpr[-1] + tpr[-1]) else math.nan
        ax.plot(fpr, tpr, label=f"{name + ': ' if name else ''}AUROC {area:.3f}")
    return format_roc_axes(ax, title)


def format_roc_axes(ax, title: str | None = None):
    """The chance diagonal, axis labels and limits, and the legend of a ROC plot; returns the axes."""
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    _set_title(ax, title)
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_pr(pr: PR | list[PR], ax=None, labels=None, title: str | None = None):
    """Plot one precision-recall curve, or one per class or label, as steps (average precision is their
    step-wise area, as scikit-learn computes it, not an interpolation); returns the axes."""
    ax, named = _axes_and_curves(pr, PR, ax, labels)
    for curve, name in named:
        precision, recall = curve.precision.double().cpu(), curve.recall.double().cpu()
        ap = float(-(torch.diff(recall) * precision[:-1]).sum())
        ax.plot(recall.numpy(), precision.numpy(), drawstyle="steps-post",
                label=f"{name + ': ' if name else ''}AP {ap:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    _set_title(ax, title)
    ax.legend(loc="lower left", fontsize="small")
    return ax


def _axes_and_curves(curves, single: type, ax, labels):
    """The axes to draw on (new ones if None) and (curve, name) pairs: one unnamed curve, or one per
    class or label, named by `labels` or numbered."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")  # room for the labels and the title
    if isinstance(curves, single):
        return ax, [(curves, None)]
    curves = list(curves)
    names = list(labels) if labels is not None else [str(k) for k in range(len(curves))]
    return ax, list(zip(curves, names))


def _set_title(ax, title: str | None) -> None:
    """The title, wrapped to the axes' width (a long one, such as the callback's, would be clipped)."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    if not title:
        return
    size_px = FontProperties(size=matplotlib.rcParams["axes.titlesize"]).get_size_in_points() * ax.figure.dpi / 72
    chars = max(20, int(ax.get_window_extent().width / (0.55 * size_px)))  # 0.55: a character's mean width
    ax.set_title("\n".join(textwrap.wrap(title, chars)))
