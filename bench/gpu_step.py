"""Where a GPU training step goes: the host issuing work against the device doing it, tl's loop against
a bare loop, bf16 against fp32 -- the same model, the same batches, one process, variants interleaved.

    python bench/gpu_step.py [--model minilm|DIR] [--init pretrained|scratch] [--steps 60] [--warmup 10]
                             [--rounds 3] [--device cuda|cpu] [--out bench/results/gpu_step]

Variants, each trained from the same initial weights on the same length-grouped batches of 32 (tl's
tokenizer and ``train_order``, Rotten Tomatoes, max length 128):

- ``tl loop``: tl's own ``backend.train`` (its ledger and callbacks, OOM retry, clipping, fused AdamW, the
  schedule, one host read of the loss per step); step time from tl's per-step callback.
- ``bare loop, loss read each step``: the same forward, loss, backward, clipping and fused AdamW written
  as five lines, reading the loss back every step as tl does.
- ``bare loop, no host read``: the same, the loss never read until the end (one synchronisation).

each in fp32 and in bf16 autocast. The bare loops time ``--steps`` steps after ``--warmup`` and divide.
Then ``torch.profiler`` (CPU and CUDA activities) records ``--profile-steps`` steps of each precision
of tl's loop: kernels launched per step, the device's busy time per step (kernels, copies and sets
summed), and the host operators with the most self time. Speed does not depend on the weights' values,
so ``--init scratch`` (the checkpoint's architecture, random weights) measures the same steps when
only the checkpoint's config and tokenizer are at hand. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402
from workload import train_timed  # noqa: E402

PRECISIONS = ("fp32", "bf16")
VARIANTS = ("tl loop", "bare loop, loss read each step", "bare loop, no host read")


def prepare(a: argparse.Namespace):
    from tl.plugins.registry import get_backend

    work = workload.rotten_tomatoes(a.model, 32 * (a.warmup + a.steps))
    backend = get_backend(work.registry, "torch")
    backend.configure(a.threads, device=a.device)
    return work.model_dir, work.labels, work.tokenizer, work.batches(), backend


def fresh_model(a, backend, model_dir, labels, tokenizer):
    from tl.interfaces import HeadSpec

    return backend.build_model(model_dir, HeadSpec("sequence_classification", labels), tokenizer, init=a.init,
                               seed=0, info={})


def settings_for(a, precision: str):
    from tl.training.config import TrainSettings

    return TrainSettings(epochs=1, batch_size=32, lr=1e-4, weight_decay=0.01, warmup_ratio=0.1, seed=0,
                         precision=precision, threads=a.threads)


def tl_loop(a, backend, model, batches, precision: str, on_step=None) -> list[float]:
    """Per-step wall seconds of tl's loop after ``--warmup`` steps."""
    return train_timed(backend, model, batches, settings_for(a, precision), on_step)[a.warmup:]


