"""The data of `fastai-aum compare`: a bundled data set or a user's CSV, read without guessing.

The target is named (its values stripped of surrounding spaces, with a note), the delimiter and a decimal
comma detected (or the delimiter named with `--sep`) and reported, duplicated column names refused, columns
typed by one documented rule that `--cat-names` / `--cont-names` override, identifiers and `--drop` columns
left out with a note, and every dropped row counted with its reason. The fingerprint of the rows and columns
used lets a resume refuse changed data.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
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


def _header(path: Path, sep: str) -> list[str]:
    with open(path, newline="", errors="replace") as f:
        return next(csv.reader(f, delimiter=sep), [])


_DECIMAL_COMMA = re.compile(r"^\s*[-+]?(\d+,\d*|,\d+|\d+)([eE][-+]?\d+)?\s*$")


def _has_decimal_commas(df: pd.DataFrame) -> bool:
    """Whether some text column holds only numbers written with a decimal comma (and at least one comma)."""
    for c in df.columns:
        if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object:
            values = df[c].dropna().astype(str)
            if len(values) and values.str.contains(",").any() and values.str.match(_DECIMAL_COMMA).all():
                return True
    return False


def _read_csv(path: Path, sep: str | None, error) -> tuple[pd.DataFrame, str, str]:
    """The rows of `path`, its delimiter (detected among , ; tab | unless `sep`) and its decimal mark (a comma
    is detected when the delimiter is not one); duplicated column names are an error."""
    if sep is None:
        try:
            with open(path, newline="", errors="replace") as f:
                sample = f.read(64 * 1024)
            sep = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
        except (csv.Error, OSError):
            sep = ","
    sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    try:
        names = _header(path, sep)
        df = pd.read_csv(path, sep=sep)
        decimal = "," if sep != "," and _has_decimal_commas(df) else "."
        if decimal == ",":
            df = pd.read_csv(path, sep=sep, decimal=",")
    except Exception as e:  # pandas raises several types for malformed files
        raise error(f"--data: cannot read {_cut(path.name)} as CSV with delimiter {sep!r}: {_cut(e, 120)}; "
                    "name the delimiter with --sep") from None
    if df.shape[1] < 2:
        raise error(f"--data: {_cut(path.name)} reads as {df.shape[1]} column with delimiter {sep!r}; name the "
                    f"delimiter with --sep (e.g. --sep ';')")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise error(f"--data: {_cut(path.name)} names more than one column {_names(twice, 3)}; give each column "
                    "its own name")
    return df, sep, decimal


def _names_arg(text: str) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _typed(df: pd.DataFrame, features: list, cat_names: list, cont_names: list, notes: list, error):
    """(categorical, continuous, identifiers) by the documented rule (README, "Column types"), with `--cat-names`
    and `--cont-names` overriding it; `df`'s named continuous columns are made numbers (the rest missing)."""
    cats, conts, ids, rule_cats = [], [], [], []
    for c in features:
        values = df[c]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if c in cont_names:
            if not numeric:
                numbers = _numbers(values)
                bad = int((numbers.isna() & values.notna()).sum())
                df[c] = numbers
                if bad:
                    notes.append(f"--cont-names: {bad} value(s) of {_cut(c)!r} are not numbers; they are missing")
            conts.append(c)
            continue
        if c in cat_names:
            cats.append(c)
            continue
        if not numeric and values.notna().any():
            present = values.dropna()
            numbers = _numbers(present)
            if numbers.notna().mean() >= 0.9:
                stray = present[numbers.isna()].astype(str).unique().tolist()
                raise error(f"column {_cut(c)!r} holds numbers but for {_names(stray, 3)}; name it in --cont-names "
                            f"(those become missing) or --cat-names (every value a category)")
        unique_per_row = values.nunique() == len(df) > 10
        if unique_per_row and not pd.api.types.is_float_dtype(values):
            ids.append(c)
        elif not numeric:
            cats.append(c)
        elif pd.api.types.is_integer_dtype(values) and values.nunique() <= 10:
            cats.append(c)
            rule_cats.append(c)
        else:
            conts.append(c)
    if ids:
        notes.append(f"left out as identifiers (a different integer or text in every row): {_names(ids, 6)}; "
                     "name one in --cont-names or --cat-names to use it")
    if rule_cats:
        notes.append(f"categorical by the rule for integer columns with at most 10 values: {_names(rule_cats, 6)}; "
                     "--cont-names treats them as numbers")
    return cats, conts, ids


