"""``--max-steps N``: train exactly N optimizer steps, whatever ``--epochs`` and ``--min-steps`` say
(Hugging Face Trainer's ``max_steps``).

The run trains ``ceil(N / steps per epoch)`` epochs; the last one is cut short after the step that
reaches N (its first ``steps_in_epoch`` steps of the same data order: the cut falls on an optimizer
step, i.e. after ``grad_accum x replicas`` micro-batches of each process). The learning-rate schedule
spans the N steps, and the cut-short epoch ends with an evaluation like any other. The plan stage
sets the epochs (``max_steps_epochs``), the training stage cuts the last epoch's batch order, and
``tl.training.ledger.Ledger`` counts the same steps for every backend.
"""

from __future__ import annotations

import math


def max_steps_epochs(max_steps: int, per_epoch: int) -> int:
    """The epochs that hold ``max_steps`` optimizer steps of ``per_epoch`` each (the last possibly cut).
    0 without a step per epoch (the caller keeps its own epochs then)."""
    if per_epoch <= 0:
        return 0
    return math.ceil(max_steps / per_epoch)


def total_steps(per_epoch: int, epochs: int, max_steps: int | None) -> int:
    """The optimizer steps a run trains: ``per_epoch x epochs``, capped at ``max_steps`` when given."""
    steps = per_epoch * epochs
    return min(steps, max_steps) if max_steps else steps


def steps_in_epoch(epoch: int, per_epoch: int, total: int) -> int:
    """Optimizer steps of epoch ``epoch`` (0-based) in a run of ``total`` steps of ``per_epoch`` per
    epoch: ``per_epoch``, fewer in a last epoch cut short by ``--max-steps``, 0 after it."""
    return max(0, min(per_epoch, total - epoch * per_epoch))
