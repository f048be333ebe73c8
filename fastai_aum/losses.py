"""`AUMLossFlat`: the AUM loss in fastai's loss conventions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional._inputs import check_choice, check_non_negative, is_probability_matrix
from .loss_decodes import BinaryDecisions
from .functional.aum_loss import _aum

__all__ = ["AUMLoss", "AUMLossFlat"]


class AUMLoss(nn.Module):
    """AUM of a batch as an `nn.Module` (see `fastai_aum.functional.aum`, also for `margin`).

    AUM belongs to the ranking of a whole batch, not to single examples: `reduction='none'` (which
    `get_preds(with_loss=True)` asks for) gives every example an equal share, so sums stay right.
    """
    def __init__(self, normalize: str = "rate", average: str = "micro", reduction: str = "mean",
                 validate: bool = True, margin: float = 0.0):
        super().__init__()
        check_choice("normalize", normalize, ("rate", "count"))
        check_choice("average", average, ("micro", "macro"))
        check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.normalize, self.average, self.reduction, self.validate = normalize, average, reduction, validate
        self.margin = check_non_negative("margin", margin)

    def forward(self, preds: Tensor, target: Tensor, *, validate: bool | None = None,
                probabilities: bool | None = None) -> Tensor:
        validate = self.validate if validate is None else validate
        value = _aum(preds, target, normalize=self.normalize, average=self.average, margin=self.margin,
                    validate=validate, probabilities=probabilities)
        return self.reduce(value, len(target))

    def reduce(self, value: Tensor, n: int) -> Tensor:
        """The batch's AUM `value` under `reduction` ('none': an equal share for each of `n` examples)."""
        return value.expand(n) / n if self.reduction == "none" else value


