"""Tiny random BERT checkpoints (``tl.testing.tiny_bert``: Hugging Face format, numpy only) and
synthetic labelled texts, so every backend's tests can build both in a temp dir in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tl.testing import SPECIAL_TOKENS, tiny_bert

SPECIALS = list(SPECIAL_TOKENS)
WORDS = (
    "good great fun superb lovely wonderful brilliant moving "
    "bad awful boring dull terrible weak mess tedious "
    "okay fine average mixed plain "
    "the a an film movie story plot actor acting it is was and but very quite this that of to "
    "ending scene cast director script music , . ! ?"
).split()
PIECES = ["##s", "##ly", "##ed", "##ing", "##er"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]


def make_checkpoint(directory: Path, *, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
                    prefixed: bool = False, dropout: float = 0.1) -> Path:
    """A BertModel-style checkpoint (unprefixed keys, like MiniLM) unless ``prefixed``, where keys are
    written the way transformers 5 saves a BertFor* model (``bert.`` prefix)."""
    # "a" is both a word and a letter: kept twice, as it always was, so the weights stay the same
    return tiny_bert(directory, WORDS + PIECES + LETTERS, hidden=hidden, layers=layers, seed=seed, heads=heads,
                     dropout=dropout, prefixed=prefixed)


POSITIVE = ["good", "great", "fun", "superb", "lovely", "wonderful", "brilliant", "moving"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "mess", "tedious"]
NEUTRAL = ["okay", "fine", "average", "mixed", "plain"]
FILLER = "the a film movie story plot actor acting it is was and very quite this that ending scene cast".split()


def synthetic_rows(n: int, seed: int = 0, classes: tuple[str, ...] = ("negative", "positive")) -> list[tuple[str, str]]:
    """Short texts whose label is given by one polarity word among filler words."""
    rng = np.random.default_rng(seed)
    pools = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    rows = []
    for i in range(n):
        label = classes[i % len(classes)]
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(pools[label])))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows, text_column: str = "text", label_column: str = "label") -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([text_column, label_column])
        writer.writerows(rows)
    return path
