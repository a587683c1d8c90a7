"""Helpers for tests of tl and of tl plugins.

``tiny_bert`` writes a tiny random BERT checkpoint in Hugging Face format (``config.json``,
``model.safetensors``, ``vocab.txt``, ``tokenizer_config.json``) with numpy and safetensors only, no
framework import, so a test can build one in a temp dir in milliseconds and train on it::

    from tl.testing import tiny_bert

    checkpoint = tiny_bert(tmp_path / "bert", ["good", "bad", "film"])

``tiny_tokenizer`` writes a small tokenizer of any kind (WordPiece, byte-level BPE, SentencePiece
Unigram) with the ``tokenizers`` library, in the files and layout of the real checkpoints of each
family, and ``tiny_checkpoint`` a tiny random checkpoint of any built-in family with it (written by
transformers: needs torch)::

    from tl.testing import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "roberta", "roberta", ["good", "bad", "film"])
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SPECIAL_TOKENS", "TOKENIZER_STYLES", "tiny_bert", "tiny_checkpoint", "tiny_tokenizer"]

#: The special tokens every vocab.txt written here starts with, in id order ([PAD] is 0).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_POSITIONS = 64


def tiny_bert(directory: str | Path, words: Iterable[str], hidden: int = 32, layers: int = 1, seed: int = 0, *,
              heads: int = 2, dropout: float = 0.1, prefixed: bool = True) -> Path:
    """Write a random BERT with ``layers`` layers of width ``hidden`` into ``directory`` and return it.

    ``vocab.txt`` holds ``SPECIAL_TOKENS`` then ``words`` in the order given (BERT vocabulary entries:
    lower-case words, ``##`` word pieces; give each once). The weights depend only on the sizes and
    ``seed``. Keys are written the way transformers saves a ``BertFor*`` model (``bert.`` prefix)
    unless ``prefixed`` is false, where they are a bare ``BertModel``'s (like MiniLM's); tl reads both.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = [*SPECIAL_TOKENS, *words]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": MAX_POSITIONS}))
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocab), "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": hidden * 2,
        "hidden_act": "gelu", "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": MAX_POSITIONS, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = _bert_state(config, seed)
    if prefixed:
        from tl.models.families import builtin
        from tl.models.hf_checkpoint import save_state

        save_state(state, directory, builtin("bert"))
    else:
        from safetensors.numpy import save_file

        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def _bert_state(config: dict, seed: int) -> dict[str, np.ndarray]:
    """Random weights named as in a ``BertModel`` (no prefix), drawn in a fixed order from ``seed``."""
    rng = np.random.default_rng(seed)
    h, inter, std = config["hidden_size"], config["intermediate_size"], config["initializer_range"]

    def w(*shape):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def zeros(*shape):
        return np.zeros(shape, np.float32)

    s = {
        "embeddings.word_embeddings.weight": w(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": w(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": w(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "embeddings.LayerNorm.bias": zeros(h),
        "pooler.dense.weight": w(h, h),
        "pooler.dense.bias": zeros(h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            s[p + f"attention.self.{name}.weight"] = w(h, h)
            s[p + f"attention.self.{name}.bias"] = zeros(h)
        s[p + "attention.output.dense.weight"] = w(h, h)
        s[p + "attention.output.dense.bias"] = zeros(h)
        s[p + "attention.output.LayerNorm.weight"] = np.ones(h, np.float32)
        s[p + "attention.output.LayerNorm.bias"] = zeros(h)
        s[p + "intermediate.dense.weight"] = w(inter, h)
        s[p + "intermediate.dense.bias"] = zeros(inter)
        s[p + "output.dense.weight"] = w(h, inter)
        s[p + "output.dense.bias"] = zeros(h)
        s[p + "output.LayerNorm.weight"] = np.ones(h, np.float32)
        s[p + "output.LayerNorm.bias"] = zeros(h)
    return s


# tiny tokenizers and checkpoints of every family ------------------------------------------------

_ROBERTA_ROLES = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                  "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
_BRACKET_ROLES = {"bos_token": "[CLS]", "eos_token": "[SEP]", "sep_token": "[SEP]", "cls_token": "[CLS]",
                  "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"}

#: ``tiny_tokenizer`` styles: the tokenizer kind, transformers' class, the special tokens before the
#: learned vocabulary (ids from 0) and after it, each special token's role, and extra
#: tokenizer_config.json settings; laid out as in the real checkpoints of the family.
TOKENIZER_STYLES: dict[str, dict[str, Any]] = {
    "bert": {"kind": "wordpiece", "class": "BertTokenizer", "head": SPECIAL_TOKENS, "tail": (),
             "roles": {k: v for k, v in _BRACKET_ROLES.items() if k not in ("bos_token", "eos_token")},
             "config": {"tokenize_chinese_chars": True, "strip_accents": None}},
    "mpnet": {"kind": "wordpiece", "class": "MPNetTokenizer", "head": ("<s>", "<pad>", "</s>", "[UNK]"),
              "tail": ("<mask>",), "roles": {**_ROBERTA_ROLES, "unk_token": "[UNK]"},
              "config": {"tokenize_chinese_chars": True, "strip_accents": None}},
    "roberta": {"kind": "bpe", "class": "RobertaTokenizer",
                "head": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "tail": (), "roles": _ROBERTA_ROLES,
                "config": {"add_prefix_space": False, "trim_offsets": True}},
    "xlm-roberta": {"kind": "unigram", "class": "XLMRobertaTokenizer",
                    "head": ("<s>", "<pad>", "</s>", "<unk>"), "tail": ("<mask>",), "roles": _ROBERTA_ROLES,
                    "config": {"add_prefix_space": True}},
    "albert": {"kind": "unigram", "class": "AlbertTokenizer",
               "head": ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"), "tail": (),
               "roles": {**_BRACKET_ROLES, "unk_token": "<unk>", "pad_token": "<pad>"},
               "config": {"keep_accents": False, "add_prefix_space": True}},
    "deberta-v2": {"kind": "unigram", "class": "DebertaV2Tokenizer",
                   "head": ("[PAD]", "[CLS]", "[SEP]", "[UNK]"), "tail": ("[MASK]",), "roles": _BRACKET_ROLES,
                   "config": {"split_by_punct": False, "add_prefix_space": True}},
}
_DEFAULT_STYLE = {"wordpiece": "bert", "bpe": "roberta", "unigram": "xlm-roberta"}
#: Whether a style lower-cases by default (None: transformers' class cannot lower-case).
_LOWERCASE = {"bert": True, "mpnet": True, "roberta": None, "xlm-roberta": None, "albert": True,
              "deberta-v2": False}


def tiny_tokenizer(directory: str | Path, kind: str, words: Iterable[str], *, style: str | None = None,
                   lowercase: bool | None = None, tokenizer_class: str | None = None) -> int:
    """Write a small tokenizer of ``kind`` (``wordpiece``, ``bpe``, ``unigram``) into ``directory``
    (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``; ``vocab.txt`` for
    WordPiece) and return its vocabulary size, special tokens included.

    ``style`` (``TOKENIZER_STYLES``) picks the family's pipeline and special tokens, as transformers'
    class for it builds them (so ``AutoTokenizer.from_pretrained`` gives the same ids): WordPiece
    ``bert`` (default) or ``mpnet``; BPE ``roberta`` (byte-level, ``<s> <pad> </s> <unk> <mask>`` ids
    0..4); Unigram ``xlm-roberta`` (default; ``<s> <pad> </s> <unk>``, ``<mask>`` last), ``albert``
    (``<pad> <unk> [CLS] [SEP] [MASK]``) or ``deberta-v2`` (``[PAD] [CLS] [SEP] [UNK]``, ``[MASK]``
    last). WordPiece: ``words`` are the vocabulary (``##`` pieces included), in the order given,
    after the leading special tokens (repeats dropped), like ``tiny_bert``'s vocab.txt. BPE: merges
    learned from ``words`` (two per distinct word, each read after a space) over the 256 byte
    symbols, so most words take several pieces. Unigram: a vocabulary built from ``words`` without
    EM training (deterministic): every character, each word of up to 3 letters whole (with its
    ``▁``), longer ones in pieces of 3 characters, scored by log frequency; other characters are
    ``unk``. ``lowercase``: the style's default (``bert``, ``mpnet``, ``albert``: lower-case);
    ``tokenizer_class``: the class named in tokenizer_config.json (default: the style's).
    Deterministic; takes milliseconds.
    """
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer

    style = style or _DEFAULT_STYLE.get(kind, "")
    spec = TOKENIZER_STYLES.get(style)
    if spec is None or spec["kind"] != kind:
        styles = [s for s, v in TOKENIZER_STYLES.items() if v["kind"] == kind]
        raise ValueError(f"tokenizer kind {kind!r} with style {style!r}: kinds {sorted(_DEFAULT_STYLE)}, "
                         f"styles of {kind!r}: {styles}")
    lower = _LOWERCASE[style] if lowercase is None else lowercase
    if lower and _LOWERCASE[style] is None:
        raise ValueError(f"the {style} tokenizer does not lower-case (transformers' class cannot)")
    lower = bool(lower)
    words = list(words)
    head, tail, roles = list(spec["head"]), list(spec["tail"]), spec["roles"]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    if kind == "wordpiece":
        vocab = list(dict.fromkeys([*head, *words, *tail]))
        tok = HFTokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=roles["unk_token"],
                                           max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    elif kind == "bpe":
        from tokenizers.trainers import BpeTrainer

        tok = HFTokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = BpeTrainer(vocab_size=len(head) + len(alphabet) + 2 * len(set(words)), show_progress=False,
                             special_tokens=head, initial_alphabet=alphabet)
        tok.train_from_iterator([" " + " ".join(words)], trainer)  # every word after a space: "Ġword"
    else:
        tok = HFTokenizer(models.Unigram())  # pipeline first: the vocabulary is of normalized pieces
        steps = []
        if style == "albert":
            steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                     normalizers.StripAccents()]
            steps += [normalizers.Lowercase()] if lower else []
        elif style == "deberta-v2":
            steps = [normalizers.Lowercase()] if lower else []
            steps += [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                      normalizers.Strip(left=False, right=True)]
        if steps:
            tok.normalizer = normalizers.Sequence(steps)
        metaspace = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        split = [] if style == "deberta-v2" else [pre_tokenizers.WhitespaceSplit()]
        tok.pre_tokenizer = pre_tokenizers.Sequence([*split, metaspace])
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
        pieces = _unigram_pieces(tok, words, set(head) | set(tail))
        vocab = [(t, 0.0) for t in head] + pieces + [(t, 0.0) for t in tail]
        tok.model = models.Unigram(vocab, unk_id=[t for t, _ in vocab].index(roles["unk_token"]),
                                   byte_fallback=False)

    ids = {t: tok.token_to_id(t) for t in (*head, *tail)}
    cls, sep = roles["cls_token"], roles["sep_token"]
    if style in ("roberta", "mpnet"):
        tok.post_processor = processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]), trim_offsets=True,
                                                          add_prefix_space=False)
    elif style == "xlm-roberta":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])])
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])])
    mask = roles["mask_token"]
    # RoBERTa's <mask> takes the space before it
    tok.add_special_tokens([AddedToken(t, lstrip=t == mask == "<mask>", rstrip=False, normalized=False,
                                       special=True) for t in (*head, *tail)])
    tok.save(str(directory / "tokenizer.json"))
    config: dict[str, Any] = {"tokenizer_class": tokenizer_class or spec["class"], **roles,
                              "model_max_length": MAX_POSITIONS, **spec["config"]}
    if _LOWERCASE[style] is not None:
        config["do_lower_case"] = lower
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
    return tok.get_vocab_size(with_added_tokens=True)


