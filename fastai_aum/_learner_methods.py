"""`learn.tune_threshold()` and `learn.calibrate()` from `import fastai_aum` alone, without importing fastai.

If fastai's `Learner` is already imported, the methods are added now; otherwise right after
`fastai.learner` is first imported. Each forwards to `fastai_aum.decisions`, whose import replaces
them with the real methods (fastcore's `patch_to`, as fastai adds `lr_find`).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__all__ = ["add_learner_methods"]

METHODS = ("tune_threshold", "calibrate")


def _forwarding(name: str):
    def method(self, *args, **kwargs):
        from . import decisions  # its import replaces this method with the real one
        return getattr(decisions, name)(self, *args, **kwargs)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"`fastai_aum.decisions.{name}(learn, ...)`: the real method is in place after its first call."
    return method


def _add_to(learner_cls) -> None:
    for name in METHODS:
        if not hasattr(learner_cls, name):
            setattr(learner_cls, name, _forwarding(name))


class _AfterFastaiLearner(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loading of `fastai.learner` to add the methods once it ran."""

    def find_spec(self, name, path=None, target=None):
        if name != "fastai.learner":
            return None
        sys.meta_path.remove(self)  # one use; and `find_spec` below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _add_to(module.Learner)
        spec.loader.exec_module = exec_module
        return spec


def add_learner_methods() -> None:
    """Give fastai's `Learner` `tune_threshold` and `calibrate`: now if it is imported, else when it is."""
    module = sys.modules.get("fastai.learner")
    if module is not None and hasattr(module, "Learner"):
        _add_to(module.Learner)
    elif not any(isinstance(f, _AfterFastaiLearner) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterFastaiLearner())
