"""Reference: fine-tune with a plain ``transformers.Trainer`` script, as its documentation shows.

    python bench/reference/hf_trainer.py --model DIR --train train.jsonl --eval eval.jsonl \
        --metrics-out metrics.json [--precision bf16|fp32] [--threads N] [--device cpu|cuda] [--lr 1e-4] [--seed 0]

Trainer's documented defaults for dynamic padding: ``DataCollatorWithPadding`` (each batch padded to
its longest row), random batches (``train_sampling_strategy="random"``, i.e. no length grouping: a user
has to opt in), Trainer's default optimizer (fused AdamW) and linear schedule. Set like tl's recipe:
lr, weight decay 0.01 (Trainer skips biases and LayerNorm), 10% warm-up, clipping at 1.0, batch 32,
one epoch, bf16 autocast (``bf16=True``). Tokenization is one batched call of the fast tokenizer,
as ``datasets.map(batched=True)`` would do. Needs ``accelerate`` (Trainer requires it).

Writes metrics in tl's names: train_runtime_s (the ``trainer.train()`` call), train_samples_per_second,
first_step_unix, eval_accuracy, eval_loss, plus the padded and real tokens the model saw in training.
"""

from __future__ import annotations

import tempfile
import time

import torch
from common import arguments, eval_metrics, label_space, read_jsonl, write_metrics
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)


class CountingCollator:
    """``DataCollatorWithPadding``, counting the tokens (padded and real) it hands to the model."""

    def __init__(self, tokenizer) -> None:
        self.inner = DataCollatorWithPadding(tokenizer)
        self.padded = 0
        self.real = 0
        self.shapes: list[list[int]] = []  # [rows, padded width] of every batch

    def __call__(self, features: list[dict]) -> dict:
        batch = self.inner(features)
        self.padded += int(batch["input_ids"].numel())
        self.real += int(batch["attention_mask"].sum())
        self.shapes.append(list(batch["input_ids"].shape))
        return batch


class FirstStep(TrainerCallback):
    def __init__(self) -> None:
        self.unix: float | None = None

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.unix is None:
            self.unix = time.time()


def main() -> None:
    a = arguments(__doc__)
    if a.threads:
        torch.set_num_threads(a.threads)
    train_texts, train_labels = read_jsonl(a.train)
    eval_texts, eval_labels = read_jsonl(a.eval)
    names, label_id = label_space(train_labels)

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    t0 = time.perf_counter()
    train_enc = tokenizer(train_texts, truncation=True, max_length=a.max_length)
    eval_enc = tokenizer(eval_texts, truncation=True, max_length=a.max_length)
    tokenize_s = time.perf_counter() - t0

    def rows(enc, labels: list[str]) -> list[dict]:
        return [{**{k: enc[k][i] for k in enc}, "labels": label_id[labels[i]]} for i in range(len(labels))]

    set_seed(a.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label_id)
    collator = CountingCollator(tokenizer)
    first = FirstStep()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64,
            num_train_epochs=1, learning_rate=a.lr, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear",
            max_grad_norm=1.0, bf16=a.precision == "bf16", use_cpu=a.device == "cpu", seed=a.seed, save_strategy="no",
            eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows(train_enc, train_labels),
                          data_collator=collator, callbacks=[first])
        t0 = time.perf_counter()
        result = trainer.train()
        runtime = time.perf_counter() - t0
        padded, real, shapes = collator.padded, collator.real, list(collator.shapes)
        logits = trainer.predict(rows(eval_enc, eval_labels)).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    metrics = {
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_second": round(len(train_texts) / runtime, 2),
        "trainer_train_runtime_s": result.metrics.get("train_runtime"),
        "train_steps": int(result.global_step),
        "num_train_samples": len(train_texts),
        "num_eval_samples": len(eval_texts),
        "first_step_unix": first.unix,
        "tokenize_runtime_s": round(tokenize_s, 3),
        **eval_metrics(logits, eval_labels, label_id),
        "padded_tokens": padded,
        "real_tokens": real,
        "batch_shapes": shapes,
        "precision": a.precision,
        "optimizer": str(args.optim),
        "mixed_precision": str(trainer.accelerator.mixed_precision),
        "threads": torch.get_num_threads(),
    }
    write_metrics(a.metrics_out, metrics)


if __name__ == "__main__":
    main()
