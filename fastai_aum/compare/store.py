"""The store of `fastai-aum compare`: one SQLite file (`compare.sqlite` in `--out`) with keys and transactions.

- `runs` is keyed by (loss, seed, lr); `epochs` by run and epoch; `scores` by run, row and class (-1 for the
  one score of a binary target). Each finished run is written in one transaction: a crash, a full disk or a
  kill mid-write leaves the store as it was before that run.
- `meta` holds the comparison's identity (data fingerprint, columns, protocol); a resume must match it.
- One process writes at a time: `Store.open` takes an exclusive lock on `.compare.lock` beside the store
  (released by the system when the process ends, however it ends) and refuses, in one line, if another holds it.
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Store", "StoreError", "lock_folder", "STORE", "RESULT_COLUMNS"]

STORE, _LOCK, _SCHEMA = "compare.sqlite", ".compare.lock", 1
_KEY = ("loss", "seed", "lr")
# the columns of results.csv, in order, with their types in the store (`selected` is `run_best` until the
# comparison chooses the learning rates)
RESULT_COLUMNS = {"loss": "TEXT", "seed": "INTEGER", "epoch": "INTEGER", "lr": "REAL", "recipe": "TEXT",
                  "train_loss": "REAL", "valid_loss": "REAL", "valid_auroc": "REAL", "selected": None,
                  "run_best": "INTEGER", "best_ties": "INTEGER", "valid_positives": "INTEGER", "test_auroc": "REAL",
                  "test_auroc_low": "REAL", "test_auroc_high": "REAL", "test_auroc_se": "REAL", "test_ap": "REAL",
                  "test_positives": "REAL"}
_STORED = [c for c, t in RESULT_COLUMNS.items() if t and c != "recipe"]
_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (loss TEXT NOT NULL, seed INTEGER NOT NULL, lr REAL NOT NULL, recipe TEXT NOT NULL,
    finished TEXT NOT NULL, PRIMARY KEY (loss, seed, lr));
CREATE TABLE IF NOT EXISTS epochs ({", ".join(f"{c} {RESULT_COLUMNS[c]}" for c in _STORED)},
    PRIMARY KEY (loss, seed, lr, epoch), FOREIGN KEY (loss, seed, lr) REFERENCES runs);
CREATE TABLE IF NOT EXISTS scores (loss TEXT NOT NULL, seed INTEGER NOT NULL, lr REAL NOT NULL, row INTEGER NOT NULL,
    class INTEGER NOT NULL, target INTEGER NOT NULL, score REAL, PRIMARY KEY (loss, seed, lr, row, class),
    FOREIGN KEY (loss, seed, lr) REFERENCES runs);
"""


class StoreError(Exception):
    """The store cannot be opened, locked or written: one line for the user."""


def lock_folder(folder) -> object:
    """An exclusive lock on `folder`'s store, held while the returned file stays open; StoreError if another
    process holds it."""
    path = Path(folder) / _LOCK
    handle = open(path, "a+")
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (documented)
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreError(f"--out: another fastai-aum compare is writing to {path.parent}; wait until it ends, "
                         "or give another --out") from None
    return handle


