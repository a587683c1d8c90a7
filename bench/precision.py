"""Training throughput and accuracy by precision (fp32 vs bf16), side by side in one session.

    .venv/bin/python bench/precision.py [--backends torch tensorflow] [--repeats 3] [--max-train-samples N]

Runs the quickstart recipe (MiniLM, Rotten Tomatoes, 1 epoch, seed 0) once per backend x precision x
repeat, interleaved so machine noise hits every variant alike, and writes bench/results/precision.json
and precision.md: median samples/s, the bf16/fp32 ratio and held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(backend: str, precision: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tl", "run", str(ROOT / "recipes" / "quickstart.toml"), "--backend", backend,
               "--precision", precision, "-o", f"{tmp}/run", "-q", "--json", *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["torch"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    extra = ["--max-train-samples", str(args.max_train_samples)] if args.max_train_samples else []
    runs: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        for backend in args.backends:
            for precision in ("fp32", "bf16"):
                m = one_run(backend, precision, extra)
                runs.setdefault(f"{backend}/{precision}", []).append(m)
                print(f"[{r + 1}/{args.repeats}] {backend} {precision}: {m['train_samples_per_second']} samples/s, "
                      f"accuracy {m['eval_accuracy']:.4f}", file=sys.stderr)
    summary = {}
    for key, ms in runs.items():
        summary[key] = {
            "median_samples_per_second": statistics.median(m["train_samples_per_second"] for m in ms),
            "median_train_runtime_s": statistics.median(m["train_runtime_s"] for m in ms),
            "eval_accuracy": [m["eval_accuracy"] for m in ms],
            "precision_used": ms[0]["precision"],
        }
    for backend in args.backends:
        fp32, bf16 = summary[f"{backend}/fp32"], summary[f"{backend}/bf16"]
        bf16["speedup_vs_fp32"] = round(bf16["median_samples_per_second"] / fp32["median_samples_per_second"], 3)
        bf16["accuracy_delta_points"] = round(100 * (statistics.median(bf16["eval_accuracy"])
                                                     - statistics.median(fp32["eval_accuracy"])), 2)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.processor() or platform.machine(), "repeats": args.repeats,
              "max_train_samples": args.max_train_samples, "results": summary}
    (args.out / "precision.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| backend | precision | median samples/s | bf16 / fp32 | held-out accuracy (median) |",
             "|---|---|---|---|---|"]
    for key, s in summary.items():
        backend, precision = key.split("/")
        lines.append(f"| {backend} | {precision} | {s['median_samples_per_second']:.1f} | "
                     f"{s.get('speedup_vs_fp32', 1.0):.2f} | {statistics.median(s['eval_accuracy']):.4f} |")
    (args.out / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
