"""Tokenized datasets cached on disk: a dataset is tokenized once per (task, texts, labels, tokenizer,
max length, truncation) and read back by later runs (``$TL_HOME/cache/encoded/<key>.npz``).

The key hashes everything the encoding depends on, including the tokenizer's own serialization, so
a changed vocabulary, normalizer or label set never reads a stale entry. Only plain encodings are
cached (one label per row, per-row arrays in ``extra``); anything else is encoded each time.
Writes are atomic (a temp file in the same directory, then ``os.replace``): a reader sees a whole entry
or none, and two processes writing the same entry at once each replace it with a whole one. An entry
that is damaged anyway (a truncated or garbled file, an empty one, arrays that do not fit together,
another entry's content, a directory in its place) is reported in one warning line, tokenized again
and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tl.data.batching import Encoded

#: 2: each entry holds its own key (an entry copied or renamed over another is noticed)
FORMAT = 2


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


class Damaged(ValueError):
    """A cache entry that cannot be what its name says; the message says why."""


def _save(path: Path, enc: Encoded) -> None:
    lengths = np.asarray([len(x) for x in enc.ids], dtype=np.int64)
    arrays = {
        "lengths": lengths,
        "ids": np.concatenate(enc.ids) if enc.ids else np.zeros(0, np.int32),
        "types": np.concatenate(enc.type_ids) if enc.type_ids else np.zeros(0, np.int8),
        "pad_id": np.asarray(enc.pad_id),
        "key": np.asarray(path.stem),
    }
    if enc.labels is not None:
        arrays["labels"] = np.asarray(enc.labels)
    for name, value in enc.extra.items():
        arrays[f"extra.{name}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():  # a directory in the entry's place: os.replace cannot replace it
        shutil.rmtree(path, ignore_errors=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> Encoded:
    """The entry at ``path``; ``Damaged`` (or the reader's own error) when it is not a whole, consistent one."""
    if path.stat().st_size == 0:
        raise Damaged("an empty file")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for name in ("key", "lengths", "ids", "types", "pad_id"):
        if name not in arrays:
            raise Damaged(f"no {name!r} array")
    if str(arrays["key"]) != path.stem:
        raise Damaged(f"it holds entry {str(arrays['key'])[:32]!r}")
    lengths, ids, types, pad_id = arrays["lengths"], arrays["ids"], arrays["types"], arrays["pad_id"]
    for name, a in (("lengths", lengths), ("ids", ids), ("types", types)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise Damaged(f"{name!r} is not a list of integers")
    if pad_id.ndim != 0 or pad_id.dtype.kind not in "iu" or (lengths < 0).any():
        raise Damaged("'pad_id' or 'lengths' out of range")
    if int(lengths.sum()) != len(ids) or len(types) != len(ids):
        raise Damaged(f"the row lengths add up to {int(lengths.sum())} tokens, but it holds {len(ids)} ids and "
                      f"{len(types)} type ids")
    rows = len(lengths)
    labels = arrays.get("labels")
    extra = {name[len("extra."):]: a for name, a in arrays.items() if name.startswith("extra.")}
    for name, a in ([("labels", labels)] if labels is not None else []) + [(f"extra.{k}", v) for k, v in extra.items()]:
        if a.ndim == 0 or len(a) != rows:
            raise Damaged(f"{name!r} has {a.size if a.ndim == 0 else len(a)} entries for {rows} rows")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids_rows = [ids[offsets[i]:offsets[i + 1]] for i in range(rows)]
    type_rows = [types[offsets[i]:offsets[i + 1]] for i in range(rows)]
    return Encoded(ids_rows, type_rows, labels, int(pad_id), extra)


def why(exc: BaseException) -> str:
    """Why an entry (or an encoded store: ``tl.data.store``) could not be read, in a few words."""
    if isinstance(exc, Damaged):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return "a directory, not a file"
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a whole zip archive: {exc}"
    if isinstance(exc, EOFError):
        return "cut short"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def warn_damaged(path: Path, why: str) -> None:
    """The one line a damaged entry costs (shown with --quiet too: the run takes longer than it would)."""
    print(f"tl: warning: the encode cache entry {path} is damaged ({why}); tokenizing again", file=sys.stderr,
          flush=True)


def _cacheable(enc: Encoded) -> bool:
    return (enc.labels is None or isinstance(enc.labels, np.ndarray)) and all(
        isinstance(v, np.ndarray) and v.dtype != object for v in enc.extra.values())


def cached(task_name: str, tokenizer, examples, max_length: int, labels: tuple[str, ...] | None,
           encode: Callable[[], Encoded], warn: Callable[[Path, str], None] | None = warn_damaged,
           ) -> tuple[Encoded, bool]:
    """(the encoding, whether it came from the cache). ``encode`` makes it when not cached; a damaged
    entry is reported through ``warn`` (None: silently), encoded again and replaced."""
    if examples.words is not None or os.environ.get("TL_NO_ENCODE_CACHE"):
        return encode(), False
    path = cache_dir() / f"{key(task_name, tokenizer, examples.texts, examples.pairs, examples.labels, max_length, labels)}.npz"
    if path.exists():
        try:
            return _load(path), True
        except FileNotFoundError:
            pass  # removed since (another process replacing it): a miss
        except Exception as exc:  # noqa: BLE001 (whatever a damaged file makes numpy or zipfile raise)
            if warn is not None:
                warn(path, why(exc))
    enc = encode()
    if _cacheable(enc):
        with contextlib.suppress(OSError):  # a read-only cache only costs the time to tokenize again
            _save(path, enc)
    return enc, False
