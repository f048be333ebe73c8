"""The classes of fastai DataLoaders and the positive class of a binary problem, named by its vocabulary value."""
from __future__ import annotations

import torch

__all__ = ["class_names", "dataset_labels", "positive_index", "describe_positive", "format_classes"]


def class_names(vocab) -> list | None:
    """The class labels of a vocabulary, a fastai `CategoryMap`, or DataLoaders (whose `vocab` it reads);
    text DataLoaders' `[tokens, classes]` give the classes. None when there is no vocabulary."""
    vocab = getattr(vocab, "vocab", vocab)
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


def positive_index(classes, positive=None) -> int:
    """Index in `classes` of the positive class `positive` (a vocabulary value); the second class when None.

    A value is matched exactly first, then by its string form (a command line gives strings), so
    `positive='1'` finds the class `1`. Only binary problems have a positive class.
    """
    classes = class_names(classes)
    if positive is None:
        return 1
    if classes is None:
        raise ValueError(f"`positive`={positive!r} names a class, but there is no vocabulary to find it in; "
                         "pass the DataLoaders' `vocab`")
    if len(classes) != 2:
        raise ValueError(f"`positive` names the positive class of a binary problem, but there are {len(classes)} "
                         f"classes: {format_classes(classes)}")
    exact = [i for i, c in enumerate(classes) if _same(c, positive)]
    by_text = [i for i, c in enumerate(classes) if str(c) == str(positive)]
    found = exact or by_text
    if len(found) != 1:
        raise ValueError(f"`positive` must be one of the classes {format_classes(classes)}, got {positive!r}")
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
