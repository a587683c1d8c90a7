"""A run's data through the encoded store (``tl.data.store``): a local data file (and ``--eval-dataset``
file) read in chunks, encoded once into a memory-mapped store, and the run's splits, subsets and label
set taken as views of it. Nothing holds the file's texts or their token ids in memory, so a file of
millions of rows trains in the memory of a few thousand.

The splits are the in-memory path's (``tl.data.loading``), row for row and in the same order: the
held-out evaluation split by the sha256 of the text, ``--validation-split`` by the salted hash, the
``--max-*-samples`` subsets by ``SUBSET_SEED``; so a seed gives the same batches either way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tl.data.batching import Encoded
from tl.data.encode_cache import why
from tl.data.examples import EVAL_FRACTION, SUBSET_SEED, Examples, Splits
from tl.data.loading import require_pairs
from tl.data.store import Store, build, held_out, locked, open_store, store_root
from tl.data.tables import file_format, iter_examples
from tl.errors import DataError
from tl.files import sha256_file
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Task


@dataclass(frozen=True)
class Rows:
    """A split of a store, counted rather than held (``Splits.train``/``eval`` of a streamed run)."""

    count: int
    source: str

    def __len__(self) -> int:
        return self.count


@dataclass
class StreamedData:
    train: Encoded
    eval: Encoded
    labels: tuple[str, ...]
    splits: Splits
    #: Whether every store was already built (no row was read or tokenized).
    cached: bool


def local_file(name: str | None) -> Path | None:
    if not name:
        return None
    path = Path(name).expanduser()
    return path if path.is_file() else None


def hub_dataset(name: str, registry) -> str | None:
    """The hub id ``name`` resolves to (``tl.assets.resolve``'s order: a local path, then a registered
    dataset, then the hub), else None."""
    from tl.assets.resolve import _hub_id, _looks_like_path

    if Path(name).expanduser().exists() or _looks_like_path(name) or name in registry.items["dataset"]:
        return None
    return _hub_id(name)


def streamable(task: Task, dataset: str, eval_dataset: str | None, registry=None) -> bool:
    """Whether this data goes through the store: a local table file or a hub dataset, read by the
    default reader for a task with one label per text (a task's own reader or labels, e.g. CoNLL for
    NER, and the registered datasets, which are small, stay in memory); ``--eval-dataset``, if given,
    a local file."""
    kind = type(task)
    source = local_file(dataset) is not None or (registry is not None and hub_dataset(dataset, registry) is not None)
    return (kind.read is Task.read and kind.observed_labels is Task.observed_labels
            and task.head_kind == HEAD_SEQUENCE_CLASSIFICATION and source
            and (eval_dataset is None or local_file(eval_dataset) is not None))


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in ("store", *parts):
        h.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:32]


def store_key(task_id: str, tokenizer, max_length: int, path: Path, columns: tuple[str | None, ...],
              digest: str) -> str:
    """Everything a file's store depends on: the task, the tokenizer's serialization, max length and
    truncation, the file's format, columns and content (not its name or time)."""
    return _key(task_id, tokenizer.fingerprint(), str(max_length), tokenizer.truncation, file_format(path),
                repr(columns), digest)


def file_store(path: Path, columns: tuple[str, str, str | None], task: Task, task_id: str, tokenizer,
               max_length: int, root: Path, say: Callable[[str], None],
               warn: Callable[[Path, str], None] | None) -> tuple[Store, bool]:
    """The store of ``path`` (built now unless it exists): (store, whether it existed)."""
    digest = sha256_file(path)
    text, label, pair = columns
    return _store(root / store_key(task_id, tokenizer, max_length, path, columns, digest),
                  lambda: iter_examples(path, text, label, pair), path.name, task, tokenizer, max_length,
                  {"source": str(path), "sha256": digest, "columns": list(columns)}, say, warn)


def hub_stores(repo_id: str, columns: tuple[str, str, str | None], task: Task, task_id: str, tokenizer,
               max_length: int, root: Path, say: Callable[[str], None],
               warn: Callable[[Path, str], None] | None) -> tuple[tuple[Store, bool], tuple[Store, bool], str]:
    """The stores of a hub dataset's train and evaluation splits (keyed by ``datasets``' own content
    fingerprint of each split), and the evaluation split's name."""
    from tl.assets.hub import hub_splits, iter_split
    from tl.data.tables import CHUNK_ROWS

    train, evaluation, eval_name = hub_splits(repo_id)
    out = []
    for name, split in (("train", train), (eval_name, evaluation)):
        fingerprint = str(getattr(split, "_fingerprint", "")) or repr((repo_id, name, split.num_rows))
        key = _key(task_id, tokenizer.fingerprint(), str(max_length), tokenizer.truncation, "hub", repo_id, name,
                   repr(columns), fingerprint)
        out.append(_store(root / key, lambda split=split: iter_split(split, repo_id, *columns, CHUNK_ROWS),
                          f"{repo_id}:{name}", task, tokenizer, max_length,
                          {"source": repo_id, "split": name, "fingerprint": fingerprint, "columns": list(columns)},
                          say, warn))
    return out[0], out[1], eval_name


