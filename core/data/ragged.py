"""Rows of integers of different lengths, read in place from flat arrays (``Ragged``): the token ids of an
encoded store, memory-mapped, without one Python object per row."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class Ragged(Sequence):
    """Row ``i`` is ``values[offsets[i]:offsets[i + 1]]`` of one of ``parts`` (each a flat array and its
    offsets, e.g. one Arrow record batch each), through an optional row map ``rows`` (a view: ``take``).

    Nothing is copied: a row is a view of its part's values, so rows of a memory-mapped file are read
    from the page cache when they are used, and every process mapping the same file shares its pages."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray | None = None) -> None:
        self._parts = list(parts)
        counts = [len(offsets) - 1 for _, offsets in self._parts]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._rows = rows

    def __len__(self) -> int:
        return int(self._starts[-1]) if self._rows is None else len(self._rows)

    def _locate(self, i: int) -> tuple[np.ndarray, int, int]:
        j = int(self._rows[i]) if self._rows is not None else int(i)
        if j < 0 or j >= self._starts[-1]:
            raise IndexError(i)
        part = int(np.searchsorted(self._starts, j, side="right")) - 1
        values, offsets = self._parts[part]
        local = j - int(self._starts[part])
        return values, int(offsets[local]), int(offsets[local + 1])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        values, a, b = self._locate(i if i >= 0 else len(self) + i)
        return values[a:b]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def take(self, rows: Sequence[int] | np.ndarray) -> Ragged:
        """The rows at ``rows``, in that order, as a view."""
        rows = np.asarray(rows, dtype=np.int64)
        return Ragged(self._parts, rows if self._rows is None else self._rows[rows])

    @property
    def lengths(self) -> np.ndarray:
        """Each row's length (int64), computed from the offsets without touching the values."""
        if not self._parts:
            return np.zeros(0, dtype=np.int64)
        every = np.concatenate([np.diff(offsets).astype(np.int64) for _, offsets in self._parts])
        return every if self._rows is None else every[self._rows]
