"""The learning-rate schedule every backend trains with: linear warm-up, then linear decay to 0.

The torch backend runs ``linear_schedule`` in a ``LambdaLR``; the TensorFlow backend's
``LinearSchedule`` computes the same factor in graph ops. The core uses ``learning_rate`` for what it
logs (history, TensorBoard, the step hook)."""

from __future__ import annotations

from collections.abc import Callable


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The factor of the peak rate used for optimizer step ``step`` (0-based): ``(step+1)/(warmup+1)``
    during ``warmup_steps``, then falling linearly to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def learning_rate(lr: float, step: int, total_steps: int, warmup_ratio: float) -> float:
    """The peak-group learning rate that optimizer step ``step`` (1-based, as reported) used."""
    return lr * linear_schedule(total_steps, int(warmup_ratio * total_steps))(step - 1)