def _unigram_pieces(tok: Any, words: list[str], special: set[str]) -> list[tuple[str, float]]:
    """Scored Unigram pieces of ``words`` as ``tok``'s normalizer and pre-tokenizer see them: every
    character (scored far below any piece, so that pieces win), and each word's pieces (the word
    whole up to 3 letters after its ``▁``, else cut into 3 characters), scored by log frequency."""
    counts: Counter[str] = Counter()
    chars: set[str] = {"\u2581"}
    for word in words:
        text = tok.normalizer.normalize_str(word) if tok.normalizer is not None else word
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            chars.update(piece)
            counts.update([piece] if len(piece) <= 4 else [piece[i:i + 3] for i in range(0, len(piece), 3)])
    total = sum(counts.values()) + len(chars)
    scored = {p: math.log(n / total) for p, n in counts.items() if len(p) > 1}
    floor = min(scored.values(), default=0.0) - 10.0
    scored.update({c: floor for c in chars if c not in scored})
    return sorted(((p, s) for p, s in scored.items() if p not in special), key=lambda x: (-x[1], x[0]))


def _tiny_config(model_type: str, hidden: int, layers: int, heads: int) -> dict[str, Any]:
    """Working tiny settings of each built-in model_type (as in tools/family_check.py)."""
    common = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": hidden * 2}
    return {
        "distilbert": {"dim": hidden, "n_layers": layers, "n_heads": heads, "hidden_dim": hidden * 2},
        "roberta": {**common, "type_vocab_size": 1},
        "xlm-roberta": {**common, "type_vocab_size": 1},
        "albert": {**common, "embedding_size": max(hidden // 2, 1)},
        "electra": {**common, "embedding_size": max(hidden // 2, 1)},
        "deberta-v2": {**common, "relative_attention": True, "position_buckets": 16,
                       "max_relative_positions": -1, "pos_att_type": ["p2c", "c2p"],
                       "position_biased_input": False, "type_vocab_size": 0, "norm_rel_ebd": "layer_norm",
                       "share_att_key": True},
        "mpnet": {**common, "relative_attention_num_buckets": 32},
    }.get(model_type, common)


#: Families whose position ids start after the padding id (padding_idx + 1 + position).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "mpnet")
#: The tiny_tokenizer style of each built-in model_type (else the default style of its tokenizer kind).
_MODEL_STYLE = {"mpnet": "mpnet", "roberta": "roberta", "xlm-roberta": "xlm-roberta", "albert": "albert",
                "deberta-v2": "deberta-v2"}


def tiny_checkpoint(directory: str | Path, model_type: str, words: Iterable[str], *, hidden: int = 32,
                    layers: int = 2, heads: int = 2, seed: int = 0, **config_overrides: Any) -> Path:
    """Write a random base model of ``model_type`` (any built-in family: ``bert``, ``roberta``,
    ``deberta-v2``...) with ``layers`` layers of width ``hidden`` into ``directory`` and return it.

    The tokenizer is ``tiny_tokenizer``'s of the family's kind and style, from ``words`` (WordPiece:
    the vocabulary, as for ``tiny_bert``; BPE and Unigram: the words the vocabulary is learned from).
    ``config.json`` and ``model.safetensors`` are transformers' own (``AutoModel.from_config``, a bare
    base model like real pretrained checkpoints; needs torch and transformers): ``vocab_size`` the
    tokenizer's, 64 positions (+2 where positions start after the padding id), the pad, bos and eos
    ids of the tokenizer; ``config_overrides`` go to the config last. The weights depend only on the
    sizes and ``seed``.
    """
    import torch
    import transformers

    from tl.models.families import family_for

    family = family_for({"model_type": model_type}, "tiny_checkpoint")
    directory = Path(directory)
    style = _MODEL_STYLE.get(model_type, _DEFAULT_STYLE.get(family.tokenizer, ""))
    vocab_size = tiny_tokenizer(directory, family.tokenizer, words, style=style,
                                tokenizer_class=family.tokenizer_class)
    roles = TOKENIZER_STYLES[style]["roles"]
    vocab = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    ids = {t["content"]: t["id"] for t in vocab["added_tokens"]}
    positions = MAX_POSITIONS + (2 if model_type in _OFFSET_POSITIONS else 0)
    settings = {**_tiny_config(model_type, hidden, layers, heads), "vocab_size": vocab_size,
                "max_position_embeddings": positions, "pad_token_id": ids[roles["pad_token"]],
                "bos_token_id": ids[roles.get("bos_token", roles["cls_token"])],
                "eos_token_id": ids[roles.get("eos_token", roles["sep_token"])], **config_overrides}
    config = transformers.AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    quiet = transformers.utils.logging.is_progress_bar_enabled()
    if quiet:  # no "Writing model shards" bar in test output
        transformers.utils.logging.disable_progress_bar()
    try:
        model.save_pretrained(directory)
    finally:
        if quiet:
            transformers.utils.logging.enable_progress_bar()
    return directory
