"""Word-piece label alignment and windows over long sentences.

Each word is tokenized into word pieces; the first piece of a word carries the word's tag, the
other pieces and the special tokens get ``IGNORE_INDEX`` (-100) and are left out of the loss.

A sentence longer than ``max_length`` tokens is never cut: it is split into overlapping windows of
whole words (each at most ``max_length`` tokens with the special tokens, consecutive windows
overlapping by about half a window). Every window is a row for training; for evaluation and
prediction each word takes its prediction from the window in which it has the most context on both
sides. Only a single word longer than a whole window loses its later word pieces (its first piece,
which carries the tag, is kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tl.data.batching import IGNORE_INDEX, Encoded
from tl.data.tokenization import Tokenizer


def first_pieces(word_ids: np.ndarray) -> np.ndarray:
    """Positions of the first word piece of each word (``word_ids``: -1 for special tokens)."""
    w = np.asarray(word_ids)
    previous = np.concatenate([[-1], w[:-1]])
    return np.flatnonzero((w >= 0) & (w != previous))


def align_labels(word_ids: np.ndarray, word_tags: np.ndarray) -> np.ndarray:
    """Token labels: the word's tag id at its first piece, ``IGNORE_INDEX`` elsewhere."""
    out = np.full(len(word_ids), IGNORE_INDEX, dtype=np.int64)
    first = first_pieces(word_ids)
    out[first] = np.asarray(word_tags, dtype=np.int64)[np.asarray(word_ids)[first]]
    return out


def plan_windows(pieces: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) covering every word, each holding at most ``budget`` word pieces
    (a word longer than ``budget`` counts as ``budget``); the next window starts about half a
    window after the previous one."""
    n = len(pieces)
    capped = np.minimum(np.asarray(pieces, dtype=np.int64), budget)
    offsets = np.concatenate([[0], np.cumsum(capped)])
    if offsets[-1] <= budget:
        return [(0, n)]
    windows = []
    start = 0
    while True:
        end = int(np.searchsorted(offsets, offsets[start] + budget, side="right")) - 1  # offsets[end] fits
        end = max(end, start + 1)
        windows.append((start, end))
        if end >= n:
            return windows
        half = int(np.searchsorted(offsets, offsets[start] + budget // 2, side="left"))
        start = min(max(half, start + 1), end)


def _fit(ids: np.ndarray, types: np.ndarray, words: np.ndarray, max_length: int):
    """Cut the middle of an encoding longer than ``max_length`` (a single over-long word), keeping the
    trailing special tokens."""
    if len(ids) <= max_length:
        return ids, types, words
    tail = 0
    while tail < len(words) and words[len(words) - 1 - tail] < 0:
        tail += 1
    keep = np.r_[0 : max_length - tail, len(ids) - tail : len(ids)]
    return ids[keep], types[keep], words[keep]


def encode_words(tokenizer: Tokenizer, words: Sequence[Sequence[str]], max_length: int,
                 tags: Sequence[np.ndarray] | None = None) -> Encoded:
    """Rows (windows) of token ids for pre-split ``words``; with ``tags`` (tag ids per word), token
    labels. ``extra``: ``example`` (the sentence of each row), ``word_ids`` (each token's word index
    in its sentence, -1 for special tokens), ``home`` (token positions whose predictions count for
    their words; every word with a token has exactly one) and ``gold`` (the sentence's tag ids)."""
    ids, types, word_ids = tokenizer.encode_words(words)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    for k, (i, t, w) in enumerate(zip(ids, types, word_ids, strict=True)):
        if len(i) <= max_length:
            rows.append((i, t, w, k))
            continue
        specials = int(np.count_nonzero(w < 0))
        pieces = np.bincount(w[w >= 0], minlength=len(words[k]))
        windows = plan_windows(pieces, max(1, max_length - specials))
        parts = tokenizer.encode_words([list(words[k][s:e]) for s, e in windows])
        for (s, _), i2, t2, w2 in zip(windows, *parts, strict=True):
            i2, t2, w2 = _fit(i2, t2, w2, max_length)
            rows.append((i2, t2, np.where(w2 >= 0, w2 + s, -1).astype(np.int32), k))
    example = np.asarray([r[3] for r in rows], dtype=np.int64)
    extra = {
        "example": example,
        "word_ids": [r[2] for r in rows],
        "home": home_positions([r[2] for r in rows], example),
        "gold": [None if tags is None else tags[r[3]] for r in rows],
    }
    labels = None if tags is None else [align_labels(r[2], tags[r[3]]) for r in rows]
    return Encoded([r[0] for r in rows], [r[1] for r in rows], labels, pad_id=tokenizer.pad_id, extra=extra)


def home_positions(word_ids: Sequence[np.ndarray], example: np.ndarray) -> list[np.ndarray]:
    """For each row, the first-piece positions of the words whose prediction comes from this row: a
    sentence in one row uses all of them; in several windows, each word uses the window where it has
    the most context (the smaller of the pieces before and after it), the earlier one on a tie."""
    home = [first_pieces(w) for w in word_ids]
    by_example: dict[int, list[int]] = {}
    for r, k in enumerate(example.tolist()):
        by_example.setdefault(k, []).append(r)
    for rows in by_example.values():
        if len(rows) == 1:
            continue
        best: dict[int, tuple[int, int, int]] = {}  # word -> (context, row, position)
        for r in rows:
            w = word_ids[r]
            content = np.flatnonzero(w >= 0)
            lo, hi = int(content[0]), int(content[-1])
            for pos in home[r].tolist():
                word = int(w[pos])
                last = pos
                while last + 1 <= hi and w[last + 1] == word:
                    last += 1
                context = min(pos - lo, hi - last)
                if word not in best or context > best[word][0]:
                    best[word] = (context, r, pos)
        for r in rows:
            home[r] = np.asarray(sorted(p for _, row, p in best.values() if row == r), dtype=np.int64)
    return home
