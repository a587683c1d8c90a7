"""Small and imbalanced training sets: a minimum number of optimizer steps, and balanced class weights.

``--min-steps N``: a run whose epochs would make fewer than N optimizer steps trains
``ceil(N / steps per epoch)`` epochs instead (a few hundred rows at the default 3 epochs are a few
dozen steps: too few for the head to leave the majority class, README "Small and imbalanced
datasets"). Without ``--epochs`` (CLI or recipe), ``DEFAULT_MIN_STEPS`` applies; with ``--epochs``
the user's count stands unless ``--min-steps`` is given too.

``--class-weights balanced``: class c's loss is weighted ``n / (k * n_c)`` (n scored training targets,
k classes present among them, n_c of class c), scikit-learn's "balanced": the weights have mean 1 over
the training targets, so a weighted loss stays on the scale of the unweighted one and the loops keep
dividing a step's weighted sum by its targets (accumulation, out-of-memory splits and several
processes unchanged). Targets are rows, or the labelled tokens of a token head (each tag weighted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tl.data.batching import IGNORE_INDEX

#: ``--min-steps`` when the run's epochs are tl's or the task's default (not given with --epochs or
#: in a recipe). Chosen from bench/small_data.py (bench/results/small_data.md).
DEFAULT_MIN_STEPS = 200


def steps_per_epoch(rows: int, batch_size: int, grad_accum: int = 1, shards: int = 1) -> int:
    """Optimizer steps in one epoch of ``rows`` training rows, as the training stage counts them
    (``tl.data.batching.train_order`` then ``accumulation_split``): one per batch of ``batch_size``
    rows, the last (short) batch dropped when it has fewer rows than ``grad_accum x shards``."""
    if rows <= 0 or batch_size <= 0:
        return 0
    need = grad_accum * shards if grad_accum > 1 or shards > 1 else 1
    full, rest = divmod(rows, batch_size)
    return (full if batch_size >= need else 0) + (1 if rest and rest >= need else 0)


def min_steps_epochs(epochs: int, min_steps: int | None, per_epoch: int) -> int:
    """The epochs a run trains: ``epochs``, raised to ``ceil(min_steps / per_epoch)`` when that is more
    (never lowered; unchanged without ``min_steps`` or without a step per epoch)."""
    if not min_steps or per_epoch <= 0:
        return epochs
    return max(epochs, math.ceil(min_steps / per_epoch))


def label_counts(labels: np.ndarray | Sequence[np.ndarray], num_labels: int) -> np.ndarray:
    """How many training targets each label id has: rows ([rows] label ids), or the labelled tokens
    of per-token label arrays (``IGNORE_INDEX`` not counted)."""
    if isinstance(labels, np.ndarray):
        flat = labels.ravel()
    else:
        flat = np.concatenate([np.asarray(a).ravel() for a in labels]) if len(labels) else np.zeros(0, np.int64)
    flat = flat[flat != IGNORE_INDEX].astype(np.int64)
    return np.bincount(flat, minlength=num_labels)[:num_labels]


def balanced_weights(labels: np.ndarray | Sequence[np.ndarray], num_labels: int) -> tuple[float, ...]:
    """``n / (k * n_c)`` per label id (sklearn's ``compute_class_weight("balanced")`` over the classes
    present); a label without training targets gets 1.0 (it is never in the loss)."""
    counts = label_counts(labels, num_labels)
    present = counts > 0
    n, k = int(counts.sum()), int(present.sum())
    if not k:
        return tuple(1.0 for _ in range(num_labels))
    return tuple(float(n / (k * c)) if c else 1.0 for c in counts.tolist())