def load_data(args, error) -> dict:
    """The rows, target, positive class, columns and notes (lines to print) for `--data`; `error` is raised,
    with a one-line message, for anything that would make the comparison guess."""
    from ..datasets import breast_cancer_df, digits_df, wine_df
    notes, dropped_rows, delimiter, decimal = [], {}, None, "."
    drop = _names_arg(args.drop)
    cat_names, cont_names = _names_arg(getattr(args, "cat_names", "")), _names_arg(getattr(args, "cont_names", ""))
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
        df, delimiter, decimal = _read_csv(path, args.sep, error)
        if delimiter != ",":
            notes.append(f"delimiter: {delimiter!r}" + (", decimal comma" if decimal == "," else ""))
        if args.target is None:
            raise error(f"--target is required for a CSV file: name its label column; columns are {_names(df.columns)}")
        target, pos_frac = args.target, args.pos_frac
        if target not in df.columns:
            raise error(f"--target: no column {_cut(target)!r} in {_cut(path.name)}; columns are {_names(df.columns)}")
        missing = int(df[target].isna().sum())
        if missing:
            df = df.dropna(subset=[target]).reset_index(drop=True)
            dropped_rows["missing target"] = missing
        labels = df[target].astype(str)
        df[target] = labels.str.strip()
        spaced = int((df[target] != labels).sum())
        if spaced:
            notes.append(f"target: surrounding spaces stripped from {spaced} value(s) of {_cut(target)!r}")
    for option, names in (("--drop", drop), ("--cat-names", cat_names), ("--cont-names", cont_names)):
        unknown = [c for c in names if c not in df.columns]
        if unknown:
            raise error(f"{option}: no column {_names(unknown, 3)}; columns are {_names(df.columns)}")
        if target in names:
            raise error(f"{option}: {_cut(target)!r} is the target")
    both = [c for c in cat_names if c in cont_names or c in drop] + [c for c in cont_names if c in drop]
    if both:
        raise error(f"--drop, --cat-names and --cont-names must not share a column, got {_names(both, 3)} twice")
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
    cats, conts, ids = _typed(df, features, cat_names, cont_names, notes, error)
    constant = [c for c in cats + conts if df[c].nunique(dropna=False) <= 1]
    cats, conts = [c for c in cats if c not in constant], [c for c in conts if c not in constant]
    if not cats and not conts:
        raise error(f"no usable feature column: {_names(features) or 'none'} "
                    f"{'are constant, identifiers or dropped' if features else 'after --drop'}; the CSV needs at least "
                    "one varying column besides the target")
    shown = {"continuous": conts, "categorical": cats}
    left_out = drop + ids + constant
    notes.append("columns used: " + "; ".join(f"{len(v)} {k} ({_names(v, 6)})" for k, v in shown.items() if v)
                 + (f"; left out: {_names(left_out, 6)}" if left_out else ""))
    if any(df[c].isna().any() for c in cats + conts):
        notes.append("missing feature values are filled by fastai (FillMissing: the median, plus an indicator column)")
    notes.append("rows dropped: " + (", ".join(f"{n} ({why})" for why, n in dropped_rows.items()) or "none"))
    used = df[[*conts, *cats, target]]
    digest = hashlib.sha256(json.dumps({"continuous": conts, "categorical": cats, "target": target}).encode())
    digest.update(used.to_csv(index=False).encode())
    return {"df": df, "target": target, "pos_label": pos_label, "pos_frac": pos_frac, "delimiter": delimiter,
            "decimal": decimal, "rows_dropped": dropped_rows, "notes": notes, "fingerprint": digest.hexdigest(),
            "classes": [str(c) for c in sorted(df[target].unique())],
            "columns": {"continuous": conts, "categorical": cats, "dropped": drop, "identifiers": ids,
                        "constant": constant}}


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
