"""Exact full-dataset AUROC and the AUM loss (Area Under Min(FP, FN)) for fastai.

The public names below are imported on first use, so that `import fastai_aum` (and the `fastai-aum`
command's `--help`) does not import fastai and torch until something needs them. Using any of them
loads them all. `import fastai_aum` alone gives fastai's `Learner` the methods `tune_threshold` and
`calibrate` (`fastai_aum.decisions`), as soon as fastai is imported.
"""
from __future__ import annotations

import importlib

from ._learner_methods import add_learner_methods

__version__ = "0.1.0"

_EXPORTS = {  # public name -> the module that defines it
    "AUROC": "metrics", "AUROCCallback": "callback", "plot_roc": "plotting",
    "Comparison": "compare.report", "compare_losses": "compare.run", "compare_losses_on_df": "compare.run",
    "Calibration": "decisions", "DecisionThresholdCallback": "decisions", "TunedThreshold": "decisions",
    "calibrate": "decisions", "tune_threshold": "decisions",
    "DecisionLoss": "loss_decodes",
    "AUROCUndefinedWarning": "functional", "ROC": "functional", "aum": "functional",
    "aum_directional_derivatives": "functional", "auroc": "functional", "best_threshold": "functional",
    "roc_curve": "functional",
    "aum_learner": "learner", "distrib_ctx": "distributed",
    "AUMLoss": "losses", "AUMLossFlat": "losses",
    "DecisionMetric": "decisions", "decided": "decisions",
    "LastLayerScaleCallback": "recipes",
    "StratifiedShuffle": "sampling", "stratify_batches": "sampling",
}
__all__ = sorted(_EXPORTS)

add_learner_methods()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # The first use loads every module, as an eager import would: what they add to fastai
    # (`Learner.tune_threshold`, `Learner.calibrate`, and fastai's own `fit_one_cycle` and `no_bar`,
    # which the comparison imports) is then there whichever name came first.
    for module in sorted(set(_EXPORTS.values())):
        importlib.import_module(f".{module}", __name__)
    globals().update({n: getattr(importlib.import_module(f".{m}", __name__), n) for n, m in _EXPORTS.items()})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
