"""The comparison tool: trains each loss over several seeds and learning rates (`run`; one run and one
seed's runs in `fit`; seeds in parallel through joblib in `parallel`), keeps its statistics (`report`),
writes its text report and figure (`plots`), and the `fastai-aum` command with its data loading (`cli`,
`data`) and its store of finished runs (`store`, one SQLite file). Nothing outside this package imports it.

Its names load on first use, so that `fastai-aum --help` answers before fastai is imported.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"Comparison": "report", "compare_losses": "run", "compare_losses_on_df": "run", "tabular_splits": "run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
