"""The ``ner`` task: named-entity recognition as token classification.

Data: CoNLL or JSON Lines files (``tl_ner.io``) of pre-split words with one BIO tag each. Model: a
token-classification head (``Task.head_kind``) on every backend that lists it in
``Capabilities.heads``. Labels: first word piece per word (``tl_ner.align``). Metrics: entity-level
precision/recall/F1 with seqeval's default semantics (``tl_ner.chunks``), per entity type, word
accuracy, and the loss over the scored word pieces. ``tl predict`` prints entity spans with character
offsets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tl.data.batching import Encoded
from tl.data.examples import Examples
from tl.data.tokenization import Tokenizer
from tl.errors import DataError
from tl.interfaces import HEAD_TOKEN_CLASSIFICATION, Model, Task
from tl_ner.align import encode_words
from tl_ner.chunks import PREFIXES, entity_scores, get_entities, is_entity_tag, split_tag
from tl_ner.io import read_ner


@dataclass
class Entity:
    text: str
    type: str
    start: int  # character offsets into the input text, end exclusive
    end: int
    score: float  # mean probability of the predicted tags of the entity's words


@dataclass
class Tagged:
    text: str
    entities: list[Entity]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class NERTask(Task):
    name = "ner"
    description = "Named-entity recognition (token classification): CoNLL or JSON Lines data, BIO tags, entity F1"
    head_kind = HEAD_TOKEN_CLASSIFICATION
    default_model = "minilm"
    default_dataset = ""
    defaults = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "max_length": 128, "warmup_ratio": 0.1,
                "text_column": "tokens", "label_column": "tags"}
    summary_metrics = ("f1", "precision", "recall")

    # -- data and labels -------------------------------------------------------------------------

    def read(self, path: str | Path, text_column: str, label_column: str,
             text_pair_column: str | None = None) -> Examples:
        return read_ner(path, text_column or "tokens", label_column or "tags")

    def observed_labels(self, examples: Examples) -> Iterable[str]:
        return [tag for tags in examples.labels for tag in tags]

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        """``O`` first, then by entity type, ``B`` before ``I`` (then ``E``, ``S``)."""

        def key(tag: str):
            if tag == "O":
                return (0, "", 0, tag)
            prefix, kind = split_tag(tag)
            return (1, kind, PREFIXES.index(prefix) if prefix in PREFIXES else len(PREFIXES), tag)

        return tuple(sorted(set(observed), key=key))

    def validate_labels(self, labels: tuple[str, ...], source: str) -> None:
        bad = [t for t in labels if t != "O" and not is_entity_tag(t)]
        if bad:
            raise DataError(f"{source}: {bad[0]!r} is not a BIO tag; tags are O or B-TYPE / I-TYPE")
        if not any(is_entity_tag(t) for t in labels):
            raise DataError(f"{source}: no entity tags (only {', '.join(labels) or 'none'}); nothing to learn")

    def encode(self, tokenizer: Tokenizer, examples: Examples, max_length: int,
               labels: tuple[str, ...] | None = None) -> Encoded:
        if examples.words is None:
            raise DataError(f"{examples.source or 'the data'} has no pre-split words; the ner task reads "
                            "CoNLL or JSON Lines files of tokens and tags")
        tags = None
        if labels is not None:
            index = {tag: i for i, tag in enumerate(labels)}
            tags = [np.asarray([index[t] for t in sentence], dtype=np.int64) for sentence in examples.labels]
        return encode_words(tokenizer, examples.words, max_length, tags)

    # -- evaluation ------------------------------------------------------------------------------

    @staticmethod
    def word_predictions(logits: Sequence[np.ndarray], encoded: Encoded, sentence: np.ndarray,
                         lengths: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sentence (``sentence``: each row's sentence, ``lengths``: words per sentence): the tag
        id of each word and its probability, from the word's home position; -1 and 0.0 for a word
        without tokens."""
        out = [(np.full(n, -1, dtype=np.int64), np.zeros(n)) for n in lengths]
        for r, k in enumerate(sentence.tolist()):
            pos = encoded.extra["home"][r]
            if not len(pos):
                continue
            log_p = _log_softmax(np.asarray(logits[r])[pos])
            words = encoded.extra["word_ids"][r][pos]
            best = log_p.argmax(axis=-1)
            out[k][0][words] = best
            out[k][1][words] = np.exp(log_p[np.arange(len(pos)), best])
        return out

    def evaluate(self, logits: Any, encoded: Encoded, labels: tuple[str, ...]) -> dict[str, Any]:
        """Loss (mean cross-entropy over the scored first word piece of every word), entity-level
        precision/recall/F1 (seqeval semantics), per entity type, word accuracy, macro-F1 over types,
        and the word-level tag confusion matrix. A word without tokens counts as tagged ``O``."""
        extra = encoded.extra
        _, sentence = np.unique(extra["example"], return_inverse=True)  # rows -> sentences 0..n-1
        gold: list[np.ndarray] = [None] * (int(sentence.max()) + 1 if len(sentence) else 0)  # type: ignore[list-item]
        for k, g in zip(sentence.tolist(), extra["gold"], strict=True):
            gold[k] = g
        loss_sum, scored = 0.0, 0
        for r, k in enumerate(sentence.tolist()):
            pos = extra["home"][r]
            if len(pos):
                log_p = _log_softmax(np.asarray(logits[r])[pos])
                target = gold[k][extra["word_ids"][r][pos]]
                loss_sum -= float(log_p[np.arange(len(pos)), target].sum())
                scored += len(pos)
        predicted = self.word_predictions(logits, encoded, sentence, [len(g) for g in gold])
        o = labels.index("O") if "O" in labels else 0
        predicted = [np.where(p < 0, o, p) for p, _ in predicted]  # no tokens: "O"
        names = np.asarray(labels, dtype=object)
        report = entity_scores([list(names[g]) for g in gold], [list(names[p]) for p in predicted])
        cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for g, p in zip(gold, predicted, strict=True):
            np.add.at(cm, (g, p), 1)
        return {"loss": loss_sum / scored if scored else 0.0, **report, "confusion_matrix": cm.tolist()}

    # -- prediction ------------------------------------------------------------------------------

    def predict(self, model: Model, texts: Sequence[str], max_length: int, batch_size: int = 64,
                pairs: Sequence[str] | None = None) -> list[Tagged]:
        """Entity spans per text. Words are found by the model's tokenizer (for BERT: split at
        whitespace and punctuation); long texts are windowed, so every word gets a tag."""
        from tl.models.inference import dataset_logits

        tokenizer = model.tokenizer
        spans = [tokenizer.word_spans(t) for t in texts]
        keep = [i for i, s in enumerate(spans) if s]  # texts without any word have no entities
        words = [[texts[i][a:b] for a, b in spans[i]] for i in keep]
        out = [Tagged(t, []) for t in texts]
        if not keep:
            return out
        encoded = encode_words(tokenizer, words, max_length)
        logits = dataset_logits(model, encoded, batch_size)
        labels = model.head.labels
        predicted = self.word_predictions(logits, encoded, encoded.extra["example"], [len(w) for w in words])
        for i, (tag_ids, probs) in zip(keep, predicted, strict=True):
            tags = [labels[t] if t >= 0 else "O" for t in tag_ids]
            for kind, first, last in get_entities(tags):
                start, end = spans[i][first][0], spans[i][last][1]
                score = float(np.mean(probs[first : last + 1]))
                out[i].entities.append(Entity(texts[i][start:end], kind, start, end, score))
        return out

    def format_predictions(self, predictions: Sequence[Tagged], labels: Sequence[str], as_json: bool) -> list[str]:
        if as_json:
            return [json.dumps({"text": p.text, "entities": [{**asdict(e), "score": round(e.score, 6)}
                                                             for e in p.entities]}, ensure_ascii=False)
                    for p in predictions]
        lines = []
        for p in predictions:
            lines.append(p.text if len(p.text) <= 80 else p.text[:77] + "...")
            if not p.entities:
                lines.append("  (no entities)")
            width = max((len(e.type) for e in p.entities), default=0)
            for e in p.entities:
                lines.append(f"  {e.type:<{width}}  {e.score:.3f}  {e.start}-{e.end}  {e.text}")
        return lines
