"""Exact full-dataset AUROC and the AUM loss (Area Under Min(FP, FN)) for fastai."""
from .callback import AUROC, AUROCCallback, plot_roc
from .compare import Comparison, compare_losses
from .functional import AUROCUndefinedWarning, ROC, aum, aum_directional_derivatives, auroc, roc_curve
from .learner import aum_learner
from .losses import AUMLoss, AUMLossFlat
from .sampling import StratifiedShuffle, stratify_batches

__version__ = "0.1.0"
__all__ = ["AUROC", "AUROCCallback", "AUROCUndefinedWarning", "AUMLoss", "AUMLossFlat", "Comparison", "ROC", "aum",
           "aum_directional_derivatives", "aum_learner", "auroc", "compare_losses", "plot_roc", "roc_curve", "StratifiedShuffle",
           "stratify_batches"]
