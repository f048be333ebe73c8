"""Small imbalanced data sets built from what scikit-learn bundles or from code: nothing is downloaded.

Each `*_df` returns a pandas DataFrame with a string label column, so fastai builds the vocabulary
(sorted, so the positive class of a binary problem is the second entry); each `*_dls` returns
fastai DataLoaders with a stratified validation split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["breast_cancer_df", "wine_df", "digits_df", "text_df", "fraud_df", "multilabel_df", "stratified_split",
           "subsample_positives", "tabular_dls", "digits_dls", "text_dls"]

TOPICS = ("sports", "politics", "science", "health", "arts", "travel")


def stratified_split(labels, valid_pct: float = 0.25, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train and validation row indices with every class in both parts in proportion."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(labels))
    train, valid = train_test_split(idx, test_size=valid_pct, random_state=seed, stratify=np.asarray(labels))
    return sorted(train.tolist()), sorted(valid.tolist())


def subsample_positives(df: pd.DataFrame, positive, pos_frac: float | None, seed: int) -> pd.DataFrame:
    """Keep every negative and enough positives that they make up `pos_frac` of the rows (original index kept)."""
    if pos_frac is None:
        return df
    if not 0 < pos_frac < 1:
        raise ValueError(f"`pos_frac` must be in (0, 1), got {pos_frac!r}")
    is_pos = positive(df)
    n_neg = int((~is_pos).sum())
    n_pos = min(int(is_pos.sum()), max(2, round(n_neg * pos_frac / (1 - pos_frac))))
    keep = df[is_pos].sample(n=n_pos, random_state=seed)
    return pd.concat([df[~is_pos], keep]).sort_index()


def breast_cancer_df(pos_frac: float | None = 0.1, seed: int = 0) -> pd.DataFrame:
    """scikit-learn's breast cancer data, label 'malignant' (positive) or 'benign', with the
    malignant rows subsampled to `pos_frac` of the total (None keeps all 212 of 569)."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer(as_frame=True)
    df = data.frame.drop(columns="target")
    df.columns = [c.replace(" ", "_") for c in df.columns]
    df["label"] = np.where(data.target == 0, "malignant", "benign")
    return subsample_positives(df, lambda d: d["label"] == "malignant", pos_frac, seed).reset_index(drop=True)


def wine_df() -> pd.DataFrame:
    """scikit-learn's wine data: 178 rows, 13 features, labels 'class_0' to 'class_2'."""
    from sklearn.datasets import load_wine
    data = load_wine(as_frame=True)
    df = data.frame.drop(columns="target")
    df["label"] = [f"class_{t}" for t in data.target]
    return df


def digits_df(positive_digit: int | None = None, pos_frac: float | None = None, seed: int = 0) -> pd.DataFrame:
    """scikit-learn's 8x8 digits as a DataFrame of 64 pixel columns (0..16) and a label, indexed by
    the row of the original data.

    With `positive_digit=k` the problem is one-vs-rest: label 'yes' for k, 'no' otherwise, the 'yes'
    rows subsampled to `pos_frac` of the total if given. Without it, the labels are '0' to '9'.
    """
    from sklearn.datasets import load_digits
    data = load_digits(as_frame=True)
    df = data.frame.drop(columns="target")
    if positive_digit is None:
        df["label"] = [str(t) for t in data.target]
        return df
    df["label"] = np.where(data.target == positive_digit, "yes", "no")
    return subsample_positives(df, lambda d: d["label"] == "yes", pos_frac, seed)


