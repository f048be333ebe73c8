"""The README's "From ranking to decisions" example: train with AUM, tune the decision threshold on
the validation set, calibrate, and print the confusion matrices before and after.

    python docs/decisions_example.py
"""
import warnings

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # fastai's import-time notice
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

from fastai.interpret import ClassificationInterpretation  # noqa: E402
from fastai.metrics import BalancedAccuracy, F1Score, accuracy  # noqa: E402
from fastai.torch_core import set_seed  # noqa: E402

from fastai_aum import aum_learner  # noqa: E402
from fastai_aum.datasets import fraud_df, tabular_dls  # noqa: E402


def confusion(learn) -> str:
    with learn.no_bar():
        cm = ClassificationInterpretation.from_learner(learn).confusion_matrix()
    vocab = list(learn.dls.vocab)
    rows = [f"{'actual / predicted':>20} " + " ".join(f"{v:>8}" for v in vocab)]
    rows += [f"{v:>20} " + " ".join(f"{n:>8}" for n in row) for v, row in zip(vocab, cm)]
    return "\n".join(rows)


df = fraud_df()  # 4,000 generated rows, 4% 'fraud'; the vocabulary sorts 'fraud' first
dls = tabular_dls(df, cat_names=["channel"], bs=256)
set_seed(0)
learn = aum_learner(dls, pos_label="fraud", metrics=[accuracy, F1Score(), BalancedAccuracy()])
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(5, 1e-2)
names = learn.recorder.metric_names[3:-1]


def metrics(learn) -> str:
    with learn.no_bar():
        values = learn.validate()[1:]
    return ", ".join(f"{n} {v:.4f}" for n, v in zip(names, values))


print(f"validation AUROC ({learn.auroc.metric.name}, positive class {learn.auroc.positive_class!r}): "
      f"{learn.auroc.value:.4f}")
print(f"\nbefore tuning (thresh {learn.loss_func.thresh}): {metrics(learn)}\n{confusion(learn)}")
tuned = learn.tune_threshold("balanced_accuracy")
print(f"\nlearn.tune_threshold('balanced_accuracy') -> thresh {tuned.thresh:.4f} (score {tuned.score_thresh:+.4f}), "
      f"TPR {tuned.tpr:.3f}, FPR {tuned.fpr:.3f}")
print(f"after tuning: {metrics(learn)}\n{confusion(learn)}")
report = learn.calibrate("platt")
print(f"\nlearn.calibrate('platt'): Brier score {report.brier_before:.4f} -> {report.brier_after:.4f}, "
      f"log loss {report.log_loss_before:.4f} -> {report.log_loss_after:.4f}; "
      f"threshold re-tuned to {learn.loss_func.thresh:.4f}, the same decisions")
print(f"after calibrating: {metrics(learn)}")
