"""Labelled examples in memory (``Examples``, ``Splits``), the fixed hash split into train and
evaluation, and fixed random subsets. Reading them from files is ``tl.data.tables``.
Labels may be strings or integers; they are kept as strings and shown to users as written."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tl.errors import DataError

#: Share of a single dataset held out for evaluation. The split is a hash of the text, so it is
#: fixed (it does not move with --seed), identical duplicates land on the same side, and it does
#: not depend on row order.
EVAL_FRACTION = 0.2

@dataclass(frozen=True)
class Examples:
    """Parallel lists of raw texts (optionally pairs) and string labels.

    Token-level tasks also set ``words``: each example's words as given (e.g. the tokens of a CoNLL
    sentence), with ``texts`` the words joined by spaces and each label a tuple of one tag per word."""

    texts: list[str]
    labels: list[Any]
    pairs: list[str] | None = None
    source: str = ""
    words: list[tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: Sequence[int]) -> Examples:
        return Examples(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            None if self.pairs is None else [self.pairs[i] for i in indices],
            self.source,
            None if self.words is None else [self.words[i] for i in indices],
        )

    def __add__(self, other: Examples) -> Examples:
        """The rows of both (a separate evaluation file joins the training data this way)."""

        def join(a, b):
            return None if a is None else a + (b or [])

        return Examples(self.texts + other.texts, self.labels + other.labels, join(self.pairs, other.pairs),
                        self.source, join(self.words, other.words))

    def head(self, n: int | None) -> Examples:
        return self if n is None or n >= len(self) else self.take(range(n))


@dataclass(frozen=True)
class Splits:
    train: Examples
    eval: Examples
    #: How the eval split was made, recorded in config.json.
    split: str = ""


#: Prefix of the text hashed for the validation split (``validation_split``), so that it is not the
#: evaluation split's hash: the training split holds only rows whose unsalted hash is >= EVAL_FRACTION.
VALIDATION_SALT = "tl-validation\x1f"


def is_eval_row(text: str, fraction: float = EVAL_FRACTION, salt: str = "") -> bool:
    digest = hashlib.sha256((salt + text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _held_out(examples: Examples, fraction: float, salt: str = "") -> tuple[list[int], list[int]]:
    """Indices of the rows kept and held out by the (salted) hash of their text (and pair)."""
    train_idx, eval_idx = [], []
    for i, text in enumerate(examples.texts):
        key = text if examples.pairs is None else text + "\x1f" + examples.pairs[i]
        (eval_idx if is_eval_row(key, fraction, salt) else train_idx).append(i)
    return train_idx, eval_idx


def validation_split(train: Examples, fraction: float) -> Splits:
    """Hold out ``fraction`` of the training rows for validation by a salted hash of their text (fixed
    across seeds, disjoint from the evaluation split, which the result does not hold)."""
    train_idx, eval_idx = _held_out(train, fraction, VALIDATION_SALT)
    if not train_idx or not eval_idx:
        raise DataError(
            f"{len(train)} training rows are too few to hold out {fraction:.0%} for validation; "
            "use more training data (--max-train-samples) or another --validation-split"
        )
    return Splits(train.take(train_idx), train.take(eval_idx),
                  split=f"validation: salted sha256(text) held-out {fraction:.0%} of the training split "
                        "(evaluation split unused)")


def hash_split(examples: Examples, fraction: float = EVAL_FRACTION) -> Splits:
    """Hold out ``fraction`` of the rows by a hash of their text (fixed across seeds)."""
    train_idx, eval_idx = _held_out(examples, fraction)
    if not train_idx or not eval_idx:
        raise DataError(
            f"{examples.source} has too few rows ({len(examples)}) to hold out {fraction:.0%} for evaluation; "
            "pass --eval-dataset"
        )
    return Splits(
        examples.take(train_idx), examples.take(eval_idx), split=f"sha256(text) held-out {fraction:.0%}"
    )


#: Subsets taken with --max-*-samples are a fixed random sample (not the first rows, which may be
#: sorted by label), and they do not move with --seed.
SUBSET_SEED = 1234


def subset(examples: Examples, n: int | None) -> Examples:
    if n is None or n >= len(examples):
        return examples
    rng = np.random.default_rng(SUBSET_SEED)
    return examples.take(np.sort(rng.permutation(len(examples))[:n]).tolist())
