"""A damaged encode cache ($TL_HOME/cache/encoded/<key>.npz): each way a disk or a person can spoil an
entry (cut short, garbled, emptied, a bit flipped, arrays that do not fit together, another entry's
content, a directory in its place) costs one warning line and a second tokenization; the entry is
replaced atomically and its encoding is the one made without the cache (a whole run over a damaged
cache: test_fault_store.py, whose encoded store local files now go through). Writers replace an
entry with ``os.replace`` of a whole temp file, so two processes writing one entry at once never leave
a torn one (checked with real processes below)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tl.data.encode_cache import _load, cache_dir, cached, key
from tl.data.examples import Examples
from tl.data.tokenization import Tokenizer
from tl.interfaces import Task

from tinybert import synthetic_rows

GUARANTEE = {"fault": "Encode cache entry damaged (cut short, garbled, empty, inconsistent, a directory)",
             "tl": "one warning line; tokenizes again and replaces the entry atomically",
             "kept": "the run's results (equal to a run without the cache)"}
LABELS = ("negative", "positive")


def _rewrite(path, **changes) -> None:
    """Write ``path`` again with some arrays changed (a consistent-looking zip whose content is wrong)."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _lengths_off(path) -> None:
    with np.load(path) as data:
        lengths = data["lengths"].copy()
    lengths[0] += 3
    _rewrite(path, lengths=lengths)


def _labels_short(path) -> None:
    with np.load(path) as data:
        labels = data["labels"][:-1]
    _rewrite(path, labels=labels)


def _float_ids(path) -> None:
    with np.load(path) as data:
        ids = data["ids"].astype(np.float32)
    _rewrite(path, ids=ids)


def _drop(path, name: str) -> None:
    with np.load(path) as data:
        arrays = {n: data[n] for n in data.files if n != name}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _other_entry(path) -> None:
    other = next(p for p in path.parent.glob("*.npz") if p != path)
    shutil.copyfile(other, path)


def _directory(path) -> None:
    path.unlink()
    path.mkdir()
    (path / "ids.npy").write_bytes(b"x")


DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a whole zip archive"),
    "garbage": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), ""),
    "empty": (lambda p: p.write_bytes(b""), "an empty file"),
    "bit-flip": (_flip, "not a whole zip archive"),
    "lengths-mismatch": (_lengths_off, "row lengths add up to"),
    "labels-mismatch": (_labels_short, "'labels' has"),
    "float-ids": (_float_ids, "'ids' is not a list of integers"),
    "missing-array": (lambda p: _drop(p, "types"), "no 'types' array"),
    "another-entry": (_other_entry, "it holds entry"),
    "directory": (_directory, "a directory, not a file"),
}


def _examples(seed: int) -> Examples:
    rows = synthetic_rows(40, seed=seed)
    return Examples([t for t, _ in rows], [label for _, label in rows])


def _same(a, b) -> None:
    assert len(a) == len(b) and a.pad_id == b.pad_id and np.array_equal(a.labels, b.labels)
    assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.ids, b.ids, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.type_ids, b.type_ids, strict=True))


@pytest.mark.guarantee(**GUARANTEE)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_warns_once_and_is_replaced(damage, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TL_HOME", str(tmp_path))
    task, tok = Task(), Tokenizer.from_dir(tiny_checkpoint)
    ex = _examples(seed=21)
    fresh = task.encode(tok, ex, 32, LABELS)

    def encode():
        return task.encode(tok, ex, 32, LABELS)

    cached("t", tok, _examples(seed=22), 32, LABELS, lambda: task.encode(tok, _examples(seed=22), 32, LABELS))
    cached("t", tok, ex, 32, LABELS, encode)
    entry = cache_dir() / f"{key('t', tok, ex.texts, ex.pairs, ex.labels, 32, LABELS)}.npz"
    assert entry.is_file()
    spoil, why = DAMAGE[damage]
    spoil(entry)
    capsys.readouterr()
    enc, hit = cached("t", tok, ex, 32, LABELS, encode)
    err = capsys.readouterr().err.strip().splitlines()
    assert not hit and len(err) == 1, err
    assert err[0].startswith(f"tl: warning: the encode cache entry {entry} is damaged (")
    assert err[0].endswith("); tokenizing again") and why in err[0]
    _same(enc, fresh)
    assert entry.is_file() and not list(cache_dir().glob("*.tmp"))  # replaced whole, no temp file left
    again, hit = cached("t", tok, ex, 32, LABELS, encode)
    assert hit and capsys.readouterr().err == ""
    _same(again, fresh)


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from tl.data.batching import Encoded
    from tl.data.encode_cache import _save
    path, rows, times = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(rows)
    ids = [rng.integers(0, 100, size=n).astype(np.int32) for n in rng.integers(1, 64, size=rows)]
    enc = Encoded(ids, [np.zeros(len(x), np.int8) for x in ids], np.arange(rows) % 2, 0)
    for _ in range(times):
        _save(path, enc)
""")


def test_two_processes_writing_one_entry_never_leave_it_torn(tmp_path):
    path = tmp_path / ("0" * 32 + ".npz")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rows), "100"]) for rows in (300, 700)]
    while any(w.poll() is None for w in writers):  # read while they write: a whole entry, one or the other
        if path.exists():
            assert len(_load(path)) in (300, 700)  # _load raises on a torn or mixed entry
    assert all(w.returncode == 0 for w in writers) and len(_load(path)) in (300, 700)
    assert not list(tmp_path.glob("*.tmp"))
