"""Tokenization throughput of one variant, in its own process; prints JSON (texts/s).

    python bench/tok_speed.py VARIANT --model DIR --texts texts.txt [--max-length 128]

Variants:
  tl           tl.data.tokenization.Tokenizer.encode (one batch call; what both backends use), unpadded ids
  hf-loop      transformers' AutoTokenizer called one text at a time, padded to max_length (the classic recipe)
  hf-batch     transformers' AutoTokenizer, one batched call, unpadded (the Trainer script)
  kerashub     KerasHub BertTextClassifierPreprocessor (BertTokenizer on vocab.txt, padded to max_length)
               mapped over tf.data batches of 32 with AUTOTUNE parallelism

Each variant tokenizes the first 256 texts once (warm-up: graph tracing, caches), then all texts timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path


def tl_encoder(model: Path, max_length: int) -> Callable[[list[str]], int]:
    from tl.data.tokenization import Tokenizer

    tok = Tokenizer.from_dir(model)

    def run(texts: list[str]) -> int:
        ids, _ = tok.encode(texts, max_length=max_length)
        return sum(len(x) for x in ids)

    return run


def hf_loop_encoder(model: Path, max_length: int) -> Callable[[list[str]], int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)

    def run(texts: list[str]) -> int:
        n = 0
        for text in texts:
            n += len(tok(text, padding="max_length", truncation=True, max_length=max_length)["input_ids"])
        return n

    return run


def hf_batch_encoder(model: Path, max_length: int) -> Callable[[list[str]], int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)

    def run(texts: list[str]) -> int:
        return sum(len(x) for x in tok(texts, truncation=True, max_length=max_length)["input_ids"])

    return run


def kerashub_encoder(model: Path, max_length: int) -> Callable[[list[str]], int]:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras_hub
    import tensorflow as tf

    pre = keras_hub.models.BertTextClassifierPreprocessor.from_preset(str(model), sequence_length=max_length)

    def run(texts: list[str]) -> int:
        ds = (tf.data.Dataset.from_tensor_slices(texts).batch(32)
              .map(pre, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
        return sum(int(tf.size(x["token_ids"])) for x in ds)

    return run


VARIANTS = {"tl": tl_encoder, "hf-loop": hf_loop_encoder, "hf-batch": hf_batch_encoder, "kerashub": kerashub_encoder}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--texts", type=Path, required=True)
    p.add_argument("--max-length", type=int, default=128)
    a = p.parse_args()
    texts = [ln for ln in a.texts.read_text(encoding="utf-8").splitlines() if ln.strip()]
    encode = VARIANTS[a.variant](a.model, a.max_length)
    encode(texts[:256])
    t0 = time.perf_counter()
    tokens = encode(texts)
    seconds = time.perf_counter() - t0
    print(json.dumps({"variant": a.variant, "texts": len(texts), "tokens": tokens, "seconds": round(seconds, 4),
                      "texts_per_second": round(len(texts) / seconds, 1)}))


if __name__ == "__main__":
    main()
