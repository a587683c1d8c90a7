"""Dynamic padding and length-grouped batching, shared by every backend (numpy in, numpy out)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tl.data.ragged import Ragged

#: Sort within windows of this many batches, so batches hold similar lengths but stay random.
GROUP_WINDOW = 50
#: The label of a token that is not scored (special tokens, padding, a word's later word pieces), as
#: in transformers and torch's ``CrossEntropyLoss(ignore_index=-100)``.
IGNORE_INDEX = -100


@dataclass
class Batch:
    input_ids: np.ndarray  # int32 [B, L]
    attention_mask: np.ndarray  # int32 [B, L]
    token_type_ids: np.ndarray  # int32 [B, L]
    labels: np.ndarray | None  # int64 [B], or [B, L] for token labels (IGNORE_INDEX where not scored)
    index: np.ndarray  # int64 [B]: row positions in the encoded dataset

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def targets(self) -> int:
        """How many labels the loss scores: the rows, or the labelled tokens of token labels. A step's
        loss is the sum over its micro-batches' targets divided by the step's targets."""
        if self.labels is None:
            return 0
        return int(np.count_nonzero(self.labels != IGNORE_INDEX))

    def split(self, parts: int) -> list[Batch]:
        """This batch as ``parts`` consecutive row slices (as equal as the rows allow, none empty), each
        cut to its own longest row: the micro-batches an out-of-memory retry trains instead of it."""
        bounds = np.linspace(0, len(self), min(parts, len(self)) + 1).round().astype(int)
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            width = max(1, int(self.attention_mask[lo:hi].sum(axis=1).max()))
            labels = self.labels
            if labels is not None:
                labels = labels[lo:hi, :width] if labels.ndim == 2 else labels[lo:hi]
            out.append(Batch(self.input_ids[lo:hi, :width], self.attention_mask[lo:hi, :width],
                             self.token_type_ids[lo:hi, :width], labels, self.index[lo:hi]))
        return out


@dataclass
class Encoded:
    """A tokenized dataset: ragged ids per row (lists of arrays, or ``Ragged`` views of a memory-mapped
    store: ``tl.data.store``) and integer label ids, either one per row (an int64
    array) or one per token (a list of int64 arrays as long as each row's ids, ``IGNORE_INDEX`` where a
    token is not scored). ``extra`` holds a task's own per-row data (lists or arrays with one entry per
    row, e.g. each token's word index), kept aligned by ``take``."""

    ids: list[np.ndarray] | Ragged
    type_ids: list[np.ndarray] | Ragged
    labels: np.ndarray | list[np.ndarray] | None
    pad_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def token_labels(self) -> bool:
        return isinstance(self.labels, list)

    def take(self, rows: Sequence[int] | np.ndarray) -> Encoded:
        """The rows at ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Encoded(_pick(self.ids, rows), _pick(self.type_ids, rows), _pick(self.labels, rows),
                       self.pad_id, {k: _pick(v, rows) for k, v in self.extra.items()})

    @property
    def lengths(self) -> np.ndarray:
        if isinstance(self.ids, Ragged):  # a store's rows: from the offsets, without reading the ids
            return self.ids.lengths
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def collate(self, rows: Sequence[int], pad_to_multiple_of: int = 8) -> Batch:
        rows = np.asarray(rows, dtype=np.int64)
        longest = max(len(self.ids[i]) for i in rows)
        width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else longest
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)
        types = np.zeros((len(rows), width), dtype=np.int32)
        mask = np.zeros((len(rows), width), dtype=np.int32)
        for j, i in enumerate(rows):
            n = len(self.ids[i])
            ids[j, :n] = self.ids[i]
            types[j, :n] = self.type_ids[i]
            mask[j, :n] = 1
        if self.token_labels:
            labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
            for j, i in enumerate(rows):
                labels[j, : len(self.labels[i])] = self.labels[i]
        else:
            labels = None if self.labels is None else self.labels[rows].astype(np.int64)
        return Batch(ids, mask, types, labels, rows)


def _pick(values, rows: np.ndarray):
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return values[rows]
    if isinstance(values, Ragged):
        return values.take(rows)
    return [values[i] for i in rows]


def unpad(logits: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
    """Per-token logits [B, L, labels] of a batch as one [tokens, labels] array per row."""
    lengths = np.asarray(attention_mask).sum(axis=1)
    return [np.ascontiguousarray(logits[j, : int(n)]) for j, n in enumerate(lengths)]


def join_logits(outputs: Iterable[tuple[np.ndarray, np.ndarray]], per_token: bool,
                num_labels: int) -> np.ndarray | list[np.ndarray]:
    """``Model.logits``'s result from each batch's (logits, attention mask), in order: the float32
    [rows, labels] arrays concatenated, or for a token head (``per_token``) one unpadded
    [tokens, labels] array per row."""
    outs: list[np.ndarray] = []
    for logits, attention_mask in outputs:
        logits = np.asarray(logits, dtype=np.float32)
        if per_token:
            outs.extend(unpad(logits, attention_mask))
        else:
            outs.append(logits)
    if per_token:
        return outs
    if not outs:
        return np.zeros((0, num_labels), dtype=np.float32)
    return np.concatenate(outs)


def train_order(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[np.ndarray]:
    """Row indices per batch for one epoch: shuffled, then sorted by length inside windows of
    ``GROUP_WINDOW`` batches (less padding), then the batches shuffled. Deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    if group_by_length:
        window = batch_size * GROUP_WINDOW
        chunks = [perm[i : i + window] for i in range(0, len(perm), window)]
        perm = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    if group_by_length:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def accumulation_split(order: list[np.ndarray], accum: int, world: int = 1, rank: int = 0,
                       replicas: int = 1) -> list[np.ndarray]:
    """Split each (effective) batch into ``accum`` near-equal micro-batches, and each of those into
    ``world * replicas`` shards: this process (``rank``) drives ``replicas`` devices and takes shards
    ``rank * replicas`` to ``rank * replicas + replicas - 1``. One optimizer step over all processes
    and devices sees exactly the rows it would see in one process without accumulation.

    The result is flat, step by step, then replica by replica, then micro-batch by micro-batch (with
    one replica, a step's ``accum`` micro-batches are consecutive). A final batch with fewer than
    ``accum * world * replicas`` rows is dropped (at most that many examples an epoch)."""
    shards = world * replicas
    if accum <= 1 and shards <= 1:
        return order
    out: list[np.ndarray] = []
    for rows in order:
        if len(rows) < accum * shards:
            continue
        micro = [np.array_split(m, shards) if shards > 1 else [m] for m in np.array_split(rows, accum)]
        for r in range(rank * replicas, rank * replicas + replicas):
            out.extend(m[r] for m in micro)
    return out


def eval_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches sorted by length (longest first, so memory peaks at once); callers restore order
    with ``Batch.index``."""
    perm = np.argsort(-lengths, kind="stable")
    return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]


def iter_batches(encoded: Encoded, order: list[np.ndarray]) -> Iterator[Batch]:
    for rows in order:
        yield encoded.collate(rows)
