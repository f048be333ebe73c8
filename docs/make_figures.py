"""Draw the figures the README shows: python docs/make_figures.py (writes docs/*.png)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from fastai.tabular.all import tabular_learner  # noqa: E402
from fastai.torch_core import set_seed  # noqa: E402

from fastai_aum import AUMLossFlat, AUROCCallback  # noqa: E402
from fastai_aum.datasets import breast_cancer_df, tabular_dls  # noqa: E402

HERE = Path(__file__).parent


def roc_breast_cancer():
    set_seed(0)
    dls = tabular_dls(breast_cancer_df(pos_frac=0.1), bs=32)
    learn = tabular_learner(dls, loss_func=AUMLossFlat(), cbs=AUROCCallback())
    with learn.no_bar():
        learn.fit_one_cycle(5, 1e-2)
    ax = learn.auroc.plot(title="breast cancer, 10% malignant: validation ROC")
    ax.figure.savefig(HERE / "roc_breast_cancer.png", dpi=110, bbox_inches="tight")
    print(learn.auroc.history)


if __name__ == "__main__":
    roc_breast_cancer()
