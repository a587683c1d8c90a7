"""What the step benchmarks (profile_step.py, gpu_step.py, packing.py) share: Rotten Tomatoes as tl
trains on it -- its registry and hash split, the model's tokenizer, max length 128, length-grouped
batches of 32 (``tl.data.batching.train_order``, seed 0) -- and tl's own training loop timed per step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Workload:
    registry: Any
    model_dir: Path
    labels: tuple[str, ...]
    tokenizer: Any  # tl.data.tokenization.Tokenizer
    encoded: Any  # tl.data.batching.Encoded
    order: list  # row indices of each batch, in training order

    def batches(self) -> list:
        return [self.encoded.collate(rows) for rows in self.order]


def rotten_tomatoes(model: str | Path, n: int) -> Workload:
    """The first ``n`` training examples, encoded for ``model`` (an asset name or a checkpoint directory)."""
    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry
    from tl.data.batching import train_order
    from tl.data.loading import load_splits
    from tl.data.tokenization import Tokenizer
    from tl.models.inference import encode, label_ids
    from tl.training.config import RunConfig

    registry, _ = load_registry()
    model_dir = Path(model) if Path(model).is_dir() else resolve_model(str(model), registry)[0]
    splits = load_splits(RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label",
                                   max_train_samples=n), registry)
    labels = tuple(sorted(set(splits.train.labels)))
    tokenizer = Tokenizer.from_dir(model_dir)
    encoded = encode(tokenizer, splits.train.texts, None, 128, label_ids(splits.train.labels, labels))
    return Workload(registry, model_dir, labels, tokenizer, encoded, train_order(encoded.lengths, 32, 0, 0))


def train_timed(backend, model, batches, settings, on_step=None) -> list[float]:
    """tl's ``backend.train`` over ``batches``: every step's wall time (the first from the call to
    ``train``; tl reads each step's loss, so each has finished), ``on_step(step)`` after each."""
    from tl.interfaces import TrainCallbacks

    times: list[float] = []
    clock = {"t": time.perf_counter()}

    def step_done(step: int, loss: float, rows: int) -> None:
        times.append(time.perf_counter() - clock["t"])
        if on_step:
            on_step(step)
        clock["t"] = time.perf_counter()  # the profiler's own start/stop is not the step's

    backend.train(model, lambda epoch: iter(batches), len(batches), settings, TrainCallbacks(on_step=step_done))
    return times
