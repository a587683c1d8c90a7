"""Reference: classify a file of texts with a transformers ``pipeline("text-classification")``.

    python bench/reference/hf_pipeline.py --model runs/<id>/model --input texts.txt [--batch-size B]
                                          [--precision fp32|bf16] [--threads N] [--out preds.jsonl]

Loads a model directory saved by tl (Hugging Face format) with the pipeline, reads one text per line,
and writes one JSON line (label, score) per text, like ``tl predict --json``. ``--batch-size`` is the
pipeline's (its default, 1, when omitted); texts are truncated to 128 tokens, as tl does; ``--precision
bf16`` runs the pipeline under bf16 autocast (float32 weights), as ``tl predict`` does. Prints the
in-process seconds of the pipeline call (model load excluded) as JSON on its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
from transformers import pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    texts = [ln for ln in a.input.read_text(encoding="utf-8").splitlines() if ln.strip()]
    classify = pipeline("text-classification", model=str(a.model), device=a.device)
    t0 = time.perf_counter()
    kwargs = {"batch_size": a.batch_size} if a.batch_size else {}
    autocast = (torch.autocast(a.device, dtype=torch.bfloat16) if a.precision == "bf16" else contextlib.nullcontext())
    with autocast:
        preds = classify(texts, truncation=True, max_length=a.max_length, **kwargs)
    seconds = time.perf_counter() - t0
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            for text, pred in zip(texts, preds, strict=True):
                f.write(json.dumps({"text": text, "label": pred["label"], "probability": pred["score"]}) + "\n")
    print(json.dumps({"texts": len(texts), "predict_s": round(seconds, 4), "batch_size": a.batch_size or 1,
                      "precision": a.precision}))


if __name__ == "__main__":
    main()
