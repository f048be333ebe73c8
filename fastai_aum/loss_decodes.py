"""Binary decisions in fastai's loss conventions: a named positive class, a decision threshold on its
probability, and optionally calibrated probabilities, for `AUMLossFlat` and for any other binary loss
(`DecisionLoss`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional._inputs import is_probability_matrix
from .vocab import class_names, pos_label_index

__all__ = ["BinaryDecisions", "DecisionLoss"]


class BinaryDecisions:
    """What a fastai loss needs to turn a model's outputs into probabilities and decisions: for a binary
    model a named positive class, a threshold on its probability and, once fitted (`learn.calibrate()`),
    a calibration of its score; for a multi-label model a sigmoid and a threshold per label. A subclass
    may override `multiclass_activation`.

    Args:
        thresh: the probability above which the positive class (multi-label: each label) is predicted;
            for multi-label a number or one per label.
        pos_label: the positive class's vocabulary value (default: the second class); `bind` finds it.
        vocab: the classes (or the DataLoaders), if known.
        multilabel: whether the outputs are one logit per label (multi-hot targets).
        axis: the class (or label) axis of the outputs.
    """

    def __init__(self, thresh=0.5, pos_label=None, vocab=None, multilabel: bool = False, axis: int = -1):
        self.pos_label, self.axis = pos_label, axis
        self.thresh = thresh
        self.multilabel = _checked_multilabel(type(self).__name__, multilabel, pos_label)
        self.vocab, self._pos = None, 1
        self.calibration = None  # binary score -> probability of the positive class
        self.tuning = None  # how `thresh` was tuned (`learn.tune_threshold`), so that calibrating can re-tune it
        self._last = None  # (probabilities, raw outputs) of the latest binary `activation`, for `decodes`
        if vocab is not None:
            self.bind(vocab)

    @property
    def thresh(self):
        """The probability of the positive class above which it is predicted (multi-label: per label)."""
        return self._thresh

    @thresh.setter
    def thresh(self, value) -> None:
        # the cut is made on the score, in float64, where a float32 probability would saturate
        self._thresh, self.score_thresh = value, _score_cuts(value)

    def set_score_threshold(self, score_thresh) -> None:
        """Decide on the score: positive where `score > score_thresh` (multi-label: one per label); `thresh`
        shows the cut as a probability, its sigmoid."""
        self.score_thresh = float(score_thresh) if isinstance(score_thresh, (int, float)) else list(map(float, score_thresh))
        self._thresh = _sigmoid(self.score_thresh) if isinstance(self.score_thresh, float) else \
            [_sigmoid(t) for t in self.score_thresh]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}  # no outputs in a pickle

    def bind(self, vocab, multilabel: bool | None = None):
        """Bind the loss to its data: find the positive class in `vocab` and, if given, set `multilabel`;
        returns self. `aum_learner` and `AUROCCallback` call it with the DataLoaders' classes.

        Args:
            vocab: the classes: a vocabulary, a fastai `CategoryMap`, or DataLoaders (whose `vocab` is read).
            multilabel: whether the outputs are one logit per label of multi-hot targets; None keeps the
                current setting.
        """
        if multilabel is not None:
            self.multilabel = _checked_multilabel(type(self).__name__, multilabel, self.pos_label)
        self.vocab = class_names(vocab)
        self._pos = pos_label_index(self.vocab, self.pos_label)
        return self

    @property
    def pos_index(self) -> int:
        """Index of the positive class in the vocabulary: the class a single output is the logit of."""
        if self.pos_label is not None and self.vocab is None:
            raise ValueError(f"{type(self).__name__}(pos_label={self.pos_label!r}) needs the vocabulary to find that "
                             "class: build the Learner with `aum_learner`, add `AUROCCallback`, or pass `vocab=dls.vocab`")
        return self._pos

    @property
    def positive_class(self):
        """The positive class's vocabulary value (its index while the vocabulary is unknown)."""
        return self.vocab[self._pos] if self.vocab is not None and len(self.vocab) > self._pos else self._pos

    def _n_outputs(self, x: Tensor) -> int:
        return 1 if x.ndim == 1 else x.shape[self.axis]

    def score(self, x: Tensor) -> Tensor:
        """The binary score of raw outputs, larger for the positive class: the single output, or
        `z_positive - z_other` (the positive probability for a model that outputs probabilities)."""
        k = self._n_outputs(x)
        if k > 2:
            raise ValueError(f"`score` is for binary models (1 or 2 outputs), got {k} outputs")
        if k == 1:
            return x if x.ndim == 1 else x.squeeze(self.axis)
        pos, other = x.select(self.axis, self.pos_index), x.select(self.axis, 1 - self.pos_index)
        return pos if _probability_rows(x, self.axis) else pos - other

    def multiclass_activation(self, x: Tensor) -> Tensor:
        return x if _probability_rows(x, self.axis) else F.softmax(x, dim=self.axis)

    def activation(self, x: Tensor) -> Tensor:
        """Probabilities: for a binary model, both classes' (vocabulary order) from the sigmoid of its
        score, or from `calibration` once fitted; softmax of several outputs (unless they already are
        probabilities)."""
        if self.multilabel:
            probs = torch.sigmoid(x)
            self._last = (probs, x)
            return probs
        k = self._n_outputs(x)
        if k > 2:
            return self.multiclass_activation(x)
        if k == 2 and self.calibration is None:
            probs = self.multiclass_activation(x)
        else:
            s = self.score(x)
            p = torch.sigmoid(s) if self.calibration is None else self.calibration(s).to(s.dtype)
            pair = [1 - p, p] if self.pos_index == 1 else [p, 1 - p]
            probs = torch.stack(pair, dim=self.axis if x.ndim > 1 else -1)
        self._last = (probs, x)  # fastai decodes exactly these (`decodes(activation(raw))`): keep the scores
        return probs

    def decodes(self, x: Tensor) -> Tensor:
        """Class indices from `activation`'s output: binary models predict the positive class where
        its probability exceeds `thresh`; multiclass models take the most probable class; multi-label
        models predict each label whose probability exceeds `thresh` (per label if a sequence). On the
        output of its own latest `activation` (fastai's path), the cut is made on the exact score."""
        last, self._last = self._last, None
        return _decide(self, x, last)


