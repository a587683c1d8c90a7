"""Tokenization shared by every backend, so token ids are identical by construction.

Backed by Hugging Face ``tokenizers`` (the Rust engine behind transformers' "fast" tokenizers; it is
not a deep-learning framework), for every tokenizer kind: WordPiece (BERT), byte-level BPE (RoBERTa)
and SentencePiece Unigram (XLM-R, ALBERT, DeBERTa-v3). Reads ``tokenizer.json`` (with
``tokenizer_config.json`` and ``special_tokens_map.json``) when the checkpoint has one, else builds
the BERT WordPiece pipeline from ``vocab.txt`` and ``tokenizer_config.json``; a SentencePiece model
without tokenizer.json is converted by transformers where it is installed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tl.errors import UsageError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
#: SentencePiece models of checkpoints that predate tokenizer.json (ALBERT, XLM-R, DeBERTa-v3).
SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
#: Pad tokens looked for when the config names none.
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "[pad]")


class Tokenizer:
    def __init__(self, tokenizer, config: dict, source: Path | None = None) -> None:
        self.pad_token, self.pad_id = _pad(tokenizer, config)  # before no_padding: tokenizer.json's counts
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.config = config
        self.source = source
        #: How single texts longer than max_length are read (``tl.data.truncation``); pairs: longest-first.
        self.truncation = "head"
        self._words_tok: tuple | None = None

    @classmethod
    def from_dir(cls, directory: str | Path) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        d = Path(directory)
        config = _read_json(d / "tokenizer_config.json")
        special = _read_json(d / "special_tokens_map.json")
        for key, value in special.items():
            config.setdefault(key, value)
        for key in SPECIAL_KEYS:  # AddedToken dicts -> their text
            if isinstance(config.get(key), dict):
                config[key] = config[key].get("content")
        try:
            if (d / "tokenizer.json").is_file():
                tok = HFTokenizer.from_file(str(d / "tokenizer.json"))
            elif (d / "vocab.txt").is_file():
                tok = _wordpiece_from_vocab(d / "vocab.txt", config)
            elif any((d / name).is_file() for name in SENTENCEPIECE_FILES):
                tok = _from_sentencepiece(d, config)
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
        including the special tokens, longest-first for pairs (as transformers does). The special
        tokens and type ids are the tokenizer's post-processor's (RoBERTa: ``<s> A </s></s> B </s>``)."""
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
        pre-split words (token classification), not truncated: callers window long inputs.

        Every word is read as it is in running text, after a space: byte-level BPE gives it the
        leading-space marker (``Ġ``, transformers' ``add_prefix_space=True``, which RoBERTa needs
        for ``is_split_into_words``), SentencePiece its ``▁``; ids equal transformers'
        ``tokenizer(words, is_split_into_words=True)`` with that setting."""
        swap = self._pretokenized()
        tok = self._tok
        tok.no_truncation()
        original = (tok.pre_tokenizer, tok.post_processor)
        if swap:
            tok.pre_tokenizer, tok.post_processor = swap
        try:
            encodings = tok.encode_batch([list(w) for w in words], is_pretokenized=True,
                                         add_special_tokens=add_special_tokens)
        finally:
            if swap:
                tok.pre_tokenizer, tok.post_processor = original
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        types = [np.asarray(e.type_ids, dtype=np.int8) for e in encodings]
        word_ids = [np.asarray([-1 if w is None else w for w in e.word_ids], dtype=np.int32) for e in encodings]
        return ids, types, word_ids

    def _pretokenized(self):
        """This pipeline for pre-split words: with a word-initial space marker forced on (ByteLevel
        ``add_prefix_space``, also in RobertaProcessing's offsets; Metaspace ``prepend_scheme`` other
        than ``never``), the changed components swapped in while encoding."""
        if self._words_tok is None:
            pre, post = (_json_of(self._tok.pre_tokenizer), _json_of(self._tok.post_processor))
            if _mark_words(pre) | _mark_words(post):
                stub = _stub(pre, post)
                self._words_tok = (stub.pre_tokenizer, stub.post_processor)
            else:
                self._words_tok = ()
        return self._words_tok

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans [start, end) of the words of ``text``: the words the tokenizer's
        normalizer and pre-tokenizer find, without surrounding whitespace (a byte-level BPE word's
        leading space, SentencePiece's ``▁``), split further at whitespace and punctuation as BERT
        splits them (a SentencePiece word runs from space to space: ``Paris!`` gives ``Paris`` and
        ``!``, as in pre-split NER data). Words without any token are left out."""
        from tokenizers.pre_tokenizers import BertPreTokenizer

        self._tok.no_truncation()
        encoding = self._tok.encode(text, add_special_tokens=False)
        words: dict[int, list[int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
            if word is None or end <= start:
                continue
            span = words.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        split = BertPreTokenizer()
        spans: list[tuple[int, int]] = []
        for start, end in sorted(words.values()):
            for _, (a, b) in split.pre_tokenize_str(text[start:end]):
                span = (start + a, start + b)
                if span[1] > span[0] and (not spans or span[0] >= spans[-1][1]):
                    spans.append(span)
        return spans

    def special_tokens(self, spec: dict | None = None) -> dict[str, str]:
        """The special tokens by role (``cls_token``...): the config's, else those the tokenizer's
        post-processor, model and added tokens name (``spec``: the tokenizer's JSON, if at hand)."""
        out = {k: self.config[k] for k in SPECIAL_KEYS if isinstance(self.config.get(k), str)}
        spec = json.loads(self._tok.to_str()) if spec is None else spec
        cls, sep = _template_specials(spec.get("post_processor"))
        added = [t["content"] for t in spec.get("added_tokens") or [] if t.get("special")]
        unk = _unk(spec.get("model") or {}) or next((t for t in added if "unk" in t.lower()), None)
        found = {"cls_token": cls, "sep_token": sep, "unk_token": unk,
                 "pad_token": self.pad_token if self._tok.token_to_id(self.pad_token) is not None else None,
                 "mask_token": next((t for t in added if "mask" in t.lower()), None)}
        for key, value in found.items():
            if value is not None:
                out.setdefault(key, value)
        return out

    def save(self, directory: str | Path, tokenizer_class: str | None = None) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (and the source's
        vocab.txt), so that transformers' ``AutoTokenizer.from_pretrained`` loads the same tokenizer.

        ``tokenizer_class``: the transformers class named in tokenizer_config.json (a family's
        ``tokenizer_class``); default: the source's, else ``BertTokenizer`` for WordPiece and
        ``PreTrainedTokenizerFast`` (which reads tokenizer.json as it is) for other tokenizers."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(d / "tokenizer.json"))
        if self.source is not None:
            for name in ("vocab.txt",):
                if (self.source / name).is_file():
                    shutil.copyfile(self.source / name, d / name)
        spec = json.loads(self._tok.to_str())
        config = {k: v for k, v in self.config.items() if k not in ("name_or_path", "tokenizer_file")}
        wordpiece = (spec.get("model") or {}).get("type") == "WordPiece"
        config["tokenizer_class"] = (tokenizer_class or config.get("tokenizer_class")
                                     or ("BertTokenizer" if wordpiece else "PreTrainedTokenizerFast"))
        normalizer = spec.get("normalizer") or {}
        if wordpiece and normalizer.get("type") == "BertNormalizer":
            config.setdefault("do_lower_case", bool(normalizer.get("lowercase")))
        marker = _space_marker(spec.get("pre_tokenizer"))
        if marker is not None:  # transformers' classes rebuild the pre-tokenizer from this setting
            config.setdefault("add_prefix_space", marker)
        special = self.special_tokens(spec)
        for key, value in special.items():
            config.setdefault(key, value)
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")


def _json_of(component: Any) -> Any:
    return None if component is None else json.loads(component.__getstate__())


def _mark_words(node: Any) -> bool:
    """Turn on the word-initial space marker in a component's JSON; whether anything changed."""
    changed = False
    if isinstance(node, list):
        for item in node:
            changed |= _mark_words(item)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("ByteLevel", "RobertaProcessing") and node.get("add_prefix_space") is False:
            node["add_prefix_space"], changed = True, True
        elif kind == "Metaspace" and node.get("prepend_scheme") == "never":
            node["prepend_scheme"], changed = "always", True
        for key in ("pretokenizers", "processors"):
            changed |= _mark_words(node.get(key))
    return changed


def _space_marker(node: Any) -> bool | None:
    """Whether a pre-tokenizer's ByteLevel or Metaspace (JSON) marks the first word (None: neither)."""
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel":
            return bool(node.get("add_prefix_space"))
        if node.get("type") == "Metaspace":
            return node.get("prepend_scheme", "always") != "never"
        for inner in node.get("pretokenizers") or []:
            found = _space_marker(inner)
            if found is not None:
                return found
    return None


def _stub(pre_tokenizer: Any, post_processor: Any):
    """A tokenizer holding these components (JSON), to take them from: tokenizers builds components
    from JSON only as part of a whole tokenizer."""
    from tokenizers import Tokenizer as HFTokenizer

    return HFTokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": pre_tokenizer, "post_processor": post_processor, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {}, "unk_token": "[UNK]"}}))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _pad(tok, config: dict) -> tuple[str, int]:
    """The pad token and id: the config's pad token, else tokenizer.json's padding, else a
    conventional pad token of the vocabulary, else id 0."""
    named = config.get("pad_token")
    if isinstance(named, str) and tok.token_to_id(named) is not None:
        return named, int(tok.token_to_id(named))
    if tok.padding is not None and tok.token_to_id(tok.padding["pad_token"]) is not None:
        return tok.padding["pad_token"], int(tok.padding["pad_id"])
    for name in PAD_TOKENS:
        if tok.token_to_id(name) is not None:
            return name, int(tok.token_to_id(name))
    return (named if isinstance(named, str) else "[PAD]"), 0


def _template_specials(processor: Any) -> tuple[str | None, str | None]:
    """(cls, sep) of a post-processor: the special tokens before and after a single sequence."""
    if not isinstance(processor, dict):
        return None, None
    kind = processor.get("type")
    if kind in ("RobertaProcessing", "BertProcessing"):
        return processor["cls"][0], processor["sep"][0]
    if kind == "TemplateProcessing":
        before: str | None = None
        after: str | None = None
        seen = False
        for piece in processor.get("single") or []:
            if "Sequence" in piece:
                seen = True
            elif "SpecialToken" in piece:
                name = piece["SpecialToken"]["id"]
                if not seen and before is None:
                    before = name
                elif seen and after is None:
                    after = name
        return before, after
    if kind == "Sequence":
        for inner in processor.get("processors") or []:
            found = _template_specials(inner)
            if found != (None, None):
                return found
    return None, None


def _unk(model: dict) -> str | None:
    if model.get("type") == "Unigram":
        unk_id, vocab = model.get("unk_id"), model.get("vocab") or []
        return vocab[unk_id][0] if isinstance(unk_id, int) and 0 <= unk_id < len(vocab) else None
    return model.get("unk_token")


def _from_sentencepiece(d: Path, config: dict):
    """The tokenizers pipeline of a SentencePiece-only checkpoint, converted by transformers (which
    needs the sentencepiece and protobuf packages); a one-line error where that is not possible."""
    hint = (f"{d} has a SentencePiece model but no tokenizer.json, which tl needs; make one with "
            f"transformers (pip install transformers sentencepiece protobuf): python -c \"from transformers "
            f"import AutoTokenizer; AutoTokenizer.from_pretrained('{d}').save_pretrained('{d}')\"")
    try:
        from transformers import AutoTokenizer

        converted = AutoTokenizer.from_pretrained(str(d))
        tok = converted.backend_tokenizer
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"{hint} (converting it failed: {type(exc).__name__}: {reason})") from None
    config.setdefault("tokenizer_class", type(converted).__name__)
    for key in SPECIAL_KEYS:
        value = getattr(converted, key, None)
        if value is not None:
            config.setdefault(key, str(value))
    return tok


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
