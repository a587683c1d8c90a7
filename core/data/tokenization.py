"""WordPiece tokenization shared by every backend, so token ids are identical by construction.

Backed by Hugging Face ``tokenizers`` (the Rust engine behind transformers' "fast" tokenizers; it is
not a deep-learning framework). Reads ``tokenizer.json`` when the checkpoint has one, else builds
the BERT WordPiece pipeline from ``vocab.txt`` and ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tl.errors import UsageError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class Tokenizer:
    def __init__(self, tokenizer, config: dict, source: Path | None = None) -> None:
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.config = config
        self.source = source
        #: How single texts longer than max_length are read (``tl.data.truncation``); pairs: longest-first.
        self.truncation = "head"
        self.pad_token = config.get("pad_token", "[PAD]")
        pad_id = self._tok.token_to_id(self.pad_token if isinstance(self.pad_token, str) else "[PAD]")
        self.pad_id = 0 if pad_id is None else int(pad_id)

    @classmethod
    def from_dir(cls, directory: str | Path) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        d = Path(directory)
        config = _read_json(d / "tokenizer_config.json")
        special = _read_json(d / "special_tokens_map.json")
        for key, value in special.items():
            config.setdefault(key, value["content"] if isinstance(value, dict) else value)
        try:
            if (d / "tokenizer.json").is_file():
                tok = HFTokenizer.from_file(str(d / "tokenizer.json"))
            elif (d / "vocab.txt").is_file():
                tok = _wordpiece_from_vocab(d / "vocab.txt", config)
            else:
                raise UsageError(f"{d} has no tokenizer: expected tokenizer.json or vocab.txt")
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"cannot load the tokenizer in {d}: {exc}") from None
        return cls(tok, config, d)

    def fingerprint(self) -> str:
        """A digest of everything that decides the token ids (the serialized pipeline and config)."""
        if getattr(self, "_fingerprint", None) is None:
            import hashlib

            blob = self._tok.to_str() + json.dumps(self.config, sort_keys=True, default=str)
            self._fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._fingerprint

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Token ids and token type ids per text (no padding), truncated to ``max_length``
        including the special tokens, longest-first for pairs (as transformers does)."""
        self._tok.enable_truncation(max_length=max_length, strategy="longest_first")
        try:
            inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
            encodings = self._tok.encode_batch(inputs, add_special_tokens=True)
        finally:
            self._tok.no_truncation()
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        types = [np.asarray(e.type_ids, dtype=np.int8) for e in encodings]
        return ids, types

    def encode_long(self, texts: Sequence[str], max_length: int
                    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """``encode`` of single texts under ``self.truncation``: the rows (several per text for
        ``chunks``), their token type ids, and each row's text index."""
        from tl.data.truncation import apply

        self._tok.no_truncation()
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        rows, owner = apply([np.asarray(e.ids, dtype=np.int32) for e in encodings], max_length, self.truncation)
        return rows, [np.zeros(len(r), dtype=np.int8) for r in rows], owner

    def encode_words(
        self, words: Sequence[Sequence[str]], add_special_tokens: bool = True
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Token ids, token type ids and each token's word index (-1: a special token) of
        pre-split words (token classification), not truncated: callers window long inputs."""
        self._tok.no_truncation()
        encodings = self._tok.encode_batch([list(w) for w in words], is_pretokenized=True,
                                           add_special_tokens=add_special_tokens)
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        types = [np.asarray(e.type_ids, dtype=np.int8) for e in encodings]
        word_ids = [np.asarray([-1 if w is None else w for w in e.word_ids], dtype=np.int32) for e in encodings]
        return ids, types, word_ids

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans [start, end) of the words the tokenizer's normalizer and pre-tokenizer
        find in ``text`` (for BERT: split at whitespace and punctuation); words without any token
        are left out."""
        self._tok.no_truncation()
        encoding = self._tok.encode(text, add_special_tokens=False)
        spans: dict[int, list[int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
            if word is None:
                continue
            span = spans.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        return [(s, e) for s, e in (spans[w] for w in sorted(spans))]

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and vocab.txt)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(d / "tokenizer.json"))
        if self.source is not None:
            for name in ("vocab.txt",):
                if (self.source / name).is_file():
                    shutil.copyfile(self.source / name, d / name)
        config = {k: v for k, v in self.config.items() if k != "name_or_path"}
        config.setdefault("tokenizer_class", "BertTokenizer")
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        special = {
            k: config[k]
            for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
            if isinstance(config.get(k), str)
        }
        (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _wordpiece_from_vocab(vocab: Path, config: dict):
    from tokenizers import BertWordPieceTokenizer

    lower = bool(config.get("do_lower_case", True))
    strip_accents = config.get("strip_accents")
    tok = BertWordPieceTokenizer(
        str(vocab),
        lowercase=lower,
        strip_accents=strip_accents,
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        unk_token=config.get("unk_token", "[UNK]"),
        sep_token=config.get("sep_token", "[SEP]"),
        cls_token=config.get("cls_token", "[CLS]"),
        pad_token=config.get("pad_token", "[PAD]"),
        mask_token=config.get("mask_token", "[MASK]"),
    )
    return tok._tokenizer
