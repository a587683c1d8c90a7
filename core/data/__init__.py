"""Labelled text from files to batches: reading tables (``tables``), examples and splits
(``examples``), a run's data (``loading``), tokenization, truncation of long texts, the encode
cache and length-grouped batching.

The names below are the stable import path for plugins (``from tl.data import Examples``); they are
imported on first use, so importing a submodule (``tl.data.truncation``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Examples": "tl.data.examples",
    "Splits": "tl.data.examples",
    "hash_split": "tl.data.examples",
    "load_examples": "tl.data.tables",
    "read_table": "tl.data.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tl.data' has no attribute {name!r}")
