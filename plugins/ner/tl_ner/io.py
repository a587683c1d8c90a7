"""Reading token-labelled sentences: CoNLL-style text files and JSON Lines.

CoNLL (any file that is not ``.jsonl``/``.ndjson``/``.json``; e.g. ``.conll``, ``.txt``, ``.iob``,
``.tsv``): one token per line, columns separated by whitespace, the token first and its tag in the
last column (CoNLL-2003's POS and chunk columns in between are ignored); a blank line ends a sentence;
``-DOCSTART-`` lines are skipped. JSON Lines: one object per line with a list of tokens and a list of
tags of the same length (keys ``tokens`` and ``tags`` unless ``--text-column``/``--label-column`` say
otherwise). Both may be compressed (``.gz``, ``.bz2``, ``.xz``). Tags are ``O`` or ``B-TYPE``,
``I-TYPE`` (also ``E-``/``S-`` for IOBES). A problem ends in a one-line error naming file and line.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Iterator
from pathlib import Path

from tl.data.examples import Examples
from tl.errors import DataError
from tl_ner.chunks import is_entity_tag

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
DOCSTART = "-DOCSTART-"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end), decoded line by line so that an encoding error
    names its line."""
    opener = OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path.name} line {n} is not valid UTF-8; re-save the file as UTF-8") from None
                if n == 1:
                    line = line.removeprefix("\ufeff")
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _check_tag(tag: str, path: Path, n: int) -> None:
    if tag != "O" and not is_entity_tag(tag):
        raise DataError(f"{path.name} line {n}: {tag!r} is not a BIO tag; tags are O or B-TYPE / I-TYPE "
                        "(E-TYPE / S-TYPE for IOBES)")


def read_conll(path: Path) -> list[tuple[list[str], list[str], int]]:
    """(tokens, tags, first line) per sentence."""
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def close() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append((tokens, tags, start))
        tokens, tags = [], []

    for n, line in _lines(path):
        parts = line.split()
        if not parts:
            close()
            continue
        if parts[0] == DOCSTART:
            close()
            continue
        if len(parts) < 2:
            raise DataError(f"{path.name} line {n}: expected a token and its tag separated by whitespace, "
                            f"got {line.strip()!r}")
        _check_tag(parts[-1], path, n)
        if not tokens:
            start = n
        tokens.append(parts[0])
        tags.append(parts[-1])
    close()
    return sentences


def read_jsonl(path: Path, tokens_key: str, tags_key: str) -> list[tuple[list[str], list[str], int]]:
    sentences = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path.name} line {n}: not valid JSON ({getattr(exc, 'msg', exc)}); one JSON "
                            "object per line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path.name} line {n}: expected a JSON object, got {type(obj).__name__}")
        values = []
        for key, option in ((tokens_key, "--text-column"), (tags_key, "--label-column")):
            if key not in obj:
                raise DataError(f"{path.name} line {n}: no {key!r} field (fields: {', '.join(map(str, obj))}); "
                                f"pass {option}")
            value = obj[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(f"{path.name} line {n}: {key!r} must be a list of strings"
                                + (" (tag names like B-PER, not ids)" if key == tags_key else ""))
            values.append(value)
        tokens, tags = values
        if len(tokens) != len(tags):
            raise DataError(f"{path.name} line {n}: {len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            raise DataError(f"{path.name} line {n}: no tokens")
        if any(not t.strip() for t in tokens):
            raise DataError(f"{path.name} line {n}: an empty token")
        for tag in tags:
            _check_tag(tag, path, n)
        sentences.append((tokens, tags, n))
    return sentences


def read_ner(path: str | Path, tokens_key: str = "tokens", tags_key: str = "tags") -> Examples:
    """Token-labelled sentences of a CoNLL or JSON Lines file as ``Examples`` with ``words``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} not found")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a CoNLL (.conll, .txt) or JSON Lines (.jsonl) file")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in OPENERS:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in JSONL_SUFFIXES:
        sentences = read_jsonl(p, tokens_key, tags_key)
    else:
        sentences = read_conll(p)
    if not sentences:
        raise DataError(f"{p} holds no sentences")
    return Examples(
        texts=[" ".join(tokens) for tokens, _, _ in sentences],
        labels=[tuple(tags) for _, tags, _ in sentences],
        source=str(p),
        words=[tuple(tokens) for tokens, _, _ in sentences],
    )
