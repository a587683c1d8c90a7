"""Evaluating a model over an encoded set: the task's loss and metrics, one process or sharded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tl.data.batching import Encoded
from tl.interfaces import Model, Task
from tl.models.inference import dataset_logits
from tl.training.distributed import World


def evaluate(model: Model, encoded: Encoded, labels: tuple[str, ...], task: Task, batch_size: int,
             gather: Callable[[np.ndarray], list[np.ndarray]] | None = None, world: World | None = None
             ) -> dict[str, Any]:
    """Loss and the task's metrics over ``encoded``. With ``gather`` in a multi-process ``world``,
    each process computes the logits of every ``world.size``-th row from its rank on, and the
    gathered shards make the whole set's logits on every process (the same metrics everywhere)."""
    batch = max(batch_size, 64)
    if gather is None or world is None or world.size == 1:
        logits = dataset_logits(model, encoded, batch_size=batch)
    else:
        mine = dataset_logits(model, encoded.take(np.arange(world.rank, len(encoded), world.size)), batch_size=batch)
        parts = gather(mine)
        if isinstance(mine, list):  # token heads: one array per row
            logits = [None] * len(encoded)
            for rank, part in enumerate(parts):
                logits[rank::world.size] = part
        else:
            logits = np.empty((len(encoded), mine.shape[1]), dtype=mine.dtype)
            for rank, part in enumerate(parts):
                logits[rank::world.size] = part
    report = task.evaluate(logits, encoded, labels)
    return {f"eval_{k}": v for k, v in report.items()}
