"""Reference: the "classic recipe" data path, as in many BERT fine-tuning tutorials.

    python bench/reference/classic_padded.py --model DIR --train train.jsonl --eval eval.jsonl \
        --metrics-out metrics.json [--precision bf16|fp32] [--threads N] [--device cpu|cuda] [--lr 1e-4] [--seed 0]

Every text is encoded one at a time in a Python loop with the transformers tokenizer and padded to
``max_length`` (128), the tensors go into a ``TensorDataset`` and a shuffling ``DataLoader``, and a plain
torch loop trains: AdamW (weight decay 0.01, none on biases and LayerNorm), linear warm-up (10%) and
decay, clipping at 1.0, bf16 autocast, batch 32, one epoch -- the same optimizer settings as tl.

Writes metrics in tl's names: train_runtime_s (the training loop), train_samples_per_second,
first_step_unix, tokenize_runtime_s (the encoding loop), eval_accuracy, eval_loss.
"""

from __future__ import annotations

import contextlib
import time

import torch
from common import arguments, eval_metrics, label_space, read_jsonl, write_metrics
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup


def encode_one_at_a_time(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, ...]:
    ids, mask, types = [], [], []
    for text in texts:
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=max_length)
        ids.append(enc["input_ids"])
        mask.append(enc["attention_mask"])
        types.append(enc["token_type_ids"])
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(types)


def main() -> None:
    a = arguments(__doc__)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train_texts, train_labels = read_jsonl(a.train)
    eval_texts, eval_labels = read_jsonl(a.eval)
    names, label_id = label_space(train_labels)

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    t0 = time.perf_counter()
    train_x = encode_one_at_a_time(tokenizer, train_texts, a.max_length)
    tokenize_s = time.perf_counter() - t0
    eval_x = encode_one_at_a_time(tokenizer, eval_texts, a.max_length)
    train_y = torch.tensor([label_id[x] for x in train_labels])
    loader = DataLoader(TensorDataset(*train_x, train_y), batch_size=a.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(a.seed))

    device = torch.device(a.device)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(names)).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=a.lr)
    total = len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)

    def autocast():
        if a.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    first_step = None
    t0 = time.perf_counter()
    model.train()
    for batch in loader:
        ids, mask, types, y = (t.to(device, non_blocking=True) for t in batch)
        with autocast():
            loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if first_step is None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            first_step = time.time()
    if device.type == "cuda":
        torch.cuda.synchronize()
    runtime = time.perf_counter() - t0

    model.eval()
    outs = []
    with torch.inference_mode(), autocast():
        for i in range(0, len(eval_texts), 64):
            outs.append(model(input_ids=eval_x[0][i:i + 64].to(device), attention_mask=eval_x[1][i:i + 64].to(device),
                              token_type_ids=eval_x[2][i:i + 64].to(device)).logits.float())
    logits = torch.cat(outs).double().cpu().numpy()
    metrics = {
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_second": round(len(train_texts) / runtime, 2),
        "train_steps": total,
        "num_train_samples": len(train_texts),
        "num_eval_samples": len(eval_texts),
        "first_step_unix": first_step,
        "tokenize_runtime_s": round(tokenize_s, 3),
        **eval_metrics(logits, eval_labels, label_id),
        "padded_tokens": int(train_x[0].numel()),
        "real_tokens": int(train_x[1].sum()),
        "precision": a.precision,
        "threads": torch.get_num_threads(),
    }
    write_metrics(a.metrics_out, metrics)


if __name__ == "__main__":
    main()
