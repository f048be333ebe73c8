"""Pure-torch ROC curves, exact AUROC and the differentiable AUM loss (no fastai import).

Everything here sorts once per problem and works batched over rows, on any device. Scores are
"larger means more positive"; `docs/definitions.md` defines AUM, ties, the directional derivatives and
the rules for bad input. One module per concept: `roc` (ROC curves, AUROC), `aum_loss` (AUM and its
derivatives), `thresholds` (the best decision threshold), `calibration` (Platt, isotonic, Brier score,
log loss), `statistics` (DeLong's interval and test), `precision_recall` (PR curves, average
precision), `distributed` (every DDP rank's batch in one, for `aum(distributed='global')`), `streaming` (a
fixed-memory histogram AUROC with its error bound), `chunked` (one-vs-rest AUROC a few class columns at a
time); `_counts` (sorted rows' cumulative TP and FP, the one counting core of the ROC and PR quantities),
`_scores` and `_sorting` are the shared machinery.
"""
from ._inputs import AUROCUndefinedWarning, ProbabilityRowsWarning
from ._scores import binary_score
from .aum_loss import aum, aum_directional_derivatives
from .calibration import (IsotonicCalibration, PlattScaling, brier_score, isotonic_calibration, log_loss,
                          platt_scaling)
from .precision_recall import PR, average_precision, precision_recall_curve
from .roc import ROC, auroc, check_auroc_options, roc_curve
from .streaming import AUROCHistogram, BoundedAUROC, streaming_auroc
from .statistics import AUROCInterval, AUROCTest, auroc_ci, auroc_test
from .thresholds import BestThreshold, best_threshold

__all__ = ["ROC", "roc_curve", "auroc", "aum", "aum_directional_derivatives", "binary_score",
           "check_auroc_options", "AUROCUndefinedWarning",
           "ProbabilityRowsWarning", "BestThreshold", "best_threshold", "PlattScaling",
           "platt_scaling", "IsotonicCalibration", "isotonic_calibration", "brier_score", "log_loss",
           "AUROCInterval", "AUROCTest", "auroc_ci", "auroc_test", "PR", "precision_recall_curve",
           "average_precision", "AUROCHistogram", "BoundedAUROC", "streaming_auroc"]
