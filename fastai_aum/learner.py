"""`aum_learner`: the right fastai Learner for tabular, text or vision DataLoaders, with AUM and AUROC."""
from __future__ import annotations

import warnings
from urllib.error import URLError

import torch
from fastai.data.transforms import get_c
from fastai.learner import Learner
from fastai.tabular.learner import tabular_learner
from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
from fastcore.foundation import L
from fastcore.meta import delegates

from .callback import AUROCCallback
from .metrics import AUROC
from .vocab import class_names, is_multilabel, multi_hot_labels, pos_label_index
from .losses import AUMLossFlat
from .decisions import decided, is_decision_metric
from .functional._inputs import check_multiclass_margin, check_non_negative
from .recipes import LastLayerScaleCallback
from .sampling import stratify_batches, train_labels

__all__ = ["aum_learner", "check_learner_options", "data_kind", "make_loss", "LOSSES"]

LOSSES = ("aum", "ce", "weighted_ce")


def data_kind(dls) -> str:
    """'tabular', 'text' or 'vision': which fastai application `dls` belongs to."""
    from fastai.tabular.core import TabDataLoader
    from fastai.text.data import TensorText
    from fastai.torch_core import TensorImage
    if isinstance(getattr(dls, "train", None), TabDataLoader):
        return "tabular"
    try:
        x = dls.one_batch()[0]
    except Exception as e:
        raise TypeError(f"`dls` must be fastai DataLoaders for tabular, text or vision data, got {type(dls).__name__}") from e
    if isinstance(x, TensorImage):
        return "vision"
    if isinstance(x, TensorText):
        return "text"
    raise TypeError(f"`dls` must be fastai DataLoaders for tabular, text or vision data; "
                    f"its inputs are {type(x).__name__}, not TensorImage, TensorText or tabular rows")


def n_classes_of(dls) -> int:
    """The number of classes (labels) of `dls`, from its vocabulary: `dls.c` would be a column named `c`, which
    fastai's attribute delegation reaches first."""
    classes = class_names(dls)
    return len(classes) if classes is not None else get_c(dls)


def make_loss(loss, dls, normalize: str = "rate", average: str = "micro", pos_label=None, margin: float = 0.0,
              ce_weight: float = 0.0):
    """The loss object that `aum_learner`'s `loss` names: 'aum', 'ce', 'weighted_ce' (class weights
    inverse to the class frequencies of the training set), or a loss object, returned as it is.
    `pos_label` names AUM's positive class (the class a single output is the logit of); `margin` and
    `ce_weight` are `AUMLossFlat`'s recipes, for `loss='aum'` only.

    Multi-label DataLoaders (`is_multilabel`) get `AUMLossFlat(multilabel=True)`, fastai's
    `BCEWithLogitsLossFlat`, or that with `pos_weight` n_neg/n_pos per label (training set)."""
    if not isinstance(loss, str):
        return loss
    if loss in LOSSES and is_multilabel(dls):
        return _multilabel_loss(loss, dls, normalize, average, pos_label, margin, ce_weight)
    if loss == "aum":
        return AUMLossFlat(normalize=normalize, average=average, pos_label=pos_label, vocab=class_names(dls),
                          margin=margin, ce_weight=ce_weight)
    if loss == "ce":
        return CrossEntropyLossFlat()
    if loss == "weighted_ce":
        counts = torch.bincount(train_labels(dls), minlength=n_classes_of(dls)).float()
        return CrossEntropyLossFlat(weight=counts.sum() / (len(counts) * counts.clamp_min(1)))
    raise ValueError(f"`loss` must be one of {', '.join(map(repr, LOSSES))} or a loss object, got {loss!r}")


def _loss_repr(loss) -> str:
    return repr(loss) if isinstance(loss, str) else type(loss).__name__


def _multilabel_loss(loss: str, dls, normalize: str, average: str, pos_label, margin: float, ce_weight: float):
    if pos_label is not None:
        raise ValueError(f"`pos_label`={pos_label!r} names the positive class of a binary problem, but the DataLoaders "
                         f"are multi-label ({len(class_names(dls) or [])} labels, each its own binary problem)")
    if loss == "aum":
        return AUMLossFlat(normalize=normalize, average=average, vocab=class_names(dls), multilabel=True,
                           margin=margin, ce_weight=ce_weight)
    if loss == "ce":
        return BCEWithLogitsLossFlat()
    y = multi_hot_labels(dls, 0)
    n_pos = y.sum(0)
    return BCEWithLogitsLossFlat(pos_weight=(len(y) - n_pos) / n_pos.clamp_min(1))