def _decide(loss: BinaryDecisions, x: Tensor, last) -> Tensor:
    """`loss.decodes(x)`; `last` is `(probabilities, raw outputs)` of its latest `activation`, whose exact
    scores are cut when `x` is those probabilities."""
    if loss.multilabel:
        if last is not None and last[0] is x and loss.score_thresh is not None:
            raw = last[1].double()  # the logits are known: cut them exactly
            return raw > _label_thresholds(loss.score_thresh, raw, loss.axis)
        return x > _label_thresholds(loss.thresh, x, loss.axis)
    k = loss._n_outputs(x)
    if k > 2:
        return x.argmax(dim=loss.axis)
    pos = loss.pos_index
    if last is not None and last[0] is x and (loss.calibration is not None or loss.score_thresh is not None):
        # the raw outputs are known: decide on their exact score
        s = loss.score(last[1].double())
        positive = s > loss.score_thresh if loss.calibration is None else loss.calibration(s) > loss.thresh
        return torch.where(positive, pos, 1 - pos)
    p = x if x.ndim == 1 else x.squeeze(loss.axis) if k == 1 else x.select(loss.axis, pos)
    return torch.where(p > loss.thresh, pos, 1 - pos)


def _score_cuts(thresh):
    """The score cut(s) of probability threshold(s) `thresh` (their logits), or None if it is not numeric."""
    try:
        return _logit(float(thresh)) if torch.as_tensor(thresh).ndim == 0 else [_logit(float(v)) for v in thresh]
    except (TypeError, ValueError):
        return None  # `decodes` compares probabilities, and says what is wrong


def _sigmoid(t: float) -> float:
    return 1 / (1 + math.exp(-t)) if math.isfinite(t) else float(t > 0)


def _logit(p: float) -> float:
    """The score whose sigmoid is `p` (+-inf at 1 and 0), in float64."""
    return math.inf if p >= 1 else -math.inf if p <= 0 else math.log(p) - math.log1p(-p)


def _checked_multilabel(owner: str, multilabel, pos_label) -> bool:
    """`multilabel`, checked: True or False, and not True together with a positive class."""
    if not isinstance(multilabel, bool):
        raise TypeError(f"{owner}: `multilabel` must be True or False, got {multilabel!r}")
    if multilabel and pos_label is not None:
        raise ValueError(f"{owner}: `pos_label`={pos_label!r} names the positive class of a binary problem; a "
                         "multi-label problem has none (each label is its own binary problem)")
    return multilabel


def _label_thresholds(thresh, x: Tensor, axis: int):
    """`thresh` as a number, or as a tensor of one threshold per label broadcasting along `axis` of `x`."""
    if isinstance(thresh, (int, float)):
        return thresh
    t = torch.as_tensor(thresh, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    if t.ndim == 0:
        return t
    n = x.shape[axis]
    if t.shape != (n,):
        raise ValueError(f"`thresh` must be a number or one threshold per label ({n}), got shape {tuple(t.shape)}")
    return t.reshape([n if d == axis % x.ndim else 1 for d in range(x.ndim)])


def _probability_rows(x: Tensor, axis: int) -> bool:
    return is_probability_matrix(x.movedim(axis, -1).reshape(-1, x.shape[axis]))


class DecisionLoss(BinaryDecisions):
    """Another binary fastai loss (e.g. `CrossEntropyLossFlat`) with a tunable threshold, a named
    positive class and calibration; the loss itself is `loss`'s, unchanged. `learn.tune_threshold()`
    wraps a Learner's loss in it where the loss has no threshold of its own.

    Args:
        loss: the fastai loss that computes the loss (its `axis`, `activation`, `reduction` and `y_int` are used).
        thresh: the probability of the positive class above which it is predicted.
        pos_label: the positive class's vocabulary value (default: the second class).
        vocab: the classes (or the DataLoaders), if known.
        multilabel: whether `loss` is a multi-label loss (one logit per label), decided per label.
    """

    def __init__(self, loss, thresh: float = 0.5, pos_label=None, vocab=None, multilabel: bool = False):
        self.loss = loss
        super().__init__(thresh, pos_label, vocab, multilabel, axis=getattr(loss, "axis", -1))

    def __repr__(self) -> str:
        return f"DecisionLoss({self.loss!r}, thresh={self.thresh!r})"

    def __call__(self, *args, **kwargs):
        return self.loss(*args, **kwargs)

    def multiclass_activation(self, x: Tensor) -> Tensor:
        act = getattr(self.loss, "activation", None)
        return act(x) if act is not None else super().multiclass_activation(x)

    @property
    def reduction(self):  # fastai's `loss_not_reduced` sets it for `get_preds(with_loss=True)`
        return self.loss.reduction

    @reduction.setter
    def reduction(self, value) -> None:
        self.loss.reduction = value

    @property
    def y_int(self) -> bool:
        return getattr(self.loss, "y_int", True)
