"""The data of `fastai-aum compare`: a bundled data set or a user's CSV, read without guessing.

The target is named, the delimiter detected (or named with `--sep`) and reported, columns left out with
`--drop`, identifier-like columns pointed out, and every dropped row counted with its reason.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["load_data", "split_sizes", "BUILTIN"]

BUILTIN = ("breast_cancer", "digits", "wine")
_DELIMITERS = ",;\t|"


def _cut(text, n: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _names(items, n: int = 6) -> str:
    """A short list of names for a message: the first `n`, each cut to 24 characters, then how many in all."""
    items = [_cut(i, 24) for i in items]
    return ", ".join(items[:n]) + (f", … ({len(items)} in all)" if len(items) > n else "")


def _subsample_positive(df, target: str, pos_label, pos_frac, error):
    """`df` with the positive class subsampled to `pos_frac` of the rows, and that class's value."""
    from ..vocab import pos_label_index
    from ..datasets import subsample_positives
    classes = sorted(df[target].unique().tolist(), key=str)
    if len(classes) != 2:
        if pos_label is not None or pos_frac is not None:
            raise error(f"--pos-label and --pos-frac are for a binary target; {_cut(target)!r} has "
                        f"{len(classes)} classes")
        return df, None
    try:
        cls = classes[pos_label_index(classes, pos_label)]
    except ValueError:
        raise error(f"--pos-label: no class {_cut(pos_label)!r} in {_cut(target)!r}; its classes are "
                    f"{_names(classes)}") from None
    if pos_frac is not None:
        df = subsample_positives(df, lambda d: d[target] == cls, pos_frac, seed=0).reset_index(drop=True)
    return df, cls


def _read_csv(path: Path, sep: str | None, error) -> tuple[pd.DataFrame, str]:
    if sep is None:
        try:
            with open(path, newline="", errors="replace") as f:
                sample = f.read(64 * 1024)
            sep = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
        except (csv.Error, OSError):
            sep = ","
    sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    try:
        df = pd.read_csv(path, sep=sep)
    except Exception as e:  # pandas raises several types for malformed files
        raise error(f"--data: cannot read {_cut(path.name)} as CSV with delimiter {sep!r}: {_cut(e, 120)}; "
                    "name the delimiter with --sep") from None
    if df.shape[1] < 2:
        raise error(f"--data: {_cut(path.name)} reads as {df.shape[1]} column with delimiter {sep!r}; name the "
                    f"delimiter with --sep (e.g. --sep ';')")
    return df, sep


