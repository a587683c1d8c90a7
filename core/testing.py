"""Helpers for tests of tl and of tl plugins.

``tiny_bert`` writes a tiny random BERT checkpoint in Hugging Face format (``config.json``,
``model.safetensors``, ``vocab.txt``, ``tokenizer_config.json``) with numpy and safetensors only, no
framework import, so a test can build one in a temp dir in milliseconds and train on it::

    from tl.testing import tiny_bert

    checkpoint = tiny_bert(tmp_path / "bert", ["good", "bad", "film"])
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["SPECIAL_TOKENS", "tiny_bert"]

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
        from tl.models.hf_checkpoint import save_state

        save_state(state, directory)
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
