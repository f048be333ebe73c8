"""`AUMLoss` and `AUMLossFlat`: the AUM loss as an `nn.Module` and in fastai's loss conventions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional._inputs import check_choice, check_non_negative, is_probability_matrix
from .functional.aum_loss import _aum, binary_aum_on_host
from .functional.distributed import check_distributed, gather_batch, is_distributed
from .loss_decodes import BinaryDecisions

__all__ = ["AUMLoss", "AUMLossFlat", "GlobalBatch"]


class AUMLoss(nn.Module):
    """The AUM of a batch (`fastai_aum.functional.aum`) as an `nn.Module`.

    AUM belongs to the ranking of a whole batch, not to single examples: `reduction='none'` (which
    `get_preds(with_loss=True)` asks for) gives every example an equal share, so sums stay right.

    Args:
        normalize: 'rate' or 'count', as for `aum`.
        average: 'micro' or 'macro', as for `aum`.
        reduction: 'mean' or 'sum' (both the batch's AUM), or 'none' (each example's equal share of it).
        validate: False skips the value checks, as for `aum`.
        margin: m >= 0, as for `aum`.
    """

    def __init__(self, normalize: str = "rate", average: str = "micro", reduction: str = "mean",
                 validate: bool = True, margin: float = 0.0):
        super().__init__()
        check_choice("normalize", normalize, ("rate", "count"))
        check_choice("average", average, ("micro", "macro"))
        check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.normalize, self.average, self.reduction, self.validate = normalize, average, reduction, validate
        self.margin = check_non_negative("margin", margin)

    def forward(self, preds: Tensor, target: Tensor, *, validate: bool | None = None) -> Tensor:
        return self._reduced(preds, target, self.validate if validate is None else validate, None)

    def _reduced(self, preds: Tensor, target: Tensor, validate: bool, probabilities: bool | None) -> Tensor:
        value = _aum(preds, target, normalize=self.normalize, average=self.average, margin=self.margin,
                     validate=validate, probabilities=probabilities)
        return self.reduce(value, len(target))

    def reduce(self, value: Tensor, n: int) -> Tensor:
        """The batch's AUM `value` under `reduction` ('none': an equal share for each of `n` examples)."""
        return value.expand(n) / n if self.reduction == "none" else value


