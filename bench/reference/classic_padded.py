"""Reference: the "classic recipe" data path, as in many BERT fine-tuning tutorials.

    python bench/reference/classic_padded.py --model DIR --train train.jsonl --eval eval.jsonl \
        --metrics-out metrics.json [--precision bf16|fp32] [--threads N] [--lr 1e-4] [--seed 0]

Every text is encoded one at a time in a Python loop with the transformers tokenizer and padded to
``max_length`` (128), the tensors go into a ``TensorDataset`` and a shuffling ``DataLoader``, and a plain
torch loop trains: AdamW (weight decay 0.01, none on biases and LayerNorm), linear warm-up (10%) and
decay, clipping at 1.0, bf16 autocast, batch 32, one epoch -- the same optimizer settings as tl.

Writes metrics in tl's names: train_runtime_s (the training loop), train_samples_per_second,
first_step_unix, tokenize_runtime_s (the encoding loop), eval_accuracy, eval_loss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def encode_one_at_a_time(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, ...]:
    ids, mask, types = [], [], []
    for text in texts:
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=max_length)
        ids.append(enc["input_ids"])
        mask.append(enc["attention_mask"])
        types.append(enc["token_type_ids"])
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(types)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--threads", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train_texts, train_labels = read_jsonl(a.train)
    eval_texts, eval_labels = read_jsonl(a.eval)
    names = sorted(set(train_labels))
    label_id = {n: i for i, n in enumerate(names)}

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    t0 = time.perf_counter()
    train_x = encode_one_at_a_time(tokenizer, train_texts, a.max_length)
    tokenize_s = time.perf_counter() - t0
    eval_x = encode_one_at_a_time(tokenizer, eval_texts, a.max_length)
    train_y = torch.tensor([label_id[x] for x in train_labels])
    loader = DataLoader(TensorDataset(*train_x, train_y), batch_size=a.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(a.seed))

    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(names))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=a.lr)
    total = len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)

    def autocast():
        if a.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    first_step = None
    t0 = time.perf_counter()
    model.train()
    for ids, mask, types, y in loader:
        with autocast():
            loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if first_step is None:
            first_step = time.time()
    runtime = time.perf_counter() - t0

    model.eval()
    outs = []
    with torch.inference_mode(), autocast():
        for i in range(0, len(eval_texts), 64):
            outs.append(model(input_ids=eval_x[0][i:i + 64], attention_mask=eval_x[1][i:i + 64],
                              token_type_ids=eval_x[2][i:i + 64]).logits.float())
    logits = torch.cat(outs).double().numpy()
    y = np.array([label_id[x] for x in eval_labels])
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    metrics = {
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_second": round(len(train_texts) / runtime, 2),
        "train_steps": total,
        "num_train_samples": len(train_texts),
        "num_eval_samples": len(eval_texts),
        "first_step_unix": first_step,
        "tokenize_runtime_s": round(tokenize_s, 3),
        "eval_accuracy": float((logits.argmax(1) == y).mean()),
        "eval_loss": float(-logp[np.arange(len(y)), y].mean()),
        "padded_tokens": int(train_x[0].numel()),
        "real_tokens": int(train_x[1].sum()),
        "precision": a.precision,
        "threads": torch.get_num_threads(),
    }
    a.metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
