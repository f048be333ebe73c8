"""Which of fastai's fits train: `fit` does; `validate`, `get_preds` and `lr_find` do not (not for real)."""
from __future__ import annotations

import fastai.callback.core as _core
from fastai.callback.core import Callback

__all__ = ["TrainingFitCallback", "is_search"]


def is_search(learn) -> bool:
    """Whether the fit under way is `lr_find` or `get_preds`, by fastai's own test (`TrackerCallback.before_fit`)."""
    return hasattr(learn, "lr_finder") or hasattr(learn, "gather_preds")


class TrainingFitCallback(Callback):
    """A Callback that knows whether the fit under way trains for real.

    `training_fit` is False from `before_fit` on, and becomes True at the first `before_train` of a fit
    that is not `lr_find` or `get_preds`; `validate` has no `before_train`, so it never trains. A
    subclass's `before_training_fit` runs then, once per such fit, before its first training batch.
    """
    training_fit = False

    def __call__(self, event_name: str):
        if event_name in _INNER_LOOP and not hasattr(type(self), event_name):
            # fastai's own dispatch would find nothing to run only after two lookups through the
            # Learner (`training`, then the event's name): per batch and event, that is most of what
            # a callback costs a validation pass
            return None
        if event_name == "before_fit":
            self.training_fit = False
        elif event_name == "before_train" and self.run and not self.training_fit and not is_search(self.learn):
            self.training_fit = True
            self.before_training_fit()
        return super().__call__(event_name)

    def before_training_fit(self) -> None:
        """Runs once per training fit, before its first training batch."""


# fastai's per-batch events (a private name: without it every event takes fastai's own dispatch)
_INNER_LOOP = frozenset(getattr(_core, "_inner_loop", ()))
