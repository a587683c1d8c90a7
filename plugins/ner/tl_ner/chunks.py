"""Entity chunks and entity-level precision/recall/F1 with the semantics of seqeval's default
(conlleval-compatible, non-strict) mode, implemented here so tl-ner needs no extra dependency.

A tag is ``O`` or ``<prefix>-<type>`` with prefix ``B`` (begin), ``I`` (inside), ``E`` (end) or ``S``
(single): IOB2/BIO, IOB1 and IOBES data all chunk. Non-strict means an ``I-X`` that does not follow
a ``B-X``/``I-X`` still starts an entity (``O I-PER I-PER`` is one PER entity), and a change of type
ends one (``B-PER I-LOC`` is a PER entity then a LOC entity). An entity is correct when its type,
first and last word all match. Precision, recall and F1 are micro-averaged over entities; per-type
numbers cover every type found in the gold or the predicted tags; a ratio with a zero denominator is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

PREFIXES = ("B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type): ``B-PER`` -> (``B``, ``PER``); ``O`` -> (``O``, ``_``) as seqeval reads it."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def is_entity_tag(tag: str) -> bool:
    return len(tag) > 2 and tag[0] in PREFIXES and tag[1] == "-"


def _ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Does an entity end between the previous word and this one?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev not in ("O", ".") and prev_type != cur_type


def _starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Does an entity start at this word?"""
    if cur in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and cur in ("E", "I"):
        return True
    return cur not in ("O", ".") and prev_type != cur_type


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The (type, first word, last word) entities of one sentence's tags, in order."""
    out = []
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = split_tag(tag)
        if _ends(prev, prev_type, cur, cur_type):
            out.append((prev_type, begin, i - 1))
        if _starts(prev, prev_type, cur, cur_type):
            begin = i
        prev, prev_type = cur, cur_type
    return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def entity_scores(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1, macro F1 over types, word accuracy and per-type
    precision/recall/F1/support (support: gold entities) of sentence-aligned tag sequences."""
    true: set[tuple[int, str, int, int]] = set()
    pred: set[tuple[int, str, int, int]] = set()
    words = correct_words = 0
    for k, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {k}: {len(g)} gold tags but {len(p)} predicted")
        true.update((k, *e) for e in get_entities(g))
        pred.update((k, *e) for e in get_entities(p))
        words += len(g)
        correct_words += sum(a == b for a, b in zip(g, p, strict=True))
    hits = true & pred
    per_type = {}
    for name in sorted({e[1] for e in true} | {e[1] for e in pred}):
        t = sum(1 for e in true if e[1] == name)
        n = sum(1 for e in pred if e[1] == name)
        c = sum(1 for e in hits if e[1] == name)
        p, r = _ratio(c, n), _ratio(c, t)
        per_type[name] = {"precision": p, "recall": r, "f1": _f1(p, r), "support": t}
    precision, recall = _ratio(len(hits), len(pred)), _ratio(len(hits), len(true))
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "accuracy": _ratio(correct_words, words),
        "macro_f1": sum(v["f1"] for v in per_type.values()) / len(per_type) if per_type else 0.0,
        "entities": len(true),
        "predicted_entities": len(pred),
        "per_type": per_type,
    }
