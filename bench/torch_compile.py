"""Does ``torch.compile`` speed up tl's training step here? Eager against compiled, same batches.

    python bench/torch_compile.py [--steps 30] [--threads 1] [--out bench/results/torch_compile.json]

Each mode runs in its own process (``--mode eager|compile|compile-dynamic``) on tl's real batches
(MiniLM, Rotten Tomatoes, tl's tokenizer, length-grouped batches of 32 with dynamic padding) and tl's
step: bf16 autocast forward, summed cross-entropy, backward, clipping at 1.0, fused AdamW. Reports the
time to the end of the first step (compilation included) and the median step over the second half.
Dynamic padding gives a handful of distinct widths: ``compile`` recompiles per width (or marks them
dynamic after the second), ``compile-dynamic`` traces once with symbolic shapes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("eager", "compile", "compile-dynamic")


def measure(mode: str, steps: int, threads: int) -> dict:
    import torch

    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry
    from tl.data.batching import train_order
    from tl.data.loading import load_splits
    from tl.data.tokenization import Tokenizer
    from tl.interfaces import HeadSpec
    from tl.models.inference import encode, label_ids
    from tl.plugins.registry import get_backend
    from tl.training.config import RunConfig
    from tl_torch.model import summed_loss, to_inputs

    torch.set_num_threads(threads)
    registry, _ = load_registry()
    model_dir, _ = resolve_model("minilm", registry)
    splits = load_splits(RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label",
                                   max_train_samples=32 * steps), registry)
    labels = tuple(sorted(set(splits.train.labels)))
    tokenizer = Tokenizer.from_dir(model_dir)
    encoded = encode(tokenizer, splits.train.texts, None, 128, label_ids(splits.train.labels, labels))
    batches = [encoded.collate(rows) for rows in train_order(encoded.lengths, 32, 0, 0)]
    model = get_backend(registry, "torch").build_model(model_dir, HeadSpec("sequence_classification", labels),
                                                       tokenizer, init="pretrained", seed=0, info={})
    module = model.module
    module.train()
    forward = module if mode == "eager" else torch.compile(module, dynamic=True if mode == "compile-dynamic" else None)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)
    times = []
    t0 = time.perf_counter()
    for b in batches:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = forward(**to_inputs(b, torch.device("cpu"))).logits
        loss = summed_loss(logits.float(), torch.from_numpy(b.labels)) / len(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return {"mode": mode, "threads": threads, "steps": len(times), "first_step_s": round(times[0], 2),
            "total_s": round(time.perf_counter() - t0, 2),
            "median_step_ms": round(statistics.median(times[len(times) // 2:]) * 1e3, 1),
            "distinct_widths": len({b.input_ids.shape[1] for b in batches}), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", choices=MODES, help="measure one mode in this process (used internally)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "torch_compile.json")
    a = p.parse_args()
    if a.mode:
        print(json.dumps(measure(a.mode, a.steps, a.threads)))
        return
    results = []
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--steps", str(a.steps),
                              "--threads", str(a.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    eager = results[0]["median_step_ms"]
    for r in results:
        r["speed_vs_eager"] = round(eager / r["median_step_ms"], 3)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| mode | first step (compile included) | median step | speed vs eager |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['first_step_s']} s | {r['median_step_ms']} ms | {r['speed_vs_eager']}x |")


if __name__ == "__main__":
    main()
