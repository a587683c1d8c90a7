"""Out-of-memory recovery in a training step, the policy every backend follows.

A step that runs out of device memory is retried with each of its micro-batches cut into twice as
many row slices (``Batch.split``): half the rows per forward pass, twice the accumulation, so the
effective batch, the data order and the loss (summed over micro-batches, divided by the step's
targets) are unchanged. The cut stays for the rest of the run, and each doubling is one warning line.
When single rows do not fit either, the run ends with a one-line ``TLError`` (the checkpoints
written so far stay). The backend catches its framework's out-of-memory error, undoes the failed
attempt (gradients), and asks ``OomRetry.halve`` how to go on.
"""

from __future__ import annotations

from collections.abc import Callable

from tl.data.batching import Batch
from tl.errors import TLError


def split_group(group: list[Batch], split: int) -> list[Batch]:
    """A step's micro-batches, each cut into ``split`` row slices, in order (``split`` 1: as they are;
    a micro-batch of fewer rows gives one slice per row)."""
    if split <= 1:
        return group
    return [piece for b in group for piece in b.split(split)]


def out_of_memory_error(step: int, rows: int, detail: str = "") -> TLError:
    """The one-line error of a step that cannot be made to fit (``rows``: its micro-batches' rows)."""
    return TLError(f"out of memory at step {step} with micro-batches of {rows} row{'s' if rows != 1 else ''}"
                   f"{detail}: lower --max-length or --batch-size, use --precision bf16, or use a device with "
                   "more memory")


class OomRetry:
    """How finely a run's micro-batches are cut (``split``), doubled at each out-of-memory step.

    ``shards`` > 1 (several processes or replicas): no retry, the one-line error at once. A shard that
    ran out of memory would leave the collectives the others wait in (and they would not cut their
    shards the same way), so the run could hang or train on mismatched steps."""

    def __init__(self, warn: Callable[[str], None], shards: int = 1) -> None:
        self.warn = warn
        self.shards = shards
        self.split = 1

    def halve(self, step: int, group: list[Batch]) -> None:
        """Step ``step`` (1-based) ran out of memory on the micro-batches ``group`` (as the data gave
        them; this process's part of the step), cut ``split`` ways: cut them twice as finely and warn,
        or raise the one-line ``TLError`` when single rows did not fit either (or cannot retry)."""
        rows = max(len(piece) for piece in split_group(group, self.split))
        if rows <= 1:
            raise out_of_memory_error(step, rows)
        if self.shards > 1:
            raise out_of_memory_error(step, rows, " (training on several devices or processes cannot retry "
                                                  "with smaller micro-batches)")
        self.split *= 2
        fewer = max(len(piece) for piece in split_group(group, self.split))
        self.warn(f"out of memory at step {step} with micro-batches of {rows} rows: retrying with {fewer} "
                  f"row{'s' if fewer != 1 else ''} and {self.split}x the accumulation (effective batch unchanged)")