def check_learner_options(dls, loss="aum", pos_label=None, stratify: bool = False, margin: float = 0.0,
                          ce_weight: float = 0.0, last_layer_scale: float | None = None) -> None:
    """Raise the ValueError that `aum_learner(dls, ...)` would raise for these options, before anything is
    built or trained (`compare_losses` checks every recipe with it before its first fit).

    Args:
        dls: the DataLoaders the Learner is for; None checks only what needs no data.
        loss, pos_label, stratify, margin, ce_weight, last_layer_scale: as in `aum_learner`.
    """
    for name, value in (("margin", margin), ("ce_weight", ce_weight)):
        check_non_negative(name, value)
        if value and loss != "aum":
            where = "set it on the loss object" if not isinstance(loss, str) else "use loss='aum'"
            raise ValueError(f"`{name}`={value!r} is an option of the AUM loss, but `loss` is {_loss_repr(loss)}; {where}")
    if last_layer_scale is not None:
        check_non_negative("last_layer_scale", last_layer_scale)
    if isinstance(loss, str) and loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(map(repr, LOSSES))} or a loss object, got {loss!r}")
    if dls is None:
        return
    classes, multilabel = class_names(dls), is_multilabel(dls)
    if multilabel and (pos_label is not None or stratify):
        what = f"`pos_label`={pos_label!r}" if pos_label is not None else "`stratify=True`"
        raise ValueError(f"aum_learner: {what} is for single-label data, but the DataLoaders are multi-label "
                         f"({len(classes or [])} labels)")
    if not multilabel:
        pos_label_index(classes, pos_label)
    n_classes = n_classes_of(dls)
    if margin and n_classes > 2 and not multilabel:
        check_multiclass_margin(margin)


