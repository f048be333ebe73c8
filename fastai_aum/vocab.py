"""The classes of fastai DataLoaders and the positive class of a binary problem, named by its vocabulary value."""
from __future__ import annotations

import torch

__all__ = ["class_names", "dataset_labels", "multi_hot_labels", "is_multilabel", "pos_label_index", "describe_positive",
           "format_classes"]

_MULTI_LABEL_TFMS = ("MultiCategorize", "EncodedMultiCategorize", "OneHotEncode")


def class_names(vocab) -> list | None:
    """The class labels of a vocabulary, a fastai `CategoryMap`, or DataLoaders (whose `vocab` it reads);
    text DataLoaders' `[tokens, classes]` give the classes. None when there is no vocabulary."""
    if hasattr(vocab, "loaders") or hasattr(vocab, "dataset"):  # DataLoaders or a DataLoader: its vocab, if any
        vocab = getattr(vocab, "vocab", None)
    if vocab is None:
        return None
    vocab = list(vocab)
    if vocab and hasattr(vocab[-1], "__len__") and not isinstance(vocab[-1], str):
        vocab = list(vocab[-1])  # text DataLoaders: [tokens, classes]
    return vocab


def dataset_labels(dls, ds_idx: int = 0) -> torch.Tensor:
    """The class index of every example of `dls`'s dataset `ds_idx` (0: training, 1: validation), in
    dataset order, without loading the inputs."""
    ds = dls[ds_idx].dataset
    if hasattr(ds, "ys"):  # TabularPandas: the label column holds the category codes
        return torch.as_tensor(ds.ys.to_numpy().reshape(-1).astype("int64"))
    return torch.stack([torch.as_tensor(y) for y in ds.tls[dls.n_inp]]).reshape(-1).long()


def is_multilabel(dls) -> bool:
    """Whether fastai DataLoaders `dls` hold multi-label (multi-hot) targets: a `MultiCategoryBlock`
    (its transforms on the target, for tabular data its procs), else a 2-d target in `one_batch()`."""
    ds = getattr(dls, "train_ds", None)
    if ds is None:
        return False
    tfms = getattr(ds, "procs", None)
    if tfms is None:
        tls = getattr(ds, "tls", None)
        n_inp = getattr(dls, "n_inp", 1)
        tfms = getattr(tls[n_inp], "tfms", None) if tls is not None and len(tls) > n_inp else None
    if tfms is not None:
        return any(type(t).__name__ in _MULTI_LABEL_TFMS for t in getattr(tfms, "fs", tfms))
    try:
        y = dls.one_batch()[-1]
    except Exception:  # not DataLoaders we can read: single-label, as before
        return False
    return getattr(y, "ndim", 1) == 2 and y.shape[1] > 1


def multi_hot_labels(dls, ds_idx: int = 0) -> torch.Tensor:
    """The (N, L) multi-hot targets of `dls`'s dataset `ds_idx` (0: training, 1: validation), as floats."""
    ds = dls[ds_idx].dataset
    if hasattr(ds, "ys"):  # TabularPandas: one 0/1 column per label
        return torch.as_tensor(ds.ys.to_numpy().astype("float32"))
    return torch.stack([torch.as_tensor(y).float() for y in ds.tls[dls.n_inp]])


def pos_label_index(classes, pos_label=None) -> int:
    """Index in `classes` of the positive class `pos_label` (a vocabulary value); the second class when None.

    A value is matched exactly first, then by its string form (a command line gives strings), so
    `pos_label='1'` finds the class `1`. Only binary problems have a positive class.
    """
    classes = class_names(classes)
    if pos_label is None:
        return 1
    if classes is None:
        raise ValueError(f"`pos_label`={pos_label!r} names a class, but there is no vocabulary to find it in; "
                         "pass the DataLoaders' `vocab`")
    if len(classes) != 2:
        raise ValueError(f"`pos_label` names the positive class of a binary problem, but there are {len(classes)} "
                         f"classes: {format_classes(classes)}")
    exact = [i for i, c in enumerate(classes) if _same(c, pos_label)]
    by_text = [i for i, c in enumerate(classes) if str(c) == str(pos_label)]
    found = exact or by_text
    if len(found) != 1:
        raise ValueError(f"`pos_label` must be one of the classes {format_classes(classes)}, got {pos_label!r}")
    return found[0]


def describe_positive(classes, index: int) -> str:
    """"positive class 'malignant'", for messages, titles and headers."""
    classes = class_names(classes)
    return f"positive class {classes[index]!r}" if classes is not None and len(classes) == 2 else f"positive class {index}"


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays that compare elementwise
        return False


def format_classes(classes, limit: int = 10) -> str:
    """`[a, b, ...]` for messages: the first `limit` classes, reprs."""
    shown = ", ".join(map(repr, classes[:limit]))
    return f"[{shown}{', ...' if len(classes) > limit else ''}]"