class GlobalBatch:
    """The `distributed` option of a loss. 'global': in training batches under DDP, every rank's outputs
    and labels are gathered, the loss (and its logged value) is that of the whole global batch, and DDP's
    update is its one-process gradient (`fastai_aum.functional.aum`'s `distributed`). Evaluation, and
    'local', rank each process's own rows."""
    distributed = "local"  # also what a loss pickled before the option loads with

    def _global_batch(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if self.distributed == "global" and preds.requires_grad and is_distributed():
            return gather_batch(preds, target)  # every rank's rows; the gradient to its own
        return preds, target

    def _distributed_repr(self) -> str:
        return ", distributed='global'" if self.distributed == "global" else ""


class AUMLossFlat(BinaryDecisions, GlobalBatch):
    """The AUM loss for fastai Learners, in fastai's loss conventions (a class `axis`, the other axes
    flattened into the batch, `activation`, `decodes`), so `get_preds`, `predict`, `export` and `load_learner` work.

    Binary models have one output (the positive class's logit) or two (scored `z_positive - z_other`),
    multiclass models more, multi-label models one logit per label. AUM ignores a constant added to every
    score: tune `thresh` with `learn.tune_threshold()`, calibrate with `learn.calibrate()`. A non-finite
    output gives a NaN loss with a zero gradient (`TerminateOnNaNCallback` can stop the fit). Bad labels
    raise at once on the CPU; on a device, where the loss never waits, they fail an asynchronous assert.

    Args:
        normalize: 'rate' or 'count', as for `aum`.
        average: 'micro' or 'macro': how the AUMs of classes or labels combine, as for `aum`.
        axis: the class (or label) axis of the outputs.
        thresh: the probability above which the positive class (multi-label: each label, a number or one
            per label) is predicted.
        reduction: 'mean', 'sum', or 'none' (each example's equal share of the 'mean' loss).
        validate: False skips the label checks; a non-finite output still gives NaN.
        pos_label: the positive class's vocabulary value (default: the second class); a name needs `vocab`
            or `bind`, which `aum_learner` and `AUROCCallback` call.
        vocab: the classes (or the DataLoaders), if known when the loss is built.
        multilabel: the outputs are one logit per label of a multi-hot target (`MultiCategoryBlock`);
            `bind(vocab, multilabel=...)` may set it later, a batch never does.
        margin: m >= 0 ranks each positive's score minus m (`aum`'s `margin`).
        ce_weight: adds this times the cross-entropy of the same outputs (binary of one output or of each
            label, softmax of several, of their log if they are probabilities).
        distributed: 'local', or 'global' for one AUM of every DDP rank's training rows (`GlobalBatch`).
    """
    y_int = True

    def __init__(self, normalize: str = "rate", average: str = "micro", axis: int = -1, thresh=0.5,
                 reduction: str = "mean", validate: bool = True, pos_label=None, vocab=None, multilabel: bool = False,
                 margin: float = 0.0, ce_weight: float = 0.0, distributed: str = "local"):
        self.func = AUMLoss(normalize, average, reduction, validate, margin)
        self.ce_weight, self.distributed = check_non_negative("ce_weight", ce_weight), check_distributed(distributed)
        self._one_class = 0  # becomes a tensor on the model's device, so that counting never syncs
        self._outputs_probabilities = None  # two or more outputs: probabilities or logits, found on the first batch
        super().__init__(thresh, pos_label, vocab, multilabel, axis)

    def __repr__(self) -> str:
        pos_label = f", pos_label={self.pos_label!r}" if self.pos_label is not None else ""
        multilabel = ", multilabel=True" if self.multilabel else ""
        recipe = "".join(f", {k}={v!r}" for k, v in (("margin", self.margin), ("ce_weight", self.ce_weight)) if v)
        return (f"AUMLossFlat(normalize={self.func.normalize!r}, average={self.func.average!r}{pos_label}{multilabel}"
                f"{recipe}{self._distributed_repr()})")

    @property
    def margin(self) -> float:
        return self.func.margin

    reduction = property(lambda self: self.func.reduction, lambda self, value: setattr(self.func, "reduction", value))

    @property
    def one_class_batches(self) -> int:
        """Training batches so far whose AUM was 0 for want of a class: binary batches without a
        positive or a negative, macro batches without a class that has both, multi-label batches
        where no label has both classes."""
        return int(self._one_class)

    def __call__(self, preds: Tensor, target: Tensor) -> Tensor:
        preds, target = self._global_batch(*self._flatten(preds, target))
        k = preds.shape[1] if self.multilabel or (preds.ndim == 2 and preds.shape[1] > 2) else 2
        probabilities = None  # whether several single-label outputs are probabilities, for AUM and cross-entropy
        if not self.multilabel and preds.ndim == 2 and (k > 2 or (preds.shape[1] == 2 and self.ce_weight)):
            probabilities = self._probabilities(preds)
        # The one switch: where reading a value back is free (the CPU), check and select with Python numbers
        # and raise at once; elsewhere keep every flag on the device and never wait for it.
        on_host = preds.device.type in _SYNC_IS_FREE_ON
        fast = _binary_on_host(self, preds, target, probabilities) if on_host and k == 2 and not self.multilabel else None
        if fast is not None:
            return fast
        if self.func.validate:
            _check_labels(self.func, preds, target, k, self.multilabel, on_host, probabilities)
        finite, clean = _finite_outputs(preds, on_host)
        if on_host and not finite:
            return self.func.reduce(_nan_loss(preds), len(target))
        value = self.func._reduced(clean, target, False, probabilities)
        if self.ce_weight:
            value = value + self.ce_weight * _cross_entropy(clean, target, self.multilabel, probabilities, self.reduction)
        if not on_host:  # the loss of the finite outputs, or the NaN, selected on the device
            value = torch.where(finite, value, _nan_loss(preds).to(value.dtype))
        if preds.requires_grad and (k == 2 or self.multilabel or self.func.average == "macro"):
            # a training batch: count it if no class (label) had both; a micro multiclass batch always has
            self._one_class = self._one_class + _one_class(target, k, self.multilabel, finite, on_host)
        return value

    def _flatten(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The outputs as (N,) or (N, C), class axis last, and the target as (N,) labels (binary: 1 marks
        the positive class, a two-output score becomes `z_positive - z_other`) or (N, L) multi-hot."""
        preds = preds if type(preds) is Tensor else preds.as_subclass(Tensor)  # fastai's subclasses slow every op
        target = target if type(target) is Tensor else target.as_subclass(Tensor)
        if self.multilabel:
            return _multi_hot_flat(preds, target, self.axis)
        if target.ndim == 2 and target.shape == preds.shape and target.shape[1] > 1:
            raise ValueError(f"AUMLossFlat: `target` of shape {tuple(target.shape)}, the shape of the outputs, is a multi-"
                             "hot (N, L) target, but the loss is single-label: build it with `multilabel=True` (as "
                             "`aum_learner` and `AUROCCallback` bind it for multi-label data), or give labels of shape (N,)")
        target = target.reshape(-1)
        if preds.ndim > 2 or (preds.ndim == 2 and self.axis not in (-1, 1)):  # the class axis last, the other
            preds = preds.movedim(self.axis, -1).reshape(-1, preds.shape[self.axis])  # axes flattened into the batch
        if (preds.ndim == 1 or preds.shape[1] <= 2) and self.pos_index == 0:
            if self.func.validate and target.device.type in _SYNC_IS_FREE_ON:  # a message shows the labels given
                _check_labels(self.func, preds, target, 2, False, True, None)
            target, preds = 1 - target, preds.flip(-1) if preds.ndim == 2 and preds.shape[1] == 2 else preds
        return preds, target

    def _probabilities(self, preds: Tensor) -> bool:
        """Whether the model outputs probabilities rather than logits: found on the first batch with
        several outputs (one host-device sync) and kept, since a model's kind of output does not change."""
        if self._outputs_probabilities is None:
            self._outputs_probabilities = is_probability_matrix(preds)
        return self._outputs_probabilities

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_one_class": self.one_class_batches}  # no device tensor in a pickle


# Devices where reading a flag back to the host costs nothing: the loss checks each batch there and
# raises at once; elsewhere it checks on the device and never waits for it.
_SYNC_IS_FREE_ON = ("cpu",)
# of the one-pass binary loss; fastai's categorical targets are small integers (int8 for two classes)
_HOST_FLOATS = (torch.float32, torch.float64)
_HOST_LABELS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
_BAD_MULTI_HOT = "AUMLossFlat: the multi-hot `target` holds values other than 0 and 1"
_BAD_LABELS = "AUMLossFlat: `target` holds labels that are not class indices of the model's outputs"


def _multi_hot_flat(preds: Tensor, target: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """Multi-label outputs and multi-hot target as (N, L), the label axis last."""
    preds = preds.movedim(axis, -1) if preds.ndim > 1 else preds
    target = target.movedim(axis, -1) if target.ndim > 1 else target
    if preds.shape != target.shape or preds.ndim != 2:
        raise ValueError(f"AUMLossFlat(multilabel=True): `target` must be multi-hot of the shape of the "
                         f"outputs (N, L), got {tuple(target.shape)} for outputs of shape {tuple(preds.shape)}")
    return preds, target


def _binary_on_host(loss: AUMLossFlat, preds: Tensor, target: Tensor, probabilities: bool | None) -> Tensor | None:
    """`loss` of a binary batch on the CPU in one pass (the same bits as the general path, fewer
    operations): labels checked by one reduction, finiteness read from the AUM itself (a non-finite
    score makes it non-finite), the positives counted by the AUM's pass. None where it does not apply
    (other dtypes, fewer than 2 examples, labels the general path must check or read)."""
    n = len(target)
    if (preds.dtype not in _HOST_FLOATS or target.dtype not in _HOST_LABELS or n < 2 or preds.shape[0] != n
            or (preds.ndim == 2 and preds.shape[1] == 0)):
        return None
    if target.dtype == torch.bool:
        positive = target
    else:
        if loss.func.validate:
            lo, hi = torch.aminmax(target)
            if lo.item() < 0 or hi.item() > 1:
                return None
        positive = target == 1
    # (N, 1) as a view: its backward is a reshape, where a column's (select) fills zeros and copies;
    # two outputs are differenced inside the AUM's own autograd node
    outputs = preds.reshape(-1) if preds.ndim == 1 or preds.shape[1] == 1 else preds
    func = loss.func
    value, n_pos = binary_aum_on_host(outputs, positive, func.normalize, func.margin)
    if not math.isfinite(value.item()) and not _finite_outputs(preds, True)[0]:
        return func.reduce(_nan_loss(preds), n)
    value = func.reduce(value, n)
    if loss.ce_weight:
        value = value + loss.ce_weight * _cross_entropy(preds, target, False, probabilities, func.reduction)
    if preds.requires_grad:  # a training batch: count it if it has one class only
        loss._one_class = loss._one_class + (n_pos == 0 or n_pos == n)
    return value


def _check_labels(func: AUMLoss, preds: Tensor, target: Tensor, k: int, multilabel: bool, on_host: bool,
                  probabilities: bool | None) -> None:
    """Where reading back is free, raise at once on bad labels, with the functional API's message (which
    reads binary {-1, 1} labels as {0, 1}); elsewhere an asynchronous assert stops the run at a later
    kernel launch, as fastai's cross-entropy does."""
    ok = _labels_ok(target, k, multilabel)
    if not on_host:
        torch._assert_async(ok, _BAD_MULTI_HOT if multilabel else _BAD_LABELS)
    elif not ok:
        func._reduced(torch.zeros_like(preds.detach()), target, True, probabilities)


def _labels_ok(target: Tensor, k: int, multilabel: bool) -> Tensor:
    """0-d: whether every label is a class index in [0, k), or every multi-hot entry 0 or 1 (no host-device sync)."""
    if target.dtype == torch.bool or not target.numel():
        return torch.ones((), dtype=torch.bool, device=target.device)
    if multilabel:
        return ((target == 0) | (target == 1)).all()
    lo, hi = target.aminmax()
    ok = (lo >= 0) & (hi < k)
    return ok & (target == target.round()).all() if target.is_floating_point() else ok


def _finite_outputs(preds: Tensor, on_host: bool):
    """Whether every output is finite, and the outputs with the others zeroed so that no NaN reaches the
    gradient. On the host a Python bool from one float64 sum (NaN and inf reach it; counted exactly only
    if it is not finite: it may have overflowed), the outputs as they are (a non-finite batch is NaN at
    once); elsewhere a 0-d tensor (no host-device sync)."""
    if on_host:
        return math.isfinite(preds.detach().sum(dtype=torch.float64).item()) or bool(torch.isfinite(preds).all()), preds
    entries = torch.isfinite(preds)
    return entries.all(), torch.where(entries, preds, 0)


def _one_class(target: Tensor, k: int, multilabel: bool, finite, on_host: bool):
    """Whether a batch with finite outputs (`finite`) has no class, or no label, with both members and
    non-members: a Python bool on the host, else a 0-d tensor (no host-device sync)."""
    if multilabel:
        support = (target != 0).sum(0)
    elif k == 2:  # the positives; binary labels may be {-1, 1}, which the functional API reads as {0, 1}
        support = (target == 1).sum()
    else:
        support = (target[:, None] == torch.arange(k, device=target.device)).sum(0)
    n = len(target)
    if on_host:
        return finite and not any(0 < c < n for c in support.reshape(-1).tolist())
    return (~((support > 0) & (support < n)).any() & finite).long()


def _cross_entropy(preds: Tensor, target: Tensor, multilabel: bool, probabilities: bool | None,
                   reduction: str) -> Tensor:
    """The cross-entropy of the outputs: binary of a single output or of each label, softmax of several
    (`nll_loss` of their log if they are `probabilities`). 'none' gives each example its share of the
    mean, as AUM's 'none' does, so that the shares of the hybrid loss sum to its 'mean' value."""
    if multilabel:
        ce = F.binary_cross_entropy_with_logits(preds, target.to(preds.dtype), reduction="none").mean(-1)
    elif preds.ndim == 1 or preds.shape[-1] == 1:
        ce = F.binary_cross_entropy_with_logits(preds.reshape(-1), target.to(preds.dtype), reduction="none")
    elif probabilities:
        ce = F.nll_loss(preds.clamp_min(torch.finfo(preds.dtype).tiny).log(), target.long(), reduction="none")
    else:
        ce = F.cross_entropy(preds, target.long(), reduction="none")
    return ce / len(ce) if reduction == "none" else ce.sum() if reduction == "sum" else ce.mean()


def _nan_loss(preds: Tensor) -> Tensor:
    """A 0-d NaN attached to `preds`'s graph with a zero gradient, so `backward()` works and changes nothing."""
    p = preds if preds.dtype in (torch.float32, torch.float64) else preds.float()
    return p.sum() * 0 + math.nan
