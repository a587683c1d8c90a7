"""What the reference training scripts share: their command line, the JSON Lines data that
``bench/compare.py`` exports from tl's own splits, and metrics in tl's names. No framework imports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def arguments(doc: str) -> argparse.Namespace:
    """``--model DIR --train F --eval F --metrics-out F [--precision] [--threads] [--device] [--batch-size]
    [--max-length] [--lr] [--seed]``, with the settings tl's recipe uses as defaults."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels, one ``{"text", "label"}`` object per line (split on newlines only: a text
    may hold U+2028 and the like, which ``str.splitlines`` would also split on)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def label_space(train_labels: list[str]) -> tuple[list[str], dict[str, int]]:
    """Label names in id order (sorted, as tl orders names) and name -> id."""
    names = sorted(set(train_labels))
    return names, {n: i for i, n in enumerate(names)}


def eval_metrics(logits, eval_labels: list[str], label_id: dict[str, int]) -> dict[str, float]:
    """``eval_accuracy`` and ``eval_loss`` (mean cross-entropy) of [rows, labels] logits."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.array([label_id[x] for x in eval_labels])
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return {"eval_accuracy": float((logits.argmax(1) == y).mean()),
            "eval_loss": float(-logp[np.arange(len(y)), y].mean())}


def write_metrics(path: Path, metrics: dict) -> None:
    """Write the metrics JSON and print it as the last line of output."""
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
