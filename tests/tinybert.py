"""Tiny random BERT checkpoints in Hugging Face format, written with numpy only (no framework),
so every backend's tests can build one in a temp dir in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tl.checkpoint import save_state

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "good great fun superb lovely wonderful brilliant moving "
    "bad awful boring dull terrible weak mess tedious "
    "okay fine average mixed plain "
    "the a an film movie story plot actor acting it is was and but very quite this that of to "
    "ending scene cast director script music , . ! ?"
).split()
PIECES = ["##s", "##ly", "##ed", "##ing", "##er"]


def write_vocab(directory: Path) -> list[str]:
    vocab = SPECIALS + WORDS + PIECES + list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    return vocab


def bert_state(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
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


def make_checkpoint(directory: Path, *, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
                    prefixed: bool = False, dropout: float = 0.1) -> Path:
    """A BertModel-style checkpoint (unprefixed keys, like MiniLM) unless ``prefixed``, where keys are
    written the way transformers 5 saves a BertFor* model (``bert.`` prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory)
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocab), "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": hidden * 2,
        "hidden_act": "gelu", "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = bert_state(config, seed)
    save_state(state, directory)  # writes bert.-prefixed keys
    if not prefixed:
        from safetensors.numpy import save_file

        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


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