def load_data(args, error) -> dict:
    """The rows, target, positive class, columns and notes (lines to print) for `--data`; `error` is raised,
    with a one-line message, for anything that would make the comparison guess."""
    from ..datasets import breast_cancer_df, digits_df, wine_df
    notes, dropped_rows, delimiter = [], {}, None
    drop = [c.strip() for c in args.drop.split(",") if c.strip()]
    if args.data in BUILTIN:
        df = {"breast_cancer": lambda: breast_cancer_df(pos_frac=None), "wine": wine_df,
              "digits": lambda: digits_df(positive_digit=8).reset_index(drop=True)}[args.data]()
        target = "label"
        if args.target not in (None, "label"):
            raise error(f"--target: the bundled data set {args.data} has its label in 'label', "
                        f"got {_cut(args.target)!r}")
        pos_frac = args.pos_frac or (0.1 if args.data != "wine" else None)
    else:
        path = Path(args.data)
        if path.suffix.lower() != ".csv":
            raise error(f"--data must be one of {', '.join(BUILTIN)} or a .csv file, got {_cut(args.data, 120)!r}")
        if not path.is_file():
            raise error(f"--data: no such file: {_cut(path, 200)}")
        df, delimiter = _read_csv(path, args.sep, error)
        if delimiter != ",":
            notes.append(f"delimiter: {delimiter!r}")
        if args.target is None:
            raise error(f"--target is required for a CSV file: name its label column; columns are {_names(df.columns)}")
        target, pos_frac = args.target, args.pos_frac
        if target not in df.columns:
            raise error(f"--target: no column {_cut(target)!r} in {_cut(path.name)}; columns are {_names(df.columns)}")
        missing = int(df[target].isna().sum())
        if missing:
            df = df.dropna(subset=[target]).reset_index(drop=True)
            dropped_rows["missing target"] = missing
        df[target] = df[target].astype(str)
    unknown = [c for c in drop if c not in df.columns]
    if unknown:
        raise error(f"--drop: no column {_names(unknown, 3)}; columns are {_names(df.columns)}")
    if target in drop:
        raise error(f"--drop: {_cut(target)!r} is the target")
    features = [c for c in df.columns if c != target and c not in drop]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    if numeric:
        inf = np.isinf(df[numeric].to_numpy(dtype=np.float64))
        bad_rows = inf.any(axis=1)
        if bad_rows.any():
            cols = [c for c, bad in zip(numeric, inf.any(axis=0)) if bad]
            dropped_rows[f"inf in {_names(cols, 3)}"] = int(bad_rows.sum())
            df = df[~bad_rows].reset_index(drop=True)
    if df[target].nunique() < 2:
        raise error(f"--target: column {_cut(target)!r} has {df[target].nunique()} class(es); it needs at least two")
    df, pos_label = _subsample_positive(df, target, args.pos_label, pos_frac if args.data in BUILTIN else args.pos_frac,
                                       error)
    cats = [c for c in features if c not in numeric or (pd.api.types.is_integer_dtype(df[c]) and df[c].nunique() <= 10)]
    conts = [c for c in features if c not in cats]
    constant = [c for c in features if df[c].nunique(dropna=False) <= 1]
    cats, conts = [c for c in cats if c not in constant], [c for c in conts if c not in constant]
    if not cats and not conts:
        raise error(f"no usable feature column: {_names(features) or 'none'} "
                    f"{'are constant or dropped' if features else 'after --drop'}; the CSV needs at least one varying "
                    "column besides the target")
    for c in cats + conts:
        if not pd.api.types.is_float_dtype(df[c]) and df[c].nunique() == len(df) > 10:
            notes.append(f"warning: column {_cut(c)!r} has a different value in every row (an identifier?); it is "
                         f"used as a feature unless you add --drop {_cut(c)}")
    shown = {"continuous": conts, "categorical": cats}
    notes.append("columns used: " + "; ".join(f"{len(v)} {k} ({_names(v, 6)})" for k, v in shown.items() if v)
                 + (f"; left out: {_names(drop + constant, 6)}" if drop or constant else ""))
    if any(df[c].isna().any() for c in cats + conts):
        notes.append("missing feature values are filled by fastai (FillMissing: the median, plus an indicator column)")
    notes.append("rows dropped: " + (", ".join(f"{n} ({why})" for why, n in dropped_rows.items()) or "none"))
    return {"df": df, "target": target, "pos_label": pos_label, "pos_frac": pos_frac, "delimiter": delimiter,
            "rows_dropped": dropped_rows, "notes": notes,
            "columns": {"continuous": conts, "categorical": cats, "dropped": drop, "constant": constant}}


def split_sizes(labels: pd.Series, test_pct: float, valid_pct: float, error) -> dict:
    """Rows in the training, validation and test parts of a stratified split (the same for every seed), checked
    to hold every class."""
    from ..datasets import stratified_split
    counts = labels.value_counts()
    if counts.min() < 4:
        raise error(f"--target: class {_cut(counts.idxmin())!r} has {counts.min()} row(s); each class needs at least 4 "
                    "to appear in the training, validation and test splits")
    try:
        dev, test = stratified_split(labels, test_pct, seed=0)
        dev_labels = labels.iloc[dev].reset_index(drop=True)
        train, valid = stratified_split(dev_labels, valid_pct, seed=0)
    except ValueError as e:
        raise error(f"--test-pct {test_pct}: cannot split every class three ways ({_cut(e, 120)})") from None
    for part, rows in (("training", dev_labels.iloc[train]), ("validation", dev_labels.iloc[valid]),
                       ("test", labels.iloc[test])):
        empty = sorted(set(counts.index) - set(rows))
        if empty:
            raise error(f"--test-pct {test_pct} leaves class {_cut(empty[0])!r} with no row in the {part} split; "
                        "choose a share nearer 0.25")
    return {"train": len(train), "valid": len(valid), "test": len(test)}