# The keyword arguments go to the builder of the data's kind; the signature shows tabular_learner's (those of
# `Learner` are common to all three), and `**kwargs` stays for vision_learner's and text_classifier_learner's.
@delegates(tabular_learner, keep=True, but=["dls", "n_out", "loss_func", "cbs", "metrics"])
def aum_learner(dls, arch=None, loss="aum", normalize: str = "rate", average: str = "micro", cbs=None,
                n_out: int | None = None, stratify: bool = False, auroc_kwargs: dict | None = None,
                pos_label=None, metrics=None, margin: float = 0.0, ce_weight: float = 0.0,
                last_layer_scale: float | None = None, **kwargs) -> Learner:
    """A fastai Learner for `dls` (tabular, text or vision; binary, multiclass or multi-label), trained with
    `loss` and measured by `AUROCCallback`.

    Unless `n_out` says otherwise, a binary problem trained with AUM gets one output (the logit of the
    positive class), everything else one per class (per label for `MultiCategoryBlock` data). fastai's
    decision `metrics` (`accuracy`, `F1Score`, ...) are computed on the loss's decisions
    (`fastai_aum.decided`), so they use its threshold and work with one output. The recipes' measured
    effect is in the README ("AUM recipes").

    Args:
        dls: fastai DataLoaders of tabular, text or vision data.
        arch: the vision architecture (default `resnet18`) or the text one (default `AWD_LSTM`).
        loss: 'aum', 'ce', 'weighted_ce' (class weights inverse to the training frequencies) or a loss object.
        normalize, average: `AUMLossFlat`'s options.
        cbs: more callbacks; an `AUROCCallback` is added unless one is given.
        n_out: the number of model outputs.
        stratify: give every training batch every class (`stratify_batches`; single-label tabular and vision).
        auroc_kwargs: arguments of the `AUROCCallback` added.
        pos_label: the positive class of a binary problem, by its vocabulary value (default: the second class).
        metrics: fastai metrics; decision metrics are wrapped with `decided`.
        margin, ce_weight: `AUMLossFlat`'s recipes (`loss='aum'` only).
        last_layer_scale: multiply the last layer's initial weights by it (0: all outputs start tied;
            `LastLayerScaleCallback`).
        **kwargs: to `tabular_learner`, `vision_learner` or `text_classifier_learner` (`layers`, `pretrained`,
            `lr`, `wd`, ...).
    """
    kind = data_kind(dls)
    classes = class_names(dls)
    multilabel = is_multilabel(dls)
    check_learner_options(dls, loss, pos_label, stratify, margin, ce_weight, last_layer_scale)
    pos = None if multilabel else pos_label_index(classes, pos_label)
    if stratify:
        dls = stratify_batches(dls)
    n_classes = n_classes_of(dls)
    loss_func = make_loss(loss, dls, normalize, average, pos_label, margin, ce_weight)
    if isinstance(loss_func, AUMLossFlat) and classes is not None:
        loss_func.bind(loss_func.vocab if loss_func.vocab is not None else classes, multilabel=multilabel)
    recipes = []
    if last_layer_scale is not None:
        recipes.append(LastLayerScaleCallback(last_layer_scale))
    if n_out is None:
        n_out = 1 if n_classes == 2 and isinstance(loss_func, AUMLossFlat) and not multilabel else n_classes
    cbs = list(L(cbs)) + recipes  # one callback or several, as fastai's Learner takes them
    if not any(isinstance(cb, AUROCCallback) for cb in cbs):
        cbs.append(AUROCCallback(**{"pos_label": pos_label, **(auroc_kwargs or {})}))
    binary_pos = pos if n_classes == 2 else None
    kwargs["metrics"] = list(L(metrics)) if multilabel else _decision_metrics(metrics, n_out, binary_pos)
    if kind == "tabular":
        return tabular_learner(dls, n_out=n_out, loss_func=loss_func, cbs=cbs, **kwargs)
    if kind == "vision":
        from fastai.vision.learner import vision_learner
        from torchvision.models import resnet18
        build, arch = vision_learner, arch or resnet18
    else:
        from fastai.text.learner import text_classifier_learner
        from fastai.text.models.awdlstm import AWD_LSTM
        build, arch = text_classifier_learner, arch or AWD_LSTM
    try:
        return build(dls, arch, n_out=n_out, loss_func=loss_func, cbs=cbs, **kwargs)
    except URLError as e:  # fastai's default is pretrained=True, which downloads weights on first use
        if not kwargs.get("pretrained", True):
            raise
        name = getattr(arch, "__name__", type(arch).__name__)
        raise ConnectionError(f"aum_learner: downloading the pretrained weights of {name} failed ({e.reason}); "
                              "offline, pass pretrained=False (random initial weights)") from None


def _decision_metrics(metrics, n_out: int, pos_index: int | None) -> list:
    """fastai's decision metrics on the loss's decisions. With one output, a metric that applies a softmax
    to it (`RocAucBinary`, `RocAuc`) would score a constant every epoch: refused; other metrics that may
    read one output as one column per class get a warning."""
    metrics = [decided(m, pos_index) for m in L(metrics)]
    if n_out != 1:
        return metrics
    from fastai.metrics import AccumMetric, ActivationType
    from .decisions import DecisionMetric
    names = [getattr(m, "name", getattr(m, "__name__", repr(m))) for m in metrics]
    softmaxed = [n for m, n in zip(metrics, names) if isinstance(m, AccumMetric)
                 and m.activation in (ActivationType.Softmax, ActivationType.BinarySoftmax)]
    if softmaxed:
        raise ValueError(f"aum_learner: the model has one output, and the fastai metric(s) {softmaxed} apply a softmax "
                         "to it, which scores every example 1 (an AUROC of 0.5 every epoch); the `auroc` column "
                         "(AUROCCallback) ranks the one output exactly: leave them out of `metrics`, or pass n_out=2")
    odd = [n for m, n in zip(metrics, names) if not isinstance(m, (DecisionMetric, AUROC)) and not is_decision_metric(m)]
    if odd:
        warnings.warn(f"aum_learner: the model has one output, which fastai metric(s) {odd} may read as one "
                      "column per class (argmax or softmax of it); rank with `AUROCCallback`/`AUROC`, and wrap "
                      "other decision metrics with `fastai_aum.decided`", UserWarning, stacklevel=3)
    return metrics