def fraud_df(n: int = 4000, pos_frac: float = 0.03, noise: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """A generated fraud table: `n` rows, `pos_frac` of them labelled 'fraud' and the rest 'ok', eight
    informative or noisy numeric columns (`amount`, `v1`..`v7`), a categorical `channel` and a
    `noise` share of flipped labels. The vocabulary sorts 'fraud' first: name it as the positive class."""
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=n, n_features=8, n_informative=4, n_redundant=2, weights=[1 - pos_frac],
                               flip_y=noise, class_sep=0.8, random_state=seed)
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(x, columns=["amount"] + [f"v{i}" for i in range(1, 8)])
    df["amount"] = np.exp(df["amount"]).round(2)
    df["channel"] = rng.choice(["web", "app", "store"], size=n, p=[0.5, 0.3, 0.2])
    df["label"] = np.where(y == 1, "fraud", "ok")
    return df


def multilabel_df(n: int = 400, labels=TOPICS[:5], rare: dict | None = None, n_features: int = 8,
                  seed: int = 0) -> pd.DataFrame:
    """A generated multi-label table (scikit-learn's `make_multilabel_classification`): `n` rows, numeric
    columns `x0`.. and one 0/1 column per label in `labels`. `rare` maps labels to the share of rows
    they should mark (default: the last two labels, 6% and 3%); rows with a rare label are dropped
    (not relabelled) until it is that rare, so the labels stay noise-free."""
    from sklearn.datasets import make_multilabel_classification
    labels = list(labels)
    rare = {labels[-2]: 0.06, labels[-1]: 0.03} if rare is None else dict(rare)
    unknown = [k for k in rare if k not in labels]
    if unknown or not all(0 < f < 1 for f in rare.values()):
        raise ValueError(f"`rare` must map labels of {labels} to shares in (0, 1), got {rare!r}")
    x, y = make_multilabel_classification(n_samples=4 * n, n_features=n_features, n_classes=len(labels), n_labels=2,
                                          random_state=seed)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_features)])
    for i, label in enumerate(labels):
        df[label] = y[:, i].astype("int64")
    rng = np.random.default_rng(seed)
    keep = np.ones(len(df), dtype=bool)
    for label, share in rare.items():  # keep `share * n` of its rows
        pos = np.flatnonzero(keep & (df[label].to_numpy() == 1))
        n_pos = max(2, round(n * share))
        if len(pos) > n_pos:
            keep[rng.choice(pos, size=len(pos) - n_pos, replace=False)] = False
    has_rare = df[list(rare)].to_numpy().any(axis=1) if rare else np.zeros(len(df), dtype=bool)
    others = np.flatnonzero(keep & ~has_rare)
    rows = np.concatenate([np.flatnonzero(keep & has_rare),
                           rng.choice(others, size=min(len(others), n - int((keep & has_rare).sum())), replace=False)])
    return df.iloc[np.sort(rows)].reset_index(drop=True)


_NEUTRAL = ("the a this that it was is film story movie plot scene actor time people one very really "
            "just some much more also quite rather thing way part end make see").split()
_SIGNAL = {
    "positive": "great good excellent wonderful loved brilliant fun superb".split(),
    "negative": "bad awful boring terrible hated dull weak poor".split(),
    "neutral": "average okay fine mixed ordinary typical plain moderate".split(),
}


def text_df(n: int = 600, n_classes: int = 2, pos_frac: float | None = 0.2, noise: float = 0.3,
            seed: int = 0) -> pd.DataFrame:
    """A generated corpus of short reviews whose words carry a noisy signal of the label.

    Binary labels are 'negative' and 'positive' (a `pos_frac` share); three classes add 'neutral'.
    Each document mixes filler words with signal words, a `noise` share of them drawn from another
    class, so the task is learnable but not trivial.
    """
    if n_classes not in (2, 3):
        raise ValueError(f"`n_classes` must be 2 or 3, got {n_classes!r}")
    rng = np.random.default_rng(seed)
    classes = ["negative", "positive"] if n_classes == 2 else ["negative", "neutral", "positive"]
    if n_classes == 2 and pos_frac is not None:
        labels = np.where(rng.random(n) < pos_frac, "positive", "negative")
    else:
        labels = rng.choice(classes, size=n)
    docs = []
    for label in labels:
        words = list(rng.choice(_NEUTRAL, size=rng.integers(8, 20)))
        for _ in range(rng.integers(2, 5)):
            source = label if rng.random() > noise else rng.choice([c for c in classes if c != label])
            words.insert(rng.integers(0, len(words) + 1), rng.choice(_SIGNAL[source]))
        docs.append(" ".join(words))
    return pd.DataFrame({"text": docs, "label": labels})


