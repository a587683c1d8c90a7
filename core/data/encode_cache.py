"""Tokenized datasets cached on disk: a dataset is tokenized once per (task, texts, labels, tokenizer,
max length, truncation) and read back by later runs (``$TL_HOME/cache/encoded/<key>.npz``).

The key hashes everything the encoding depends on, including the tokenizer's own serialization, so
a changed vocabulary, normalizer or label set never reads a stale entry. Only plain encodings are
cached (one label per row, per-row arrays in ``extra``); anything else is encoded each time.
Writes are atomic (temp file + rename); an unreadable entry is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tl.data.batching import Encoded

FORMAT = 1


def cache_dir() -> Path:
    from tl.assets.wheels import tl_home

    return tl_home() / "cache" / "encoded"


def key(task: str, tokenizer, texts: list[str], pairs: list[str] | None, labels: list, max_length: int,
        label_space: tuple[str, ...] | None) -> str:
    h = hashlib.sha256()
    for part in (f"format={FORMAT}", task, str(max_length), tokenizer.truncation, repr(label_space),
                 tokenizer.fingerprint()):
        h.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    for seq in (texts, pairs or [], [repr(x) for x in labels]):
        h.update(str(len(seq)).encode() + b"\x01")
        for s in seq:
            h.update(s.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:32]


def _save(path: Path, enc: Encoded) -> None:
    lengths = np.asarray([len(x) for x in enc.ids], dtype=np.int64)
    arrays = {
        "lengths": lengths,
        "ids": np.concatenate(enc.ids) if enc.ids else np.zeros(0, np.int32),
        "types": np.concatenate(enc.type_ids) if enc.type_ids else np.zeros(0, np.int8),
        "pad_id": np.asarray(enc.pad_id),
    }
    if enc.labels is not None:
        arrays["labels"] = np.asarray(enc.labels)
    for name, value in enc.extra.items():
        arrays[f"extra.{name}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> Encoded:
    with np.load(path, allow_pickle=False) as data:
        offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
        ids, types = data["ids"], data["types"]
        rows = [ids[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        type_rows = [types[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        labels = data["labels"] if "labels" in data.files else None
        extra = {name[len("extra."):]: data[name] for name in data.files if name.startswith("extra.")}
        return Encoded(rows, type_rows, labels, int(data["pad_id"]), extra)


def _cacheable(enc: Encoded) -> bool:
    return (enc.labels is None or isinstance(enc.labels, np.ndarray)) and all(
        isinstance(v, np.ndarray) and v.dtype != object for v in enc.extra.values())


def cached(task_name: str, tokenizer, examples, max_length: int, labels: tuple[str, ...] | None,
           encode: Callable[[], Encoded]) -> tuple[Encoded, bool]:
    """(the encoding, whether it came from the cache). ``encode`` makes it when not cached."""
    if examples.words is not None or os.environ.get("TL_NO_ENCODE_CACHE"):
        return encode(), False
    path = cache_dir() / f"{key(task_name, tokenizer, examples.texts, examples.pairs, examples.labels, max_length, labels)}.npz"
    if path.is_file():
        try:
            return _load(path), True
        except (OSError, ValueError, KeyError):
            pass
    enc = encode()
    if _cacheable(enc):
        with contextlib.suppress(OSError):  # a read-only cache only costs the time to tokenize again
            _save(path, enc)
    return enc, False
