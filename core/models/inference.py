"""Running a model on raw texts and encoded sets, the same for every backend: encoding, logits in
the original row order, per-text pooling of long-text windows, and predictions with probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tl.data.batching import Encoded, eval_order, iter_batches
from tl.data.tokenization import Tokenizer
from tl.data.truncation import pool
from tl.evaluation.metrics import softmax
from tl.interfaces import Model

PREDICT_BATCH = 64


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    probabilities: dict[str, float]


def label_ids(labels: Sequence[str], space: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(space)}
    return np.asarray([index[x] for x in labels], dtype=np.int64)


def encode(tokenizer: Tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
           labels: np.ndarray | None = None) -> Encoded:
    if pairs is None and tokenizer.truncation != "head":  # tail, head+tail, chunks (tl.data.truncation)
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