def tabular_dls(df: pd.DataFrame, label: str | list[str] = "label", valid_pct: float = 0.25, bs: int = 64,
                seed: int = 0, cat_names: list[str] | None = None, cont_names: list[str] | None = None):
    """TabularDataLoaders for `df` with a stratified validation split; every other column is continuous
    unless `cat_names` says otherwise. Continuous columns constant over the training rows are left
    out: normalising them would divide by a zero standard deviation.

    A list of label columns (0/1 each) makes a multi-label problem (`MultiCategoryBlock(encoded=True)`,
    the vocabulary in that order), split stratified on its rarest label."""
    from fastai.data.block import CategoryBlock, MultiCategoryBlock
    from fastai.tabular.core import Categorify, FillMissing, Normalize
    from fastai.tabular.data import TabularDataLoaders
    cat_names = list(cat_names or [])
    multi = not isinstance(label, str)
    labels = list(label) if multi else [label]
    if multi and not all(set(pd.unique(df[c])) <= {0, 1} for c in labels):
        raise ValueError(f"multi-label columns {labels} must hold 0 and 1 only")
    if cont_names is None:
        cont_names = [c for c in df.columns if c not in labels and c not in cat_names]
    rarest = min(labels, key=lambda c: df[c].sum()) if multi else label
    train, valid = stratified_split(df[rarest], valid_pct, seed)
    cont_names = [c for c in cont_names if df[c].iloc[train].nunique() > 1]
    y_block = MultiCategoryBlock(encoded=True, vocab=labels) if multi else CategoryBlock()
    return TabularDataLoaders.from_df(df, procs=[Categorify, FillMissing, Normalize], cat_names=cat_names,
                                      cont_names=list(cont_names), y_names=label if not multi else labels,
                                      y_block=y_block, valid_idx=valid, bs=bs)


def digits_dls(path, positive_digit: int | None = None, pos_frac: float | None = None, valid_pct: float = 0.25,
               bs: int = 64, size: int = 32, seed: int = 0):
    """ImageDataLoaders over the digits written as PNG files under `path` (written once)."""
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.augment import Resize
    from PIL import Image
    df = digits_df(positive_digit, pos_frac, seed)
    root = Path(path)
    names = []
    for i, row in df.iterrows():  # the index is the row of scikit-learn's data, so one file serves every variant
        name = f"{i:04d}.png"
        file = root / name
        if not file.exists():
            root.mkdir(parents=True, exist_ok=True)
            pixels = (row.drop("label").to_numpy(dtype=np.float32) * (255 / 16)).round().astype(np.uint8)
            Image.fromarray(pixels.reshape(8, 8), mode="L").save(file)
        names.append(name)
    items = pd.DataFrame({"name": names, "label": df["label"].to_numpy()})
    _, valid = stratified_split(items["label"], valid_pct, seed)
    items["is_valid"] = False
    items.loc[valid, "is_valid"] = True
    return ImageDataLoaders.from_df(items, path=root, fn_col="name", label_col="label", valid_col="is_valid",
                                    item_tfms=Resize(size), bs=bs, num_workers=0)


def text_dls(df: pd.DataFrame, valid_pct: float = 0.25, bs: int = 32, seed: int = 0):
    """TextDataLoaders for a DataFrame with `text` and `label` columns, split with stratification."""
    from fastai.text.data import TextDataLoaders
    df = df.copy()
    _, valid = stratified_split(df["label"], valid_pct, seed)
    df["is_valid"] = False
    df.loc[valid, "is_valid"] = True
    return TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_col="is_valid", bs=bs, seed=seed,
                                   num_workers=0)