class AUMLossFlat(BinaryDecisions):
    """The AUM loss for fastai Learners, with fastai's `activation` and `decodes`, so `get_preds`,
    `predict`, `show_results`, `ClassificationInterpretation`, `export` and `load_learner` work.

    Binary models may have one output (the logit of the positive class) or two (scored as
    `z_positive - z_other`); more outputs are multiclass, with `average` 'micro' or 'macro'.
    `pos_label` names the positive class by its vocabulary value (default: the second class); a
    name needs the vocabulary, which `aum_learner` and `AUROCCallback` pass on (`bind`), or `vocab=`.

    AUM does not change when a constant is added to every score, so a binary model's bias, and
    with it `sigmoid(score) > 0.5`, is arbitrary: tune `thresh` (the probability of the positive
    class above which it is predicted) with `learn.tune_threshold()`, and calibrate the
    probabilities with `learn.calibrate()` (`fastai_aum.decisions`). `activation` gives binary
    models two columns, the probabilities of the classes in vocabulary order, whatever the number of outputs.

    `one_class_batches` counts the training batches whose AUM was 0 because a class was missing;
    if it is a large share, use larger or stratified batches (`fastai_aum.stratify_batches`).
    A batch with a non-finite output (NaN or inf) gives a NaN loss, whose gradient with respect to
    the outputs is zero, instead of an error, so the fit goes on or fastai's `TerminateOnNaNCallback`
    stops it cleanly (a model whose own computation is NaN still gets NaN gradients from it).
    On the CPU, `validate=True` checks each batch's outputs and labels (one cheap read-back) and raises
    at once on labels out of range. On a GPU the loss never waits for the device: labels are checked
    by an asynchronous assert (a bad one stops the run at a later kernel launch, as fastai's
    cross-entropy does), and a NaN loss is selected on the device. `validate=False` skips the label
    checks; the NaN still comes out.

    Recipes against AUM's lack of a margin (a perfectly ranked batch has gradient 0, so training stops
    at the first ranking that separates it): `margin=m` ranks each positive's score minus m (`aum`'s
    `margin`), so the loss is 0 only when every positive beats every negative by m; `ce_weight=lam`
    adds lam times the cross-entropy of the same outputs (binary cross-entropy of a single output or of
    each label, softmax cross-entropy of several), which also gives the bias a meaning. With it,
    `reduction='none'` gives each example its share of the 'mean' loss (AUM/n + ce_weight * ce_i/n).

    Multi-label: `multilabel=True` (or `bind(vocab, multilabel=True)`, never a batch) makes each output
    a label's logit against a multi-hot (N, L) target (fastai's `MultiCategoryBlock`): AUM is `aum(preds, target, average)` on
    the multi-hot target, `activation` the sigmoid per label, `decodes` `p > thresh` per label
    (`thresh` a number or one per label); `one_class_batches` then counts the batches where no label
    has both classes.
    """
    y_int = True

    def __init__(self, normalize: str = "rate", average: str = "micro", axis: int = -1, thresh=0.5,
                 reduction: str = "mean", validate: bool = True, pos_label=None, vocab=None, multilabel: bool = False,
                 margin: float = 0.0, ce_weight: float = 0.0):
        self.func = AUMLoss(normalize, average, reduction, validate, margin)
        self.ce_weight = check_non_negative("ce_weight", ce_weight)
        self._one_class = 0  # becomes a tensor on the model's device, so that counting never syncs
        self._outputs_probabilities = None  # multiclass: probabilities or logits, found on the first batch
        super().__init__(thresh, pos_label, vocab, multilabel, axis)

    def __repr__(self) -> str:
        pos_label = f", pos_label={self.pos_label!r}" if self.pos_label is not None else ""
        multilabel = ", multilabel=True" if self.multilabel else ""
        recipe = "".join(f", {k}={v!r}" for k, v in (("margin", self.margin), ("ce_weight", self.ce_weight)) if v)
        return (f"AUMLossFlat(normalize={self.func.normalize!r}, average={self.func.average!r}{pos_label}{multilabel}"
                f"{recipe})")

    @property
    def margin(self) -> float:
        return self.func.margin

    @property
    def reduction(self) -> str:
        return self.func.reduction

    @reduction.setter
    def reduction(self, value: str) -> None:
        self.func.reduction = value

    @property
    def one_class_batches(self) -> int:
        """Training batches so far whose AUM was 0 for want of a class: binary batches without a
        positive or a negative, macro batches without a class that has both, multi-label batches
        where no label has both classes."""
        return int(self._one_class)

    def __call__(self, preds: Tensor, target: Tensor, **kwargs) -> Tensor:
        preds = preds if type(preds) is Tensor else preds.as_subclass(Tensor)  # fastai's subclasses slow every op
        target = target if type(target) is Tensor else target.as_subclass(Tensor)
        if self.multilabel:
            return self._multilabel(preds.movedim(self.axis, -1) if preds.ndim > 1 else preds,
                                    target.movedim(self.axis, -1) if target.ndim > 1 else target, kwargs)
        if target.ndim == 2 and target.shape == preds.shape and target.shape[1] > 1:
            raise ValueError(f"AUMLossFlat: `target` of shape {tuple(target.shape)}, the shape of the outputs, is a "
                             "multi-hot (N, L) target, but the loss is single-label: build it with `multilabel=True` "
                             "(`aum_learner` and `AUROCCallback` bind it so for multi-label DataLoaders), or give "
                             "class indices of shape (N,)")
        target = target.reshape(-1)
        if preds.ndim > 1:  # the class axis last, the other axes, in order, flattened into the batch
            preds = preds.movedim(self.axis, -1).reshape(-1, preds.shape[self.axis])
        binary = self._is_binary(preds)
        if binary and self.pos_index == 0:
            # the labels' 1 marks the positive class; a two-output score becomes z0 - z1
            target, preds = 1 - target, preds.flip(-1) if preds.ndim == 2 and preds.shape[1] == 2 else preds
        if not binary:
            kwargs["probabilities"] = self._probabilities(preds)
        if self.func.validate and preds.device.type in _SYNC_IS_FREE_ON and len(target):
            return self._checked_on_host(preds, target, 2 if binary else preds.shape[1], kwargs)
        if self.func.validate:  # bad labels stop the run at a later kernel launch, as in fastai's cross-entropy
            torch._assert_async(_labels_ok(preds, target), _BAD_LABELS)
        finite = torch.isfinite(preds)  # no sync: the loss of the finite outputs, or the NaN, is selected on the device
        clean = torch.where(finite, preds, 0)  # no NaN in the gradient
        value = self._mix(self.func(clean, target, validate=False, **kwargs), clean, target, kwargs)
        value = torch.where(finite.all(), value, _nan_loss(preds).to(value.dtype))
        if preds.requires_grad:
            self._count_degenerate(preds, target)
        return value

    def _checked_on_host(self, preds: Tensor, target: Tensor, k: int, kwargs: dict) -> Tensor:
        """The loss where reading values back is free (the CPU): bad labels raise at once, and the
        value itself tells whether every output was finite (each score borders a gap of the sum)."""
        lo, hi = (x.item() for x in (target if target.dtype != torch.bool else target.byte()).aminmax())
        if lo < 0 or hi >= k or (target.is_floating_point() and bool((target != target.round()).any())):
            self.func(torch.zeros_like(preds.detach()), target, **kwargs)  # raises the functional API's message
        value = self.func(preds, target, validate=False, **kwargs)
        n = len(target)
        finite = math.isfinite(value.reshape(-1)[0].item()) if n > 1 else bool(torch.isfinite(preds).all())
        if not finite:
            return self.func.reduce(_nan_loss(preds), n)
        value = self._mix(value, preds, target, kwargs)
        if preds.requires_grad:  # a training batch: count it if a class was missing
            if k == 2:
                self._one_class = self._one_class + (lo == hi)
            elif self.func.average == "macro":
                counts = torch.bincount(target.long(), minlength=k).tolist()
                self._one_class = self._one_class + (not any(0 < c < n for c in counts))
        return value

    def _multilabel(self, preds: Tensor, target: Tensor, kwargs: dict) -> Tensor:
        """The loss of (N, L) logits against a multi-hot (N, L) target, checked as the binary path is."""
        if preds.shape != target.shape or preds.ndim != 2:
            raise ValueError(f"AUMLossFlat(multilabel=True): `target` must be multi-hot of the shape of the outputs "
                             f"(N, L), got {tuple(target.shape)} for outputs of shape {tuple(preds.shape)}")
        n = len(target)
        if self.func.validate and preds.device.type in _SYNC_IS_FREE_ON and n:
            if bool(((target != 0) & (target != 1)).any()):
                self.func(torch.zeros_like(preds.detach()), target, **kwargs)  # raises the functional API's message
            if not bool(torch.isfinite(preds).all()):
                return self.func.reduce(_nan_loss(preds), n)
            value = self._mix(self.func(preds, target, validate=False, **kwargs), preds, target, kwargs)
        else:
            if self.func.validate:
                torch._assert_async(((target == 0) | (target == 1)).all(), _BAD_MULTI_HOT)
            finite = torch.isfinite(preds)
            clean = torch.where(finite, preds, 0)
            value = self._mix(self.func(clean, target, validate=False, **kwargs), clean, target, kwargs)
            value = torch.where(finite.all(), value, _nan_loss(preds).to(value.dtype))
        if preds.requires_grad and n:  # a training batch: count it if no label had both classes
            support = (target != 0).sum(0)
            self._one_class = self._one_class + (~((support > 0) & (support < n)).any()).long()
        return value

    def _mix(self, value: Tensor, preds: Tensor, target: Tensor, kwargs: dict) -> Tensor:
        """The loss from the AUM `value` of checked outputs, with the cross-entropy added `ce_weight` times."""
        if not self.ce_weight or not len(target):
            return value
        probabilities = kwargs.get("probabilities")
        if probabilities is None:  # binary: two outputs may be probabilities (found on the first batch, then kept)
            two = not self.multilabel and preds.ndim == 2 and preds.shape[-1] == 2
            probabilities = two and self._probabilities(preds)
        ce = self._cross_entropy(preds, target, probabilities)
        return value + self.ce_weight * ce

    def _cross_entropy(self, preds: Tensor, target: Tensor, probabilities: bool) -> Tensor:
        """The cross-entropy of the outputs (logits, or probabilities if `probabilities`): binary of a single
        output or of each label, softmax of several outputs. 'none' gives each example its share of the mean,
        as AUM's 'none' does, so that the shares of the hybrid sum to its 'mean' value."""
        if self.multilabel:
            ce = F.binary_cross_entropy_with_logits(preds, target.to(preds.dtype), reduction="none").mean(-1)
        elif preds.ndim == 1 or preds.shape[-1] == 1:
            ce = F.binary_cross_entropy_with_logits(preds.reshape(-1), target.to(preds.dtype), reduction="none")
        elif probabilities:
            ce = F.nll_loss(preds.clamp_min(torch.finfo(preds.dtype).tiny).log(), target.long(), reduction="none")
        else:
            ce = F.cross_entropy(preds, target.long(), reduction="none")
        reduction = self.reduction
        return ce / len(ce) if reduction == "none" else ce.sum() if reduction == "sum" else ce.mean()

    def _probabilities(self, preds: Tensor) -> bool:
        """Whether the model outputs probabilities rather than logits: found on the first multiclass
        batch (one host-device sync) and kept, since a model's kind of output does not change."""
        if self._outputs_probabilities is None:
            self._outputs_probabilities = is_probability_matrix(preds)
        return self._outputs_probabilities

    @staticmethod
    def _is_binary(preds: Tensor) -> bool:
        return preds.ndim == 1 or preds.shape[-1] <= 2

    def _count_degenerate(self, preds: Tensor, target: Tensor) -> None:
        k = preds.shape[1] if preds.ndim == 2 and preds.shape[1] > 2 else 2
        if k > 2 and self.func.average == "micro":
            return  # pooled over classes, a micro AUM always has positives and negatives
        support = (target[:, None] == torch.arange(k, device=target.device)).sum(0)
        self._one_class = self._one_class + (~((support > 0) & (support < len(target))).any()).long()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_one_class": self.one_class_batches}  # no device tensor in a pickle


# Devices where reading a flag back to the host costs nothing: the loss checks each batch there and
# raises at once; elsewhere it checks on the device and never waits for it.
_SYNC_IS_FREE_ON = ("cpu",)
_BAD_MULTI_HOT = "AUMLossFlat: the multi-hot `target` holds values other than 0 and 1"
_BAD_LABELS = "AUMLossFlat: `target` holds labels that are not class indices of the model's outputs"


def _labels_ok(preds: Tensor, target: Tensor) -> Tensor:
    """0-d: whether every label is a class index of `preds`' columns (no host-device sync)."""
    if target.dtype == torch.bool:
        return torch.ones((), dtype=torch.bool, device=target.device)
    k = 2 if preds.ndim == 1 or preds.shape[-1] <= 2 else preds.shape[-1]
    ok = ((target >= 0) & (target < k)).all()
    return ok & (target == target.round()).all() if target.is_floating_point() else ok


def _nan_loss(preds: Tensor) -> Tensor:
    """A 0-d NaN attached to `preds`'s graph with a zero gradient, so `backward()` works and changes nothing."""
    p = preds if preds.dtype in (torch.float32, torch.float64) else preds.float()
    return p.sum() * 0 + math.nan
