"""Sequence packing against tl's length-grouped dynamic padding: does packing short examples into one
row pay for MiniLM on Rotten Tomatoes? The same training step (forward, summed cross-entropy, backward,
clipping at 1.0, fused AdamW) on the same 32 examples per step, interleaved, one process.

    python bench/packing.py [--steps 20] [--warmup 3] [--rounds 3] [--widths 64 128] [--threads 1]
                            [--precision fp32|bf16] [--out bench/results/packing]

Variants:

- ``padded`` (what tl does): each step's 32 examples as 32 rows, padded to the longest (rounded up to a
  multiple of 8), the batches from tl's ``train_order`` (length-grouped windows).
- ``packed W``: the same 32 examples packed first-fit-decreasing into rows of at most W tokens (the
  rows padded to the fullest, rounded up to 8); position ids restart at each example, a block-diagonal
  attention mask ([rows, 1, L, L], boolean) confines attention to each example, and each example's
  [CLS] hidden state is gathered for the pooler and classifier.

Correctness first: in eval mode, fp32, the packed logits of the first step's examples must equal the
padded ones (the largest difference is recorded; the run stops if it exceeds 1e-4). Then every
variant trains its steps once untimed (each shape's kernels built), then ``--warmup`` + ``--steps`` steps
from the same weights, ``--rounds`` times with the order rotated; the table gives the median step time, tokens computed per step (rows x width), and the
useful share (real tokens / computed). Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402


def pack(lengths: list[int], width: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows of at most ``width`` tokens, first-fit decreasing."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        j = next((r for r, f in enumerate(fill) if f + lengths[i] <= width), None)
        if j is None:
            rows.append([i])
            fill.append(lengths[i])
        else:
            rows[j].append(i)
            fill[j] += lengths[i]
    return rows


def packed_inputs(ids: list[np.ndarray], width: int, pad_id: int):
    """(input_ids, position_ids, 4-D boolean mask, CLS (row, column) of each example) for ``ids``."""
    import torch

    rows = pack([len(x) for x in ids], width)
    fullest = max(sum(len(ids[i]) for i in row) for row in rows)
    length = -(-fullest // 8) * 8
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    segment = torch.full((len(rows), length), -1, dtype=torch.long)  # -1: padding
    cls = torch.zeros((len(ids), 2), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = len(ids[i])
            input_ids[r, at:at + n] = torch.from_numpy(ids[i].astype(np.int64))
            positions[r, at:at + n] = torch.arange(n)
            segment[r, at:at + n] = i
            cls[i] = torch.tensor([r, at])
            at += n
    mask = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
    mask |= torch.eye(length, dtype=torch.bool)[None]  # padding rows attend to themselves (no empty softmax)
    return input_ids, positions, mask[:, None], cls


def packed_logits(model, inputs):
    import torch

    input_ids, positions, mask, cls = inputs
    hidden = model.bert(input_ids=input_ids, position_ids=positions, attention_mask=mask,
                        token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
    pooled = model.bert.pooler.activation(model.bert.pooler.dense(hidden[cls[:, 0], cls[:, 1]]))
    return model.classifier(model.dropout(pooled))


def padded_logits(model, batch):
    import torch

    return model(input_ids=torch.from_numpy(batch.input_ids).long(),
                 attention_mask=torch.from_numpy(batch.attention_mask).long(),
                 token_type_ids=torch.from_numpy(batch.token_type_ids).long()).logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "packing")
    a = p.parse_args()

    import contextlib

    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(a.threads)
    work = workload.rotten_tomatoes("minilm", 32 * (a.warmup + a.steps))
    model_dir, names, encoded, order = work.model_dir, work.labels, work.encoded, work.order
    padded = work.batches()
    pad_id = encoded.pad_id
    steps: dict[str, list] = {"padded": [(b, torch.from_numpy(b.labels).long()) for b in padded]}
    for w in a.widths:
        steps[f"packed {w}"] = [(packed_inputs([encoded.ids[i] for i in rows], w, pad_id),
                                 torch.from_numpy(np.asarray(encoded.labels)[rows]).long()) for rows in order]

    def fresh():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))

    def logits(model, name, x):
        return padded_logits(model, x) if name == "padded" else packed_logits(model, x)

    model = fresh().eval()
    with torch.no_grad():
        ref = logits(model, "padded", steps["padded"][0][0])
        parity = {name: float((logits(model, name, steps[name][0][0]) - ref).abs().max())
                  for name in steps if name != "padded"}
    print(f"parity (max |packed - padded| logit, eval, fp32): {parity}", file=sys.stderr)
    if max(parity.values(), default=0.0) > 1e-4:
        sys.exit(f"packed logits differ from padded ones: {parity}")

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else contextlib.nullcontext()

    def train(name: str) -> list[float]:
        model = fresh().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
        times = []
        for x, y in steps[name]:
            t = time.perf_counter()
            with autocast():
                out = logits(model, name, x)
            loss = torch.nn.functional.cross_entropy(out.float(), y, reduction="sum") / len(y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            float(loss.detach())
            times.append(time.perf_counter() - t)
        return times[a.warmup:]

    samples: dict[str, list[float]] = {name: [] for name in steps}
    variants = list(steps)
    for name in variants:  # every shape seen once, untimed: oneDNN builds its kernels per shape, and the
        train(name)        # padded variant's many widths would otherwise pay that inside the timed steps
    for r in range(a.rounds):
        k = r % len(variants)
        for name in variants[k:] + variants[:k]:
            ms = statistics.median(train(name)) * 1e3
            samples[name].append(round(ms, 2))
            print(f"[{r + 1}/{a.rounds}] {name}: {ms:.1f} ms/step", file=sys.stderr, flush=True)

    real = int(sum(encoded.lengths[i] for rows in order[a.warmup:] for i in rows))
    tokens = {"padded": sum(b.input_ids.size for b in padded[a.warmup:])}
    rows = {"padded": statistics.mean(len(b) for b in padded[a.warmup:])}
    for w in a.widths:
        xs = [x for x, _ in steps[f"packed {w}"][a.warmup:]]
        tokens[f"packed {w}"] = sum(x[0].numel() for x in xs)
        rows[f"packed {w}"] = statistics.mean(x[0].shape[0] for x in xs)
    med = {k: statistics.median(v) for k, v in samples.items()}
    result = {
        "settings": {k: v for k, v in vars(a).items() if k != "out"},
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}",
        "attention": fresh().config._attn_implementation,
        "parity_max_abs_logit_diff": parity,
        "samples_ms": samples, "median_ms": med,
        "speed_vs_padded": {k: round(med["padded"] / v, 3) for k, v in med.items()},
        "tokens_per_step": {k: round(v / a.steps, 1) for k, v in tokens.items()},
        "rows_per_step": {k: round(v, 2) for k, v in rows.items()},
        "useful_share": {k: round(real / v, 3) for k, v in tokens.items()},
        "command": " ".join(["python", *sys.argv]),
    }
    lines = [f"**Sequence packing against dynamic padding** — MiniLM, 32 examples a step, {a.precision}, "
             f"{a.threads} thread(s), median step of {a.steps} after {a.warmup}, medians of {a.rounds} interleaved "
             f"rounds; {result['versions']}; packed logits = padded within {max(parity.values()):.1e} (eval, fp32).", "",
             "| variant | ms / step | speed vs padded | rows × width tokens / step | real tokens share |",
             "|---|---|---|---|---|"]
    for k in steps:
        lines.append(f"| {k} | {med[k]:.1f} | {result['speed_vs_padded'][k]:.3f}× | "
                     f"{rows[k]:.1f} rows, {result['tokens_per_step'][k]:.0f} | {result['useful_share'][k]:.1%} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
