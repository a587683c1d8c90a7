"""Long documents (``--truncation``): which tokens of a text longer than ``max_length`` the model sees.

- ``head``: the first tokens (transformers' default, the classic recipe's cut).
- ``tail``: the last tokens.
- ``head+tail``: the first quarter of the budget from the start and the rest from the end (Sun et
  al. 2019, "How to Fine-Tune BERT for Text Classification?", found head 128 + tail 382 of 512 best on
  IMDB: a review's verdict tends to close it).
- ``chunks``: overlapping windows covering the whole text (stride: half a window), one row each; a
  training row per window with the document's label, and at evaluation and prediction the windows'
  logits are averaged per document.

Works on untruncated encodings ``[CLS] body [SEP]`` of single texts; sentence pairs keep the
longest-first truncation of ``head``.
"""

from __future__ import annotations

import numpy as np

TRUNCATIONS = ("head", "tail", "head+tail", "chunks")
#: Share of the token budget head+tail gives to the head (128 of 510 in Sun et al.).
HEAD_SHARE = 0.25


def cut(ids: np.ndarray, max_length: int, mode: str) -> list[np.ndarray]:
    """``ids`` = [CLS] body [SEP] untruncated -> the rows the model sees (one, or several for chunks)."""
    if len(ids) <= max_length:
        return [ids]
    cls, body, sep = ids[:1], ids[1:-1], ids[-1:]
    budget = max_length - 2
    if mode == "head":
        parts = [body[:budget]]
    elif mode == "tail":
        parts = [body[-budget:]]
    elif mode == "head+tail":
        head = int(budget * HEAD_SHARE)
        parts = [np.concatenate([body[:head], body[len(body) - (budget - head):]])]
    elif mode == "chunks":
        stride = max(1, budget // 2)
        starts = list(range(0, max(1, len(body) - budget + stride), stride))
        parts = [body[s:s + budget] for s in starts if s < len(body)]
        if len(body) > starts[-1] + budget:  # cover the end
            parts.append(body[-budget:])
    else:
        raise ValueError(f"unknown truncation {mode!r}")
    return [np.concatenate([cls, p, sep]).astype(ids.dtype) for p in parts]


def apply(ids: list[np.ndarray], max_length: int, mode: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Every text's rows, and for each row the index of its text."""
    rows: list[np.ndarray] = []
    owner: list[int] = []
    for i, x in enumerate(ids):
        parts = cut(x, max_length, mode)
        rows.extend(parts)
        owner.extend([i] * len(parts))
    return rows, np.asarray(owner, dtype=np.int64)


def pool(logits: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Mean logits per text over its rows."""
    out = np.zeros((n, logits.shape[1]), dtype=np.float64)
    np.add.at(out, owner, logits.astype(np.float64))
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    return (out / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
