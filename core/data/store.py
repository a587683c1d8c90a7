"""The encoded store: a tokenized data source on disk as Arrow IPC files, memory-mapped by every process
that reads it (``$TL_HOME/cache/encoded/<key>/``, or ``$TL_ENCODE_CACHE_DIR/<key>/``).

A store holds every row of one source (a data file, a hub split) in the source's order, encoded once:

- ``tokens.arrow``: ``ids`` (list<int32>) and ``types`` (list<int8>) per encoded row, one record batch per
  chunk read, so it is written in bounded memory;
- ``rows.arrow``: each encoded row's ``text`` (the index of the source row it encodes: windows of one
  long text share it);
- ``texts.arrow``: per source row, its ``label`` (an index into the manifest's label names, in order of
  first appearance) and the two 64-bit hash prefixes the held-out splits are cut by (``hash``: sha256 of the
  text, ``salted``: of the validation salt and the text), so any split fraction, subset or label set
  is a view of the same store;
- ``manifest.json``: format, key, rows, texts, pad id, label names, where it came from.

Arrow because its IPC files are read in place: ``pyarrow.memory_map`` gives buffers backed by the page
cache, so a 2-million-row store costs each process only the rows it touches, and processes on one
machine share those pages. It is also the format Hugging Face ``datasets`` caches in, readable by any
Arrow tool. A store is written into a temporary directory and renamed into place (a reader sees a whole
store or none); a store that is damaged anyway is reported in one line and built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tl.data.batching import Encoded
from tl.data.encode_cache import Damaged as CacheDamaged
from tl.data.examples import VALIDATION_SALT, Examples
from tl.data.ragged import Ragged
from tl.files import replace_dir

#: 1: tokens/rows/texts.arrow and manifest.json
FORMAT = 1


def store_root() -> Path:
    """Where stores live: ``$TL_ENCODE_CACHE_DIR``, else ``$TL_HOME/cache/encoded``."""
    env = os.environ.get("TL_ENCODE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from tl.assets.wheels import tl_home

    return tl_home() / "cache" / "encoded"


def row_hashes(keys: list[str], salt: str = "") -> np.ndarray:
    """The first 8 bytes (big-endian, as uint64) of sha256(salt + key) per key: ``is_eval_row``'s number."""
    out = np.empty(len(keys), dtype=np.uint64)
    prefix = salt.encode("utf-8", "surrogatepass")
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(hashlib.sha256(prefix + k.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return out


def held_out(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """Which rows ``is_eval_row`` holds out at ``fraction``, from their hash prefixes (the same float
    comparison: an exact power-of-two scaling of the correctly rounded float of the prefix)."""
    return hashes.astype(np.float64) / 2.0**64 < fraction


class Damaged(CacheDamaged):
    """A store that cannot be what its name says; the message says why (``why`` shows it as it is)."""


@dataclass
class Store:
    """An opened store: the encoded rows as memory-mapped ``Ragged`` columns, and per source row its
    label code and hash prefixes (small arrays, 20 bytes a row)."""

    path: Path
    manifest: dict
    ids: Ragged
    types: Ragged
    text: np.ndarray  # int64 per encoded row
    label: np.ndarray  # int32 per source row (code into label_names; -1: none)
    hash: np.ndarray  # uint64 per source row
    salted: np.ndarray  # uint64 per source row

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def texts(self) -> int:
        return int(self.manifest["texts"])

    def view(self, texts: np.ndarray, label_ids: np.ndarray | None) -> Encoded:
        """The encoded rows of the source rows ``texts`` (in that order), with label ids ``label_ids[code]``
        (None: unlabelled). Windows of a long text keep their text's position in ``texts`` as ``owner``."""
        texts = np.asarray(texts, dtype=np.int64)
        extra = {}
        if len(self.text) == self.texts:  # one row per text
            rows = texts
        else:
            order = np.argsort(texts, kind="stable")
            rows = np.flatnonzero(np.isin(self.text, texts))
            owner = order[np.searchsorted(texts[order], self.text[rows])]
            by_text = np.argsort(owner, kind="stable")
            rows, extra = rows[by_text], {"owner": owner[by_text].astype(np.int64)}
        labels = None
        if label_ids is not None:
            labels = label_ids[self.label[self.text[rows]]].astype(np.int64)
        return Encoded(self.ids.take(rows), self.types.take(rows), labels, int(self.manifest["pad_id"]), extra)


def _read(path: Path):
    import pyarrow as pa

    # not closed here: the table's buffers are views of the map, which lives as long as they do
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def open_store(path: Path) -> Store:
    """The store at ``path``, memory-mapped; ``Damaged`` (or the reader's error) when it is not whole."""
    if not path.is_dir():
        raise Damaged("not a directory")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise Damaged(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("key") != path.name:
        raise Damaged("manifest.json is another store's or another format's")
    tokens, rows, texts = (_read(path / f"{name}.arrow") for name in ("tokens", "rows", "texts"))
    parts = {"ids": [], "types": []}
    for batch in tokens.to_batches():
        for name in parts:
            column = batch.column(name)
            offsets = column.offsets.to_numpy()
            values = column.values.to_numpy(zero_copy_only=True)
            if len(offsets) != len(batch) + 1 or offsets[-1] > len(values):
                raise Damaged(f"{name!r} offsets out of range")
            parts[name].append((values, offsets))
    ids, types = Ragged(parts["ids"]), Ragged(parts["types"])
    text = _column(rows, "text")
    label, hashes, salted = (_column(texts, n) for n in ("label", "hash", "salted"))
    n_rows, n_texts = int(manifest.get("rows", -1)), int(manifest.get("texts", -1))
    if len(ids) != n_rows or len(text) != n_rows or len(label) != n_texts or len(hashes) != n_texts \
            or len(salted) != n_texts:
        raise Damaged(f"it holds {len(ids)} rows and {len(label)} texts; its manifest says {n_rows} and {n_texts}")
    if not np.array_equal(ids.lengths, types.lengths):
        raise Damaged("ids and type ids differ in length")
    if n_rows and (text.min() < 0 or text.max() >= n_texts or label.max() >= len(manifest.get("labels", []))):
        raise Damaged("row or label indices out of range")
    return Store(path, manifest, ids, types, text, label, hashes, salted)


def _column(table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise Damaged(f"no {name!r} column")
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy(zero_copy_only=True)
    return column.to_numpy()


class _Writer:
    """Appends chunks of a source to a new store directory."""

    def __init__(self, directory: Path) -> None:
        import pyarrow as pa

        self.pa = pa
        self.directory = directory
        self.schema = pa.schema([("ids", pa.list_(pa.int32())), ("types", pa.list_(pa.int8()))])
        self._sink = pa.OSFile(str(directory / "tokens.arrow"), "wb")
        self._tokens = pa.ipc.new_file(self._sink, self.schema)
        self.text: list[np.ndarray] = []
        self.label: list[np.ndarray] = []
        self.hash: list[np.ndarray] = []
        self.salted: list[np.ndarray] = []
        self.codes: dict[str, int] = {}
        self.texts = 0
        self.rows = 0

    def add(self, examples: Examples, encoded: Encoded) -> None:
        pa = self.pa
        owner = encoded.extra.get("owner")
        local = np.arange(len(encoded), dtype=np.int64) if owner is None else np.asarray(owner, dtype=np.int64)
        lengths = np.fromiter((len(x) for x in encoded.ids), dtype=np.int64, count=len(encoded))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        flat_ids = np.concatenate(encoded.ids).astype(np.int32) if len(encoded) else np.zeros(0, np.int32)
        flat_types = np.concatenate(encoded.type_ids).astype(np.int8) if len(encoded) else np.zeros(0, np.int8)
        batch = pa.record_batch([pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_ids)),
                                 pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_types))], schema=self.schema)
        self._tokens.write_batch(batch)
        self.text.append(local + self.texts)
        codes = self.codes
        self.label.append(np.fromiter((codes.setdefault(x, len(codes)) for x in examples.labels), dtype=np.int32,
                                      count=len(examples)))
        keys = examples.texts if examples.pairs is None else [
            t + "\x1f" + p for t, p in zip(examples.texts, examples.pairs, strict=True)]
        self.hash.append(row_hashes(keys))
        self.salted.append(row_hashes(keys, VALIDATION_SALT))
        self.texts += len(examples)
        self.rows += len(encoded)

    def close(self, manifest: dict) -> None:
        pa = self.pa
        self._tokens.close()
        self._sink.close()

        def write(name: str, columns: dict[str, np.ndarray]) -> None:
            table = pa.table({k: pa.array(v) for k, v in columns.items()})
            with pa.OSFile(str(self.directory / f"{name}.arrow"), "wb") as sink, \
                    pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)

        def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        write("rows", {"text": joined(self.text, np.int64)})
        write("texts", {"label": joined(self.label, np.int32), "hash": joined(self.hash, np.uint64),
                        "salted": joined(self.salted, np.uint64)})
        labels = sorted(self.codes, key=self.codes.__getitem__)
        (self.directory / "manifest.json").write_text(json.dumps(
            {**manifest, "format": FORMAT, "rows": self.rows, "texts": self.texts, "labels": labels},
            indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._tokens.close()
        with contextlib.suppress(Exception):
            self._sink.close()


def build(path: Path, chunks: Iterable[Examples], encode: Callable[[Examples], Encoded], manifest: dict,
          on_chunk: Callable[[int], None] | None = None) -> None:
    """Encode every chunk (``encode``: a task's encoder without label ids) into a new store at ``path``,
    written beside it and renamed into place. ``on_chunk(texts so far)`` after each chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    writer = _Writer(tmp)
    try:
        for examples in chunks:
            writer.add(examples, encode(examples))
            if on_chunk is not None:
                on_chunk(writer.texts)
        writer.close({**manifest, "key": path.name, "created_unix": round(time.time(), 3)})
        if path.is_symlink() or path.is_file():  # a file in a damaged store's place
            path.unlink()
        replace_dir(tmp, path)  # a damaged store is moved aside and removed once this one is in place
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on ``path``'s store (``<path>.lock``, ``flock``): one process builds it while the
    others (of a multi-process run, or other runs) wait, then open what it built."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def warn_damaged(path: Path, reason: str) -> None:
    print(f"tl: warning: the encoded store {path} is damaged ({reason}); encoding again", file=sys.stderr,
          flush=True)
