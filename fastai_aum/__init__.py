"""Exact full-dataset AUROC and the AUM loss (Area Under Min(FP, FN)) for fastai."""
from .callback import AUROC, AUROCCallback, plot_roc
from .compare import Comparison, compare_losses
from .decisions import Calibration, TunedThreshold, DecisionThresholdCallback, calibrate, tune_threshold
from .decoding import DecisionLoss
from .functional import AUROCUndefinedWarning, ROC, aum, aum_directional_derivatives, auroc, best_threshold, roc_curve
from .learner import aum_learner
from .losses import AUMLoss, AUMLossFlat
from .metrics import DecisionMetric, decided
from .sampling import StratifiedShuffle, stratify_batches

__version__ = "0.1.0"
__all__ = ["AUROC", "AUROCCallback", "AUROCUndefinedWarning", "AUMLoss", "AUMLossFlat", "Calibration", "Comparison",
           "DecisionLoss", "DecisionMetric", "ROC", "StratifiedShuffle", "DecisionThresholdCallback", "TunedThreshold", "aum",
           "aum_directional_derivatives", "aum_learner", "auroc", "best_threshold", "calibrate", "compare_losses",
           "decided", "plot_roc", "roc_curve", "stratify_batches", "tune_threshold"]