def _store(target: Path, chunks: Callable[[], Iterable[Examples]], shown: str, task: Task, tokenizer,
           max_length: int, manifest: dict, say: Callable[[str], None],
           warn: Callable[[Path, str], None] | None) -> tuple[Store, bool]:
    with locked(target):  # one process builds, the others wait and open it
        for leftover in target.parent.glob(f".{target.name}-*"):  # a builder killed mid-way (it held the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():
            try:
                return open_store(target), True
            except Exception as exc:  # noqa: BLE001 (whatever a damaged file makes Arrow raise)
                if warn is not None:
                    warn(target, why(exc))
        t0, last = time.perf_counter(), [time.perf_counter()]

        def progress(texts: int) -> None:
            if time.perf_counter() - last[0] >= 10:
                last[0] = time.perf_counter()
                say(f"tl: encoding {shown}: {texts:,} rows ({texts / (last[0] - t0):,.0f} rows/s)")

        def encode(examples: Examples) -> Encoded:
            require_pairs(task, examples)  # a pair task's data without a second text: refused at the first chunk
            return task.encode(tokenizer, examples, max_length, None)

        build(target, chunks(), encode,
              {**manifest, "task": getattr(task, "name", ""), "max_length": max_length,
               "truncation": tokenizer.truncation, "pad_id": tokenizer.pad_id}, on_chunk=progress)
        return open_store(target), False


def writable_root() -> Path:
    """``store_root()`` if this process may write there, else a private temporary directory."""
    import tempfile

    root = store_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="tl-store-"))


def _subset(rows: np.ndarray, n: int | None) -> np.ndarray:
    """``tl.data.examples.subset`` of the rows ``rows``: the same fixed sample, in the same order."""
    if n is None or n >= len(rows):
        return rows
    rng = np.random.default_rng(SUBSET_SEED)
    return rows[np.sort(rng.permutation(len(rows))[:n])]


def select(config, task: Task, data: Store, eval_store: Store | None, presplit: str = "") -> StreamedData:
    """The run's train and evaluation views of the store(s), as ``tl.data.loading.load_splits`` and
    ``label_space`` would make them (``cached`` left False; the caller knows). ``presplit``: ``data`` is a
    training split as published (a hub dataset's), not hash-split; its description."""
    source = str(data.manifest.get("source", ""))
    n = data.texts
    is_eval = held_out(data.hash, EVAL_FRACTION)
    kept, out = np.flatnonzero(~is_eval), np.flatnonzero(is_eval)
    # a local file with a separate eval set trains on all its rows, its hash split's two sides in turn
    whole = np.arange(n) if presplit else np.concatenate([kept, out])
    eval_from = data
    if config.validation_split:
        pool = whole if eval_store is not None or presplit else kept
        pool = _subset(pool, config.max_train_samples)
        held = held_out(data.salted[pool], config.validation_split)
        train, evaluation = pool[~held], pool[held]
        if not len(train) or not len(evaluation):
            raise DataError(f"{len(pool)} training rows are too few to hold out {config.validation_split:.0%} for "
                            "validation; use more training data (--max-train-samples) or another --validation-split")
        split = (f"validation: salted sha256(text) held-out {config.validation_split:.0%} of the training split "
                 "(evaluation split unused)")
        evaluation = _subset(evaluation, config.max_eval_samples)
    elif eval_store is not None:
        train = _subset(whole, config.max_train_samples)
        evaluation = _subset(np.arange(eval_store.texts), config.max_eval_samples)
        eval_from = eval_store
        split = f"eval from {config.eval_dataset}" if config.eval_dataset else presplit
    else:
        if not len(kept) or not len(out):
            raise DataError(f"{source} has too few rows ({n}) to hold out {EVAL_FRACTION:.0%} for evaluation; "
                            "pass --eval-dataset")
        train, evaluation = _subset(kept, config.max_train_samples), _subset(out, config.max_eval_samples)
        split = f"sha256(text) held-out {EVAL_FRACTION:.0%}"
    labels = _label_space(task, data, train, eval_from, evaluation, source)
    index = {name: i for i, name in enumerate(labels)}

    def ids(store: Store) -> np.ndarray:
        return np.asarray([index.get(name, -1) for name in store.label_names], dtype=np.int64)

    eval_source = str(eval_from.manifest.get("source", ""))
    return StreamedData(data.view(train, ids(data)), eval_from.view(evaluation, ids(eval_from)), labels,
                        Splits(Rows(len(train), source), Rows(len(evaluation), eval_source), split), False)


def _observed(store: Store, rows: np.ndarray) -> Counter:
    counts = np.bincount(store.label[rows], minlength=len(store.label_names)) if len(rows) else []
    return Counter({name: int(c) for name, c in zip(store.label_names, counts, strict=False) if c})


def _label_space(task: Task, data: Store, train: np.ndarray, eval_from: Store, evaluation: np.ndarray,
                 source: str) -> tuple[str, ...]:
    """``tl.data.loading.label_space`` from label counts instead of label lists."""
    labels = task.label_order(_observed(data, train).elements())
    task.validate_labels(labels, source or "training data")
    unseen = sorted(set(_observed(eval_from, evaluation)) - set(labels))
    if unseen:
        raise DataError(
            f"evaluation labels {', '.join(map(repr, unseen))} never occur in the training data "
            f"(training labels: {', '.join(labels)}); fix the label column or the split"
        )
    return labels
