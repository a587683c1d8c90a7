"""The on-disk cache of tokenized datasets: a second run reads what the first wrote, and anything
that changes the token ids or labels misses."""

from __future__ import annotations

import numpy as np

from tl.data.encode_cache import cache_dir, cached
from tl.data.examples import Examples
from tl.data.tokenization import Tokenizer
from tl.interfaces import Task

from tinybert import synthetic_rows


def _examples(n=50, seed=0):
    rows = synthetic_rows(n, seed=seed)
    return Examples([t for t, _ in rows], [label for _, label in rows])


def test_second_encoding_comes_from_the_cache(tiny_checkpoint):
    task, tok = Task(), Tokenizer.from_dir(tiny_checkpoint)
    ex = _examples()
    labels = ("negative", "positive")
    calls = []

    def encode():
        calls.append(1)
        return task.encode(tok, ex, 32, labels)

    first, hit1 = cached("t", tok, ex, 32, labels, encode)
    second, hit2 = cached("t", tok, ex, 32, labels, encode)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(first.ids, second.ids, strict=True))
    assert np.array_equal(first.labels, second.labels) and second.pad_id == first.pad_id
    # a different max length, label order, text, truncation or task: a different entry
    assert not cached("t", tok, ex, 24, labels, encode)[1]
    assert not cached("t", tok, ex, 32, labels[::-1], encode)[1]
    assert not cached("t", tok, _examples(seed=1), 32, labels, encode)[1]
    assert not cached("other", tok, ex, 32, labels, encode)[1]
    tok.truncation = "chunks"
    chunked, hit = cached("t", tok, ex, 8, labels, encode)
    assert not hit and "owner" in chunked.extra
    again, hit = cached("t", tok, ex, 8, labels, encode)
    assert hit and np.array_equal(again.extra["owner"], chunked.extra["owner"])


def test_a_damaged_entry_is_rewritten(tiny_checkpoint):
    task, tok = Task(), Tokenizer.from_dir(tiny_checkpoint)
    ex = _examples(seed=3)
    cached("t", tok, ex, 32, None, lambda: task.encode(tok, ex, 32, None))
    for f in cache_dir().glob("*.npz"):
        f.write_bytes(b"not a zip")
    enc, hit = cached("t", tok, ex, 32, None, lambda: task.encode(tok, ex, 32, None))
    assert not hit and len(enc) == 50
    assert cached("t", tok, ex, 32, None, lambda: task.encode(tok, ex, 32, None))[1]