def bare_loop(a, model, batches, precision: str, read_each_step: bool) -> float:
    """Seconds per step of the same step written plainly, after ``--warmup`` steps."""
    import torch

    from tl_torch.model import summed_loss, to_inputs

    module, dev = model.module.to(model.device), model.device
    module.train()
    model.precision = precision
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.01, fused=dev.type == "cuda")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = 0.0
    for i, b in enumerate(batches):
        if i == a.warmup:
            sync()
            t0 = time.perf_counter()
        inputs = to_inputs(b, dev, model.token_types)
        labels = torch.from_numpy(b.labels).to(dev, non_blocking=True)
        with model.autocast():
            logits = module(**inputs).logits
        loss = summed_loss(logits.float(), labels) / len(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if read_each_step:
            float(loss.detach())
    sync()
    return (time.perf_counter() - t0) / (len(batches) - a.warmup)


def profile_tl(a, backend, model, batches, precision: str) -> dict:
    """Kernels per step, device busy time per step and the top host operators, over ``--profile-steps``
    steps of tl's loop recorded after ``--warmup``."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    n = a.profile_steps
    with profile(activities=activities, schedule=schedule(wait=0, warmup=a.warmup, active=n, repeat=1)) as prof:
        times = tl_loop(a, backend, model, batches[:a.warmup + n], precision, on_step=lambda s: prof.step())
    # the device timeline also holds the profiler's own ranges (ProfilerStep#, Optimizer.step#...), which
    # span whole steps: counting them made "busy" exceed the wall time in the first H200 run
    device = [e for e in prof.events() if e.device_type == DeviceType.CUDA and not e.is_user_annotation
              and not e.name.startswith(("ProfilerStep", "Optimizer."))]
    kernels = [e for e in device if "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    busy_us = sum(e.time_range.elapsed_us() for e in device)
    host = sorted(((e.key, e.self_cpu_time_total / 1e3 / n, e.count / n) for e in prof.key_averages()
                   if e.self_cpu_time_total > 0), key=lambda t: -t[1])[:12]
    wall_ms = sum(times) * 1e3 / max(1, len(times))
    return {"steps": n, "wall_ms_per_step": round(wall_ms, 2),
            "kernels_per_step": round(len(kernels) / n, 1),
            "device_busy_ms_per_step": round(busy_us / 1e3 / n, 2),
            "device_busy_share": round(busy_us / 1e3 / n / wall_ms, 4) if wall_ms else None,
            "top_host_ops": [{"op": k, "self_ms_per_step": round(ms, 3), "calls_per_step": round(c, 1)}
                             for k, ms, c in host]}


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"**A training step on {result['device_name']}** — {result['model']} ({s['init']} weights), batch 32, "
             f"{s['steps']} steps after {s['warmup']}, medians of {s['rounds']} interleaved rounds; "
             f"{result['versions']}.", "",
             "| variant | fp32 ms/step | bf16 ms/step | bf16 ÷ fp32 time |", "|---|---|---|---|"]
    for v in VARIANTS:
        f, b = (result["median_ms"].get(f"{v} | {p}") for p in PRECISIONS)
        lines.append(f"| {v} | {f:.2f} | {b:.2f} | {b / f:.2f}× |" if f and b else f"| {v} | {f} | {b} | |")
    prof = result.get("profile", {})
    if prof:
        lines += ["", "| tl loop, profiled | fp32 | bf16 |", "|---|---|---|"]
        for key, label in (("wall_ms_per_step", "wall ms / step (under the profiler)"),
                           ("kernels_per_step", "kernels launched / step"),
                           ("device_busy_ms_per_step", "device busy ms / step"),
                           ("device_busy_share", "device busy share of the step")):
            lines.append(f"| {label} | " + " | ".join(str(prof.get(p, {}).get(key, "—")) for p in PRECISIONS) + " |")
        for p in PRECISIONS:
            ops = prof.get(p, {}).get("top_host_ops", [])[:6]
            if ops:
                lines.append(f"\nTop host operators, {p} (self ms per step, calls per step): " + ", ".join(
                    f"`{o['op']}` {o['self_ms_per_step']} ({o['calls_per_step']:g})" for o in ops))
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="an asset name or a checkpoint directory")
    p.add_argument("--init", choices=("pretrained", "scratch"), default="pretrained")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "gpu_step")
    a = p.parse_args()
    import torch
    import transformers

    model_dir, labels, tokenizer, batches, backend = prepare(a)
    samples: dict[str, list[float]] = {f"{v} | {pr}": [] for v in VARIANTS for pr in PRECISIONS}
    names = list(samples)
    for r in range(a.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotated each round
            variant, precision = name.split(" | ")
            model = fresh_model(a, backend, model_dir, labels, tokenizer)
            if variant == "tl loop":
                ms = statistics.median(tl_loop(a, backend, model, batches, precision)) * 1e3
            else:
                ms = bare_loop(a, model, batches, precision, read_each_step="each step" in variant) * 1e3
            samples[name].append(round(ms, 3))
            print(f"[{r + 1}/{a.rounds}] {name}: {ms:.2f} ms/step", file=sys.stderr, flush=True)
            del model
    profile = {}
    for precision in PRECISIONS:
        try:
            profile[precision] = profile_tl(a, backend, fresh_model(a, backend, model_dir, labels, tokenizer),
                                            batches, precision)
        except Exception as exc:  # the timings above stand without it
            profile[precision] = {"error": f"{type(exc).__name__}: {exc}"}
    dev = backend.device
    result = {
        "settings": {k: v for k, v in vars(a).items() if k != "out"},
        "model": model_dir.name, "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}",
        "widths": [int(b.input_ids.shape[1]) for b in batches[a.warmup:]],
        "samples_ms": samples, "median_ms": {k: round(statistics.median(v), 3) for k, v in samples.items()},
        "profile": profile,
        "command": " ".join(["python", *sys.argv]),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    a.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
