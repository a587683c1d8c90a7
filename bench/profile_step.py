"""Where a torch training step's time goes: tl's own training loop under ``torch.profiler``.

    python bench/profile_step.py [--steps 20] [--warmup 5] [--threads 1] [--precision bf16]
                                 [--out bench/results/profile_step]

Trains MiniLM on Rotten Tomatoes with tl's real loop (``tl_torch.train.train``: tl's tokenizer,
length-grouped batches of 32, dynamic padding, AdamW, clipping, bf16 autocast), skips ``--warmup``
steps, then records ``--steps`` steps. Operators are put into groups (matmuls, attention, norms and
activations, casts, embedding, loss, optimizer, clipping, the rest), each with its share of the step
time; the matmuls' FLOP/s (from the profiler's FLOP counts) are set against the GEMM peak that
``bench/flops.py`` measures in the same process. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

#: Operator name -> group. First match wins; matched against the profiler's top-level (self) ops.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")),
    ("attention", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax")),
    ("optimizer (AdamW)", ("adam", "Optimizer.step", "aten::_foreach", "aten::lerp", "aten::addcdiv",
                           "aten::addcmul", "aten::sqrt")),
    ("gradient clipping", ("aten::norm", "aten::linalg_vector_norm", "aten::clamp", "aten::stack")),
    ("layer norm", ("layer_norm",)),
    ("gelu / dropout", ("gelu", "dropout", "aten::bernoulli", "aten::native_dropout")),
    ("casts / copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous")),
    ("embedding", ("embedding",)),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("elementwise (add, mul, ...)", ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::fill_",
                                     "aten::zero_", "aten::where", "aten::sum")),
]


def group_of(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS:
        if any(k.lower() in low for k in keys):
            return group
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile_step")
    a = p.parse_args()

    import flops
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry
    from tl.data.batching import train_order
    from tl.data.loading import load_splits
    from tl.data.tokenization import Tokenizer
    from tl.interfaces import HeadSpec, TrainCallbacks
    from tl.models.inference import encode, label_ids
    from tl.plugins.registry import get_backend
    from tl.training.config import RunConfig, TrainSettings

    torch.set_num_threads(a.threads)
    registry, _ = load_registry()
    model_dir, _ = resolve_model("minilm", registry)
    n = 32 * (a.warmup + a.steps)
    splits = load_splits(RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label",
                                   max_train_samples=n), registry)
    labels = tuple(sorted(set(splits.train.labels)))
    tokenizer = Tokenizer.from_dir(model_dir)
    encoded = encode(tokenizer, splits.train.texts, None, 128, label_ids(splits.train.labels, labels))
    order = train_order(encoded.lengths, 32, 0, 0)
    batches = [encoded.collate(rows) for rows in order]
    backend = get_backend(registry, "torch")
    model = backend.build_model(model_dir, HeadSpec("sequence_classification", labels), tokenizer,
                                init="pretrained", seed=0, info={})
    settings = TrainSettings(epochs=1, batch_size=32, lr=1e-4, weight_decay=0.01, warmup_ratio=0.1, seed=0,
                             precision=a.precision, threads=a.threads)
    step_times: list[float] = []
    clock = {"t": 0.0}

    with profile(activities=[ProfilerActivity.CPU], with_flops=True,
                 schedule=schedule(wait=0, warmup=a.warmup, active=a.steps, repeat=1)) as prof:
        def on_step(step: int, loss: float, rows: int) -> None:
            now = time.perf_counter()
            if step > a.warmup:
                step_times.append(now - clock["t"])
            clock["t"] = now
            prof.step()

        clock["t"] = time.perf_counter()
        backend.train(model, lambda epoch: iter(batches), len(batches), settings, TrainCallbacks(on_step=on_step))

    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events)  # microseconds over the recorded steps
    groups: dict[str, dict] = {}
    matmul_flops = 0.0
    for e in events:
        g = groups.setdefault(group_of(e.key), {"self_ms": 0.0, "ops": {}})
        g["self_ms"] += e.self_cpu_time_total / 1e3
        g["ops"][e.key] = round(e.self_cpu_time_total / 1e3, 2)
        if group_of(e.key) == "matmul":
            matmul_flops += float(e.flops or 0)
    for g in groups.values():
        g["share"] = g["self_ms"] * 1e3 / total_self if total_self else 0.0
        g["ops"] = dict(sorted(g["ops"].items(), key=lambda kv: -kv[1])[:6])
    matmul_s = groups.get("matmul", {}).get("self_ms", 0.0) / 1e3
    peak = flops.measure_peak("torch", a.precision, [2048, 4096], 3, a.threads)["peak_flops"]
    cfg = flops.bert_config(model_dir)
    recorded = batches[a.warmup:a.warmup + a.steps]
    model_flops = flops.train_flops(cfg, [(len(b), b.input_ids.shape[1]) for b in recorded])
    wall = sum(step_times)
    result = {
        "settings": vars(a) | {"out": str(a.out)},
        "torch": torch.__version__,
        "step_ms_median": round(statistics.median(step_times) * 1e3, 1),
        "steps_recorded": len(step_times),
        "wall_s": round(wall, 3),
        "profiled_self_s": round(total_self / 1e6, 3),
        "gemm_peak_gflops": round(peak / 1e9, 1),
        "model_flops_per_s_gflops": round(model_flops / wall / 1e9, 1),
        "mfu": round(model_flops / wall / peak, 4),
        "matmul_gflops": round(matmul_flops / matmul_s / 1e9, 1) if matmul_s else None,
        "matmul_efficiency": round(matmul_flops / matmul_s / peak, 4) if matmul_s else None,
        "mean_padded_width": round(statistics.mean(b.input_ids.shape[1] for b in recorded), 1),
        "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1]["self_ms"])),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"**Where a training step goes** — torch {torch.__version__}, MiniLM, batch 32, {a.precision}, "
             f"{a.threads} thread(s), {len(step_times)} steps after {a.warmup} warm-up (mean padded width "
             f"{result['mean_padded_width']}): median step {result['step_ms_median']} ms; MFU "
             f"{result['mfu']:.0%} of the {result['gemm_peak_gflops']} GFLOP/s GEMM peak; the matmuls "
             f"themselves run at {result['matmul_gflops']} GFLOP/s ({result['matmul_efficiency']:.0%} of peak).", "",
             "| group | share of step | self time per step | largest operators (ms over all steps) |",
             "|---|---|---|---|"]
    for name, g in result["groups"].items():
        ops = ", ".join(f"`{k}` {v:.0f}" for k, v in list(g["ops"].items())[:3])
        lines.append(f"| {name} | {g['share']:.1%} | {g['self_ms'] / max(1, len(step_times)):.1f} ms | {ops} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