class Store:
    """The finished runs of one comparison, in `folder / STORE`; open with `Store.open`."""

    name = STORE

    def __init__(self, folder: Path, db: sqlite3.Connection, lock, replaced: Path | None = None):
        self.folder, self.db, self._lock, self.replaced = folder, db, lock, replaced

    @classmethod
    def open(cls, folder, replace: tuple[str, ...] = (), lock=None) -> Store:
        """Lock (unless given `lock_folder`'s `lock`) and open, creating if new, the store in `folder`, which
        exists. With `replace` (file names), an earlier store and those files are first moved, under the lock,
        into a new folder `replaced-<time>`."""
        folder = Path(folder)
        lock = lock or lock_folder(folder)
        replaced = None
        try:
            if replace:
                replaced = _move_aside(folder, (STORE, *replace))
            db = sqlite3.connect(folder / STORE, isolation_level=None)
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_DDL)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
        except (sqlite3.Error, OSError) as e:
            lock.close()
            raise StoreError(f"--out: cannot open {folder / STORE} as the comparison's store: {e}") from None
        return cls(folder, db, lock, replaced)

    def close(self) -> None:
        self.db.close()
        self._lock.close()

    def get(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def keys(self) -> list[tuple[str, int, float]]:
        """The (loss, seed, lr) of every finished run."""
        return [(n, int(s), float(r)) for n, s, r in self.db.execute("SELECT loss, seed, lr FROM runs")]

    def add_run(self, rows: pd.DataFrame, scores: pd.DataFrame | None) -> None:
        """Write one finished run (its epochs and its evaluated rows' scores) in one transaction."""
        loss, seed, lr = str(rows["loss"].iloc[0]), int(rows["seed"].iloc[0]), float(rows["lr"].iloc[0])
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        epochs = [tuple(_plain(v) for v in r) for r in rows[_STORED].itertuples(index=False)]
        with self.db:  # commits, or rolls back if anything below raises
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                            (loss, seed, lr, str(rows["recipe"].iloc[0]), stamp))
            self.db.executemany(f"INSERT INTO epochs VALUES ({', '.join('?' * len(_STORED))})", epochs)
            if scores is not None:
                self.db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", _score_rows(scores))

    def frames(self, keys) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """`(results, scores)` of the finished runs among `keys`, in the order of `keys`, with the columns
        and types of results.csv and scores.csv."""
        order = {k: i for i, k in enumerate(keys)}
        runs = {(n, int(s), float(r)): recipe
                for n, s, r, recipe in self.db.execute("SELECT loss, seed, lr, recipe FROM runs")}
        wanted = [k for k in keys if k in runs]
        if not wanted:
            return pd.DataFrame(columns=list(RESULT_COLUMNS)), None
        epochs = pd.DataFrame(self.db.execute(f"SELECT {', '.join(_STORED)} FROM epochs").fetchall(), columns=_STORED)
        epochs = _in_order(epochs, order, extra=["epoch"])
        epochs["recipe"] = [runs[k] for k in zip(epochs["loss"], epochs["seed"], epochs["lr"])]
        epochs["selected"] = epochs["run_best"]
        results = epochs[list(RESULT_COLUMNS)].astype(
            {"seed": "int64", "epoch": "int64", "lr": "float64", "run_best": bool, "selected": bool,
             "best_ties": "int64", "valid_positives": "int64",
             **{c: "float64" for c, t in RESULT_COLUMNS.items() if t == "REAL"}})
        long = pd.DataFrame(self.db.execute("SELECT loss, seed, lr, row, class, target, score FROM scores").fetchall(),
                            columns=["loss", "seed", "lr", "row", "class", "target", "score"])
        if not len(long):
            return results, None
        long = _in_order(long, order, extra=["row", "class"])
        if (long["class"] == -1).all():
            scores = long.drop(columns="class")
        else:
            scores = long.pivot(index=["_order", "loss", "seed", "lr", "row", "target"], columns="class",
                                values="score")
            scores.columns = [f"score_{k}" for k in scores.columns]
            scores = scores.reset_index().drop(columns="_order")
        scores = scores.drop(columns="_order", errors="ignore").reset_index(drop=True)
        return results, scores.astype({"seed": "int64", "lr": "float64", "row": "int64", "target": "int64"})


def _move_aside(folder: Path, names) -> Path | None:
    """Move the files `names` of `folder` into a new folder `folder / replaced-<UTC time>`; None if none exists."""
    present = [folder / n for n in names if (folder / n).exists()]
    if not present:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target, i = folder / f"replaced-{stamp}", 1
    while target.exists():
        target, i = folder / f"replaced-{stamp}-{i}", i + 1
    target.mkdir()
    for path in present:
        path.rename(target / path.name)
    return target


def _plain(value):
    """A value SQLite stores as it is: NumPy scalars as Python ones, NaN and None as NULL."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _score_rows(scores: pd.DataFrame):
    key = (str(scores["loss"].iloc[0]), int(scores["seed"].iloc[0]), float(scores["lr"].iloc[0]))
    columns = ["score"] if "score" in scores else sorted((c for c in scores if c.startswith("score_")),
                                                         key=lambda c: int(c[6:]))
    for column in columns:
        k = -1 if column == "score" else int(column[6:])
        for row, target, score in zip(scores["row"], scores["target"], scores[column]):
            yield (*key, int(row), k, int(target), _plain(float(score)))


def _in_order(frame: pd.DataFrame, order: dict, extra: list) -> pd.DataFrame:
    """The rows of `frame` whose run is in `order`, sorted by that order, then by `extra`."""
    position = [order.get((n, int(s), float(r))) for n, s, r in zip(frame["loss"], frame["seed"], frame["lr"])]
    frame = frame.assign(_order=position).dropna(subset=["_order"])
    return frame.sort_values(["_order", *extra], kind="stable").reset_index(drop=True)
