"""Sentence-pair classification: each example is two texts (``--text-column`` and
``--text-pair-column``) that the tokenizer joins as ``[CLS] first [SEP] second [SEP]`` with token
type ids 0 and 1, truncated longest-first to ``--max-length``. tl loads the pair column, tokenizes
and batches the pairs; these tasks add the column defaults, label order, label checks and metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tl.errors import DataError
from tl.interfaces import Task

#: Hyperparameter defaults of both tasks (a recipe, then CLI options, override them).
HYPERPARAMETERS = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "max_length": 128, "warmup_ratio": 0.1}


def normalise(name: str) -> str:
    """``Not-Entailment`` -> ``not_entailment``: how label names are compared (never how they are shown)."""
    return "_".join(name.strip().lower().replace("-", " ").split())


class PairTask(Task):
    """A classification task over text pairs. Subclasses set the columns, canonical labels and aliases."""

    #: Label names (normalised) in id order; data whose labels are all among them is ordered this way.
    canonical: tuple[str, ...] = ()
    aliases: dict[str, str] = {}
    #: A pair task cannot learn from single texts: tl refuses data without a second text (one line naming
    #: ``--text-pair-column``), and ``tl predict`` reads the pair column of tabular input. Each task's
    #: defaults name that column; ``observed_labels`` also checks, for tl versions before this field.
    requires_text_pair = True
    #: ``tl predict`` hands a task single strings: a pair is written ``first<TAB>second``.
    pair_separator = "\t"

    def observed_labels(self, examples, *args, **kwargs):
        """The labels of ``examples``, which must be pairs (tl versions whose Task has this step call
        it on the training and evaluation examples before anything is written)."""
        if getattr(examples, "pairs", None) is None:
            source = getattr(examples, "source", "") or "the data"
            raise DataError(f"task {self.name!r} classifies text pairs, but {source} has no second text; "
                            f"pass --text-pair-column (default: {self.defaults.get('text_pair_column')})")
        base = getattr(super(), "observed_labels", None)
        return base(examples, *args, **kwargs) if base is not None else examples.labels

    def predict(self, model, texts: Sequence[str], max_length: int, batch_size: int = 64,
                pairs: Sequence[str] | None = None) -> list:
        """Predictions for pairs; without ``pairs`` each text is ``first<TAB>second`` (as ``tl predict``
        passes them), and the predictions show the text as given."""
        from tl.errors import UsageError
        from tl.models.inference import predict

        if pairs is not None:
            return predict(model, texts, max_length=max_length, pairs=pairs, batch_size=batch_size)
        split = [t.split(self.pair_separator, 1) for t in texts]
        bad = [i for i, parts in enumerate(split) if len(parts) != 2 or not all(p.strip() for p in parts)]
        if bad:
            raise UsageError(f"task {self.name!r} classifies text pairs: give each input as FIRST<TAB>SECOND "
                             f"(input {bad[0] + 1} has no tab), e.g. one pair per line of a .txt --input file")
        preds = predict(model, [a for a, _ in split], max_length=max_length, pairs=[b for _, b in split],
                        batch_size=batch_size)
        return [dataclasses.replace(p, text=t) for p, t in zip(preds, texts, strict=True)]

    def canonical_name(self, name: str) -> str | None:
        key = normalise(name)
        key = self.aliases.get(key, key)
        return key if key in self.canonical else None

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        observed = list(observed)
        names = set(observed)
        canon = {n: self.canonical_name(n) for n in names}
        if names and all(canon.values()) and len(set(canon.values())) == len(names):
            return tuple(sorted(names, key=lambda n: (self.canonical.index(canon[n]), n)))
        return super().label_order(observed)


class NLITask(PairTask):
    name = "nli"
    description = ("Natural language inference over premise/hypothesis pairs: entailment, neutral, "
                   "contradiction (or entailment/not_entailment)")
    default_model = "minilm"
    default_dataset = ""
    defaults = {"text_column": "premise", "text_pair_column": "hypothesis", **HYPERPARAMETERS}
    #: SNLI/MNLI ids: 0 entailment, 1 neutral, 2 contradiction; RTE/QNLI: 0 entailment, 1 not_entailment.
    canonical = ("entailment", "neutral", "contradiction", "not_entailment")
    aliases = {
        "entail": "entailment", "entails": "entailment", "entailed": "entailment",
        "contradict": "contradiction", "contradicts": "contradiction", "contradictory": "contradiction",
        "non_entailment": "not_entailment", "no_entailment": "not_entailment",
    }
    #: Labels SNLI and MNLI use for examples without a gold label.
    no_gold = ("-1", "-")

    def validate_labels(self, labels: tuple[str, ...], source: str) -> None:
        bad = [lab for lab in labels if lab in self.no_gold]
        if bad:
            raise DataError(f"{source}: label {bad[0]!r} marks an example without a gold label (SNLI/MNLI); "
                            "drop those rows before training")
        super().validate_labels(labels, source)


class ParaphraseTask(PairTask):
    name = "paraphrase"
    description = "Paraphrase / duplicate detection over sentence pairs (binary: not_paraphrase, paraphrase)"
    default_model = "minilm"
    default_dataset = ""
    defaults = {"text_column": "sentence1", "text_pair_column": "sentence2", **HYPERPARAMETERS}
    #: Negative first, so the positive class has id 1 (as MRPC, QQP and PAWS number them).
    negative = ("not_paraphrase", "not_equivalent", "not_duplicate", "different", "no", "false")
    positive = ("paraphrase", "equivalent", "duplicate", "same", "yes", "true")
    canonical = negative + positive
    aliases = {"non_paraphrase": "not_paraphrase", "nonparaphrase": "not_paraphrase",
               "non_duplicate": "not_duplicate", "paraphrases": "paraphrase", "duplicates": "duplicate"}

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        observed = list(observed)
        names = set(observed)
        canon = {n: self.canonical_name(n) for n in names}
        if names and all(canon.values()):
            return tuple(sorted(names, key=lambda n: (canon[n] in self.positive, normalise(n), n)))
        return super().label_order(observed)

    def validate_labels(self, labels: tuple[str, ...], source: str) -> None:
        super().validate_labels(labels, source)
        if len(labels) != 2:
            raise DataError(f"{source}: paraphrase detection is binary, but the label column has {len(labels)} "
                            f"classes ({', '.join(labels)}); use --task nli for pairs with more classes")

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """The classification report plus ``f1``: F1 of the positive class (id 1), as GLUE reports
        MRPC and QQP."""
        out = super().metrics(y_true, y_pred, labels)
        positive = labels[-1]
        out["f1"] = out["per_class"][positive]["f1"]
        out["positive_label"] = positive
        return out
