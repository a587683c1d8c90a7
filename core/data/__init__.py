"""Labelled text from files to batches: reading and splitting (``examples``), tokenization,
truncation of long texts, the encode cache and length-grouped batching.

The names below are the stable import path for plugins (``from tl.data import Examples``).
"""

from __future__ import annotations

from tl.data.examples import Examples, Splits, hash_split
from tl.data.tables import load_examples, read_table

__all__ = ["Examples", "Splits", "hash_split", "load_examples", "read_table"]
