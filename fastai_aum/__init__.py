"""Exact full-dataset AUROC and the AUM loss (Area Under Min(FP, FN)) for fastai."""
from .functional import AUROCUndefinedWarning, ROC, aum, aum_directional_derivatives, auroc, roc_curve

__version__ = "0.1.0"
__all__ = ["AUROCUndefinedWarning", "ROC", "aum", "aum_directional_derivatives", "auroc", "roc_curve"]
