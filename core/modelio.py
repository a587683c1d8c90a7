"""Saving, loading and running saved models, the same for every backend."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tl import __version__
from tl.adapters import materialize
from tl.batching import Encoded, eval_order, iter_batches
from tl.checkpoint import META_NAME, read_meta, validate_checkpoint, write_json
from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Backend, HeadSpec, Model, Task
from tl.metrics import softmax
from tl.tokenization import Tokenizer
from tl.truncation import pool

PREDICT_BATCH = 64


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    probabilities: dict[str, float]


def save_model(model: Model, directory: Path, meta: dict[str, Any]) -> Path:
    """Write weights, tokenizer and tl.json into ``directory`` atomically (temp dir + rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_weights(tmp)
    model.tokenizer.save(tmp)
    full = {
        "format": 1,
        "task": meta.get("task"),
        "head": model.head.kind,
        "labels": list(model.head.labels),
        "backend": model.backend,
        "max_length": meta.get("max_length", 128),
        "base_model": model.info.get("base_model"),
        "base_checkpoint": model.info.get("base_checkpoint"),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"tl": __version__, **meta.get("versions", {})},
    }
    full.update({k: v for k, v in meta.items() if k not in full and k != "versions"})
    write_json(tmp / META_NAME, full)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old)
    else:
        tmp.rename(directory)
    return directory


def load_saved(directory: str | Path, backend: Backend) -> tuple[Model, dict[str, Any]]:
    """Load a tl model directory on ``backend`` (any backend can load any backend's model)."""
    d = Path(directory)
    if not d.exists():
        raise UsageError(f"model directory {d} not found")
    meta = read_meta(d)
    weights = materialize(d)  # LoRA adapters saved alone: merged into their base model
    validate_checkpoint(weights)
    tokenizer = Tokenizer.from_dir(d)
    tokenizer.truncation = meta.get("truncation", "head")
    head = HeadSpec(meta["head"], meta["labels"])
    if head.kind not in backend.capabilities.heads:
        raise UsageError(f"backend {backend.name!r} cannot run a {head.kind} model (heads: "
                         f"{', '.join(backend.capabilities.heads)}); pass another --backend")
    info = {"base_model": meta.get("base_model"), "trained_with": meta.get("backend"), "path": str(d)}
    return backend.load_model(weights, head, tokenizer, info), meta


def task_of(meta: dict[str, Any], registry) -> Task:
    """The task that trained a saved model (its plugin must be installed); a model of a sequence
    classification task whose plugin is gone is still served by the default Task."""
    name = meta.get("task")
    if name in registry.items["task"]:
        return registry.get("task", name)
    if meta.get("head", HEAD_SEQUENCE_CLASSIFICATION) == HEAD_SEQUENCE_CLASSIFICATION:
        return Task()
    raise UsageError(f"this model was trained by task {name!r} ({meta.get('head')} head), which no installed "
                     "plugin provides; install the plugin that registers it (see `tl plugins`)")


def label_ids(labels: Sequence[str], space: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(space)}
    return np.asarray([index[x] for x in labels], dtype=np.int64)


def encode(tokenizer: Tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
           labels: np.ndarray | None = None) -> Encoded:
    if pairs is None and tokenizer.truncation != "head":  # tail, head+tail, chunks (tl.truncation)
        ids, types, owner = tokenizer.encode_long(texts, max_length)
        row_labels = None if labels is None else np.asarray(labels)[owner]
        return Encoded(ids, types, row_labels, pad_id=tokenizer.pad_id, extra={"owner": owner})
    ids, types = tokenizer.encode(texts, pairs, max_length=max_length)
    return Encoded(ids, types, labels, pad_id=tokenizer.pad_id)


def per_text(logits: np.ndarray, encoded: Encoded) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and labels per text: rows that are windows of one text (``--truncation chunks``)
    have their logits averaged."""
    owner = encoded.extra.get("owner")
    if owner is None:
        return logits, encoded.labels
    n = int(owner.max()) + 1 if len(owner) else 0
    labels = None
    if encoded.labels is not None:
        labels = np.zeros(n, dtype=np.int64)
        labels[owner] = encoded.labels
    return pool(logits, owner, n), labels


def dataset_logits(model: Model, encoded: Encoded, batch_size: int = PREDICT_BATCH) -> np.ndarray | list[np.ndarray]:
    """Logits for every row of ``encoded`` in its original order (batches are length-sorted): an
    array [rows, labels], or for a token head a list of [tokens, labels] arrays, one per row."""
    order = eval_order(encoded.lengths, batch_size)
    out = model.logits(iter_batches(encoded, order))
    if isinstance(out, list):
        rows: list[np.ndarray] = [None] * len(out)  # type: ignore[list-item]
        for i, row in zip(np.concatenate(order) if order else [], out, strict=True):
            rows[i] = row
        return rows
    logits = np.empty_like(out)
    logits[np.concatenate(order)] = out
    return logits


def predict(model: Model, texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None,
            batch_size: int = PREDICT_BATCH) -> list[Prediction]:
    if not texts:
        return []
    encoded = encode(model.tokenizer, texts, pairs, max_length)
    probs = softmax(per_text(dataset_logits(model, encoded, batch_size), encoded)[0])
    labels = model.head.labels
    out = []
    for text, p in zip(texts, probs, strict=True):
        k = int(p.argmax())
        out.append(Prediction(text, labels[k], float(p[k]), {lab: float(p[i]) for i, lab in enumerate(labels)}))
    return out
