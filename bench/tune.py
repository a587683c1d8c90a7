"""What `tl tune` buys over the quick start (GitHub issue 16): 12 trials on Rotten Tomatoes with MiniLM,
torch, against the quick-start recipe's own score.

    .venv/bin/python bench/tune.py [--trials 12] [--threads 1] [--baseline]
    .venv/bin/python bench/tune.py --from DIR [--baseline-metrics runs/<id>/metrics.json]

Runs ``tl tune recipes/quickstart.toml`` over lr, epochs, batch size, warm-up and weight decay (``PARAMS``),
the trials on 2,000 training rows (1,600 train, 400 validation held out of them), the best configuration
then trained on all 10,324 training rows and scored once on the evaluation split. ``--baseline`` also
runs the quick start itself (``tl run recipes/quickstart.toml``, same threads); ``--from DIR`` reports a
tuning directory already finished, ``--baseline-metrics`` the quick start's metrics.json from elsewhere.
Writes bench/results/tune.json (the tuning's tune.json, its trials, the baseline, the machine, the
commands) and tune.md (the table of trials and the comparison).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from compare import machine_info  # noqa: E402

RECIPE = ROOT / "recipes" / "quickstart.toml"
PARAMS = ["lr=loguniform(2e-5,3e-4)", "epochs=int(1,3)", "batch_size=choice(16,32)", "warmup_ratio=uniform(0,0.2)",
          "weight_decay=uniform(0,0.1)"]


def tl() -> str:
    return str(Path(sys.executable).with_name("tl"))


def run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "OMP_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def table(report: dict) -> str:
    tune, trials, base = report["tune"], report["trials"], report.get("baseline")
    final = tune.get("final") or {}
    names = [p.split("=", 1)[0] for p in tune["params"]]
    lines = [f"`tl tune` on Rotten Tomatoes, MiniLM, torch, {len(trials)} trials on {tune['trial_train_samples']} "
             f"training rows ({tune['validation_split']:.0%} of them held out for validation), median pruner, "
             f"{tune['options'].get('threads', 'all')} thread(s).", "",
             "| trial | " + " | ".join(names) + " | validation accuracy | epochs run | status | s |",
             "|---|" + "---|" * (len(names) + 4)]
    for t in trials:
        values = [f"{float(t[n]):.3g}" if n in ("lr", "warmup_ratio", "weight_decay") else t[n] for n in names]
        lines.append(f"| {t['trial']} | " + " | ".join(values) +
                     f" | {float(t[tune['metric']]):.4f} | {t['epochs_run']} | {t['status']} | {float(t['duration_s']):.0f} |")
    lines += ["", "| | configuration | evaluation-split accuracy | macro-F1 | wall time |", "|---|---|---|---|---|"]
    if base:
        lines.append(f"| quick start (`tl run recipes/quickstart.toml`) | lr 1e-4, 1 epoch, batch 32 | "
                     f"{base['eval_accuracy']:.4f} | {base.get('eval_macro_f1', float('nan')):.4f} | "
                     f"{base['wall_s']:.0f} s |" if base.get("wall_s") else
                     f"| quick start (`tl run recipes/quickstart.toml`) | lr 1e-4, 1 epoch, batch 32 | "
                     f"{base['eval_accuracy']:.4f} | {base.get('eval_macro_f1', float('nan')):.4f} | |")
    if final:
        p = final["params"]
        config = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items())
        lines.append(f"| tuned (trial {final['trial']}, trained on all rows) | {config} | {final['eval_accuracy']:.4f} | "
                     f"{final['eval_macro_f1']:.4f} | {tune['wall_s']:.0f} s in all ({final['wall_s']:.0f} s final run) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--from", dest="source", type=Path, help="a finished tuning directory to report")
    p.add_argument("--baseline", action="store_true", help="also run the quick start itself")
    p.add_argument("--baseline-metrics", type=Path, help="the quick start's metrics.json from another run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    command = [tl(), "tune", str(RECIPE), "--backend", "torch", "--trials", str(args.trials),
               "--trial-train-samples", "2000", *(x for param in PARAMS for x in ("--param", param)),
               "--threads", str(args.threads)]
    work = Path(tempfile.mkdtemp(prefix="tl-bench-tune-"))
    directory = args.source
    if directory is None:
        directory = work / "tune"
        run([*command, "-o", str(directory)], args.threads)
    baseline = None
    base_cmd = [tl(), "run", str(RECIPE), "--backend", "torch", "--threads", str(args.threads), "-q", "--json"]
    if args.baseline:
        out = work / "quickstart"
        wall = run([*base_cmd, "-o", str(out)], args.threads)
        baseline = {**json.loads((out / "metrics.json").read_text()), "wall_s": round(wall, 1)}
    elif args.baseline_metrics:
        baseline = json.loads(args.baseline_metrics.read_text())
    with (directory / "trials.csv").open(newline="", encoding="utf-8") as f:
        trials = list(csv.DictReader(f))
    report = {"machine": machine_info(), "command": shlex.join([*command, "-o", "DIR"]), "baseline_command":
              shlex.join([*base_cmd, "-o", "DIR"]), "tune": json.loads((directory / "tune.json").read_text()),
              "trials": trials,
              "baseline": None if baseline is None else {k: baseline.get(k) for k in (
                  "eval_accuracy", "eval_macro_f1", "eval_loss", "epochs", "num_train_samples", "num_eval_samples",
                  "precision", "train_runtime_s", "wall_s")}}
    report["tune"].pop("recipe_path", None)  # an absolute path on the measuring machine
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    (args.out / "tune.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
