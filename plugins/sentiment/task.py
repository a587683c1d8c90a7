"""The sentiment task: sequence classification over polarity labels."""

from __future__ import annotations

from collections.abc import Iterable

from tl.interfaces import Task

#: Canonical polarity order; ids follow it so negative < neutral < positive.
POLARITY = ("negative", "neutral", "positive")
ALIASES = {"neg": "negative", "pos": "positive", "neu": "neutral"}


class SentimentTask(Task):
    name = "sentiment"
    description = "Sentiment analysis: negative/positive, optionally neutral (any 2+ label names work)"
    default_model = "minilm"
    default_dataset = "rotten_tomatoes"
    defaults = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "max_length": 128, "warmup_ratio": 0.1}

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        """Polarity names (any case, ``neg``/``neu``/``pos`` too) negative < neutral < positive, ties
        (``pos`` and ``positive``) by name; other names as any task orders them. A label column of
        free text is refused (``Task.label_names``)."""
        observed = list(observed)
        names = self.label_names(observed)

        def rank(name: str) -> int:
            canonical = ALIASES.get(name.lower(), name.lower())
            return POLARITY.index(canonical) if canonical in POLARITY else len(POLARITY)

        if names and all(rank(n) < len(POLARITY) for n in names):
            return tuple(sorted(names, key=lambda n: (rank(n), n)))
        return super().label_order(observed)
