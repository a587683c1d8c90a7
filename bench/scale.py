"""Data at scale (GitHub issue 17): millions of rows in bounded memory, sharded across processes.

    .venv/bin/python bench/scale.py [--sizes 200000 1000000 2000000] [--procs 1 2] [--cold-procs 1]
        [--warm-only] [--steps 20] [--max-eval 2000] [--threads 1] [--workdir /tmp/tl-scale] [--out bench/results]
        [--name scale] [--no-max-steps]

Data (built here, reproducibly, cached in ``--workdir``): ``synthetic-<N>.csv`` (columns ``text,label``,
labels ``negative``/``positive``) from the shipped ``rotten_tomatoes`` training split. Each row draws a
Rotten Tomatoes training row uniformly, keeps its label and its length in words, and replaces
max(1, round(20%)) of its words, chosen at random, by words drawn uniformly from the split's word list:
rows are (almost surely) distinct, lengths are Rotten Tomatoes', the label stays mostly learnable. Rows
come in chunks of 100,000, each from ``numpy.random.default_rng([seed, chunk])``, so the first N rows
are the same whatever the largest size: the largest file is built once and the smaller ones are its
first N rows. A file with the right row count (and seed) is reused by later invocations.

Runs, per size N (``--sizes``) and process count (``--procs``), each its own process under
bench/measure.py (wall time, launch Unix time, peak RSS of the largest process via
``getrusage(RUSAGE_CHILDREN)``), with a sampler thread here that reads the RSS of every process in the
tree every 0.2 s (launcher, torchrun, each rank's worker: their peaks)::

    TL_ENCODE_CACHE_DIR=<workdir>/cache-<N> tl run --dataset <workdir>/synthetic-<N>.csv --model minilm
        --backend torch --max-length 128 --batch-size 32 --max-steps STEPS --max-eval-samples MAX_EVAL
        --threads THREADS --output <workdir>/runs/<run> --quiet [--nproc P]

For each N: a cold run on ``--procs[0]`` processes (the cache directory emptied first: tl reads, splits,
tokenizes and writes its store), a warm run on the same (the store exists), a warm run on each other
process count (same store key), then a cold run on each other process count in ``--cold-procs``.
Time to first training step = metrics.json ``first_step_unix`` minus the launch time. Every run also
gets OMP_NUM_THREADS (and the TF ones) = ``--threads``, as in bench/compare.py; tokenization, tl's and the
baseline's, uses every core (the tokenizer's own thread pool, RAYON_NUM_THREADS unset).

Tokenizer baseline, in its own process on the same cores: Hugging Face ``tokenizers``
(minilm's tokenizer.json, truncation at 128) ``encode_batch`` over the texts of the first
min(N, 200,000) rows in batches of 10,000, with and without reading each result's ``.ids``; rows/s,
median of 3. tl's rate for a cold run = rows tokenized / ``tokenize_runtime_s``; rows tokenized is
metrics.json's count where it gives one, else the source rows in the store the run wrote (its manifest.json),
else num_train_samples + num_eval_samples; the rate over N is recorded too.

Targets: peak RSS of every process under 2 GiB at every N; raw tokenizer rate / tl's rate <= 1.5;
time to first step under 60 s with the store present (warm runs). Writes bench/results/scale.json
(every run, the baseline, machine, exact commands, targets and pass/fail) and bench/results/scale.md.

``--no-max-steps``: for a tl without ``--max-steps``, train ``--epochs 1 --max-train-samples
STEPS x 32`` instead (tests this harness only).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from compare import machine_info  # noqa: E402

GIB = 1024.0  # MiB
TARGET_RSS_MIB = 2 * GIB
TARGET_TOKENIZE_RATIO = 1.5
TARGET_FIRST_STEP_S = 60.0
CHUNK = 100_000  # rows per generator chunk (each with its own seeded generator)
REPLACE = 0.2  # share of each row's words replaced
MAX_LENGTH, BATCH = 128, 32
BASELINE_ROWS, BASELINE_BATCH = 200_000, 10_000
GENERATOR = 1  # bump when the data recipe changes: cached files of another version are rebuilt


# ---------------------------------------------------------------- data


def rotten_tomatoes_train() -> tuple[list[str], list[str]]:
    from tl.assets.catalog import load_rotten_tomatoes

    train = load_rotten_tomatoes().train
    return list(train.texts), list(train.labels)


def count_rows(path: Path) -> int:
    """Data rows of a file this module wrote (one line per row, a header line)."""
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n - 1


def generate(path: Path, rows: int, seed: int) -> dict:
    """``path``: ``rows`` synthetic rows (see the module's docstring); what went into it."""
    import numpy as np

    texts, labels = rotten_tomatoes_train()
    split = [t.split() for t in texts]
    vocab = sorted({w for words in split for w in words})
    index = {w: i for i, w in enumerate(vocab)}
    counts = np.fromiter((len(w) for w in split), dtype=np.int64, count=len(split))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = np.fromiter((index[w] for words in split for w in words), dtype=np.int32, count=int(offsets[-1]))
    vocab_arr = np.asarray(vocab, dtype=object)
    label_arr = np.asarray(labels, dtype=object)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        for chunk, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            rng = np.random.default_rng([seed, chunk])
            pick = rng.integers(len(texts), size=n)
            lengths = counts[pick]
            total = int(lengths.sum())
            row_start = np.cumsum(lengths) - lengths  # where each row's words start in this chunk
            row_of_word = np.repeat(np.arange(n), lengths)
            position = np.arange(total) - np.repeat(row_start, lengths)
            ids = flat[np.repeat(offsets[pick], lengths) + position]
            # max(1, round(20%)) words per row, at random: the smallest uniform keys within each row
            replace = np.maximum(1, np.rint(REPLACE * lengths)).astype(np.int64)
            order = np.argsort(row_of_word + rng.random(total), kind="stable")  # by row, then by key
            chosen = order[position < np.repeat(replace, lengths)]  # ``position`` of the sorted order = rank
            ids[chosen] = rng.integers(len(vocab), size=len(chosen))
            words = vocab_arr[ids].tolist()
            bounds = np.concatenate([row_start, [total]]).tolist()
            w.writerows(zip((" ".join(words[bounds[i]:bounds[i + 1]]) for i in range(n)),
                            label_arr[pick].tolist(), strict=True))
    tmp.replace(path)
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seed": seed, "generator": GENERATOR, "replace_share": REPLACE,
            "source": "rotten_tomatoes train split (tl.assets.catalog.load_rotten_tomatoes)",
            "source_rows": len(texts), "vocabulary": len(vocab), "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds), "bytes": path.stat().st_size}


def prefix(source: Path, path: Path, rows: int) -> None:
    """``path``: the header and first ``rows`` rows of ``source``."""
    tmp = path.with_suffix(".csv.tmp")
    with source.open("rb") as src, tmp.open("wb") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    tmp.replace(path)


def build_data(workdir: Path, sizes: list[int], seed: int) -> dict[int, dict]:
    """``<workdir>/synthetic-<N>.csv`` for every N, reused when present with the right rows; N -> info."""
    out: dict[int, dict] = {}

    def valid(n: int) -> dict | None:
        path, meta = workdir / f"synthetic-{n}.csv", workdir / f"synthetic-{n}.json"
        if not (path.is_file() and meta.is_file()):
            return None
        info = json.loads(meta.read_text())
        same = (info.get("seed"), info.get("generator"), info.get("rows")) == (seed, GENERATOR, n)
        return info if same and count_rows(path) == n else None

    largest = max(sizes)
    big = workdir / f"synthetic-{largest}.csv"
    info = valid(largest)
    cached = info is not None
    if info is None:
        print(f"scale: generating {largest:,} rows into {big}", file=sys.stderr, flush=True)
        info = generate(big, largest, seed)
        (workdir / f"synthetic-{largest}.json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"scale: {largest:,} rows in {info['seconds']} s ({info['rows_per_s']:,} rows/s)", file=sys.stderr,
              flush=True)
    out[largest] = info | {"path": str(big), "reused": cached}
    for n in sorted(set(sizes) - {largest}):
        small = valid(n)
        if small is None:
            prefix(big, workdir / f"synthetic-{n}.csv", n)
            small = {k: v for k, v in info.items() if k not in ("seconds", "rows_per_s")}
            small |= {"rows": n, "prefix_of": big.name, "bytes": (workdir / f"synthetic-{n}.csv").stat().st_size}
            (workdir / f"synthetic-{n}.json").write_text(json.dumps(small, indent=2) + "\n")
        out[n] = small | {"path": str(workdir / f"synthetic-{n}.csv"), "reused": cached}
    return out


# ---------------------------------------------------------------- tokenizer baseline


def model_dir() -> Path:
    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry

    registry, _ = load_registry()
    return resolve_model("minilm", registry)[0]


def baseline_child(data: str, rows: int, reps: int, tokenizer_json: str) -> None:
    """(In its own process.) Raw ``tokenizers`` batch-encode rates over the first ``rows`` texts; prints JSON."""
    from tokenizers import Tokenizer

    with open(data, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        texts = [row[0] for _, row in zip(range(rows), reader, strict=False)]
    tok = Tokenizer.from_file(tokenizer_json)
    tok.enable_truncation(MAX_LENGTH)
    tok.encode_batch(texts[:256])  # warm-up (thread pool, caches)
    result: dict[str, object] = {"rows": len(texts), "batch": BASELINE_BATCH,
                                 "rayon_threads": os.environ.get("RAYON_NUM_THREADS")}
    for name, touch in (("encode_batch", False), ("encode_batch_ids", True)):
        seconds = []
        for _ in range(reps):
            t0 = time.perf_counter()
            tokens = 0
            for start in range(0, len(texts), BASELINE_BATCH):
                encodings = tok.encode_batch(texts[start:start + BASELINE_BATCH])
                if touch:
                    tokens += sum(len(e.ids) for e in encodings)
            seconds.append(time.perf_counter() - t0)
        result[name] = {"seconds": [round(s, 4) for s in seconds], "rows_per_s": round(len(texts) / statistics.median(seconds))}
        if touch:
            result["tokens"] = tokens
    print(json.dumps(result))


def baseline(data: Path, rows: int, reps: int, threads: int, tokenizer_json: Path) -> dict:
    env = run_env(threads)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import scale; "
            "scale.baseline_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])")
    out = subprocess.run([sys.executable, "-c", code, str(BENCH), str(data), str(rows), str(reps),
                          str(tokenizer_json)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- runs


def run_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    t = str(threads)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": t, "TF_NUM_INTRAOP_THREADS": t, "TF_NUM_INTEROP_THREADS": t,
            **(extra or {})}  # not RAYON_NUM_THREADS: tokenization (tl's and the baseline's) uses every core


def tl_supports(option: str) -> bool:
    tl = str(Path(sys.executable).parent / "tl")
    out = subprocess.run([tl, "run", "--help"], capture_output=True, text=True, env=run_env(1)).stdout
    return option in out


def honours_cache_dir() -> bool:
    """Whether tl's source reads TL_ENCODE_CACHE_DIR (else the store goes under $TL_HOME/cache/encoded)."""
    import tl

    package = Path(tl.__file__).resolve().parent
    return any("TL_ENCODE_CACHE_DIR" in p.read_text(errors="replace") for p in package.rglob("*.py"))


def store_env(workdir: Path, n: int, honoured: bool) -> tuple[Path, dict[str, str]]:
    """The store directory of size ``n`` and the environment that puts tl's store there. A tl without
    TL_ENCODE_CACHE_DIR gets its own TL_HOME instead (its ``assets`` a link to the real one)."""
    if honoured:
        cache = workdir / f"cache-{n}"
        return cache, {"TL_ENCODE_CACHE_DIR": str(cache)}
    from tl.assets.wheels import tl_home

    home = workdir / f"home-{n}"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "assets").exists():
        (home / "assets").symlink_to(tl_home() / "assets", target_is_directory=True)
    return home / "cache" / "encoded", {"TL_HOME": str(home)}


def role(proc, top: int) -> str:
    """What a process in a run's tree is: launcher (``tl run`` before it execs torchrun), torchrun,
    rank N (a worker), or its command line."""
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - gone, or a zombie
        return "?"
    text = " ".join(cmd)
    if "torch.distributed.run" in text or "torchrun" in text:
        return "torchrun"
    try:
        rank = proc.environ().get("RANK")
    except Exception:  # noqa: BLE001
        rank = None
    if rank is not None:
        return f"rank {rank}"
    if proc.pid == top and "run" in cmd:
        return "tl run"
    return text[:80] or "?"  # no command line: exiting


class Sampler(threading.Thread):
    """Every 0.2 s, the RSS of every process under ``pid``: (pid, role) -> peak MiB."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peaks: dict[tuple[int, str], float] = {}
        self.roles: dict[int, str] = {}
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.done.is_set():
            try:
                direct = root.children()
                procs = root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            top = direct[0].pid if direct else -1  # measure.py's only child: the `tl run` it launched
            for proc in procs:
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                name = role(proc, top)
                if name == "?":
                    continue
                key = (proc.pid, name)
                self.peaks[key] = max(self.peaks.get(key, 0.0), rss)
            self.samples += 1
            self.done.wait(self.interval)

    def report(self, procs: int) -> list[dict]:
        rows = []
        for (pid, name), peak in sorted(self.peaks.items()):
            if procs > 1 and name == "tl run":
                name = "launcher"  # `tl run --nproc`, before it becomes torchrun (same pid)
            elif procs == 1 and name == "tl run":
                name = "rank 0"
            rows.append({"pid": pid, "role": name, "peak_rss_mib": round(peak, 1)})
        return rows


def metrics_path(out: Path) -> Path | None:
    """metrics.json of the run in ``out`` (the run directory itself, or the newest directory under it)."""
    if (out / "metrics.json").is_file():
        return out / "metrics.json"
    dirs = sorted((d for d in out.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime) if out.is_dir() else []
    for d in reversed(dirs):
        if (d / "metrics.json").is_file():
            return d / "metrics.json"
    return None


def store_info(cache: Path) -> tuple[int | None, int, float | None]:
    """Source rows in the store(s) under ``cache`` (their manifest.json ``texts``; for the older .npz
    entries, their rows), None if it holds none this can read; the store's bytes; when the newest store
    was written (manifest ``created_unix``; else the newest file's mtime)."""
    import numpy as np

    if not cache.is_dir():
        return None, 0, None
    files = [p for p in cache.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    created = max((p.stat().st_mtime for p in files), default=None)
    rows = None
    for p in cache.glob("*/manifest.json"):
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            manifest = json.loads(p.read_text())
            rows = (rows or 0) + int(manifest["texts"])
            created = float(manifest.get("created_unix") or created)
    if rows is None:
        for p in cache.rglob("*.npz"):
            try:
                with np.load(p) as z:
                    if "lengths" in z.files:
                        rows = (rows or 0) + len(z["lengths"])
            except Exception:  # noqa: BLE001 - another format: leave it uncounted
                continue
    return rows, size, created


def widest_batches(cache: Path, steps: int, seed: int = 0) -> dict | None:
    """The token widths of the batches the run's first ``steps`` steps draw (tl's own batch order over the
    store's training rows, one process): peak memory follows the widest, not the row count."""
    import numpy as np

    from tl.data.batching import train_order
    from tl.data.store import held_out, open_store

    stores = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")] if cache.is_dir() else []
    if len(stores) != 1:
        return None
    store = open_store(stores[0])
    kept = np.flatnonzero(~held_out(store.hash, 0.2))
    lengths = store.ids.lengths[kept]
    widths = [int(lengths[b].max()) for b in train_order(lengths, BATCH, seed, 0)[:steps]]
    return {"widest": max(widths), "mean": round(float(np.mean(widths)), 1)}


def tl_command(args: argparse.Namespace, data: Path, out: Path, procs: int) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "tl"), "run", "--dataset", str(data), "--model", "minilm",
           "--backend", "torch", "--max-length", str(MAX_LENGTH), "--batch-size", str(BATCH)]
    if args.no_max_steps:
        cmd += ["--epochs", "1", "--max-train-samples", str(args.steps * BATCH)]
    else:
        cmd += ["--max-steps", str(args.steps)]
    cmd += ["--max-eval-samples", str(args.max_eval), "--threads", str(args.threads), "--output", str(out), "--quiet"]
    if procs > 1:
        cmd += ["--nproc", str(procs)]
    return cmd


def one_run(args: argparse.Namespace, n: int, data: Path, procs: int, cold: bool, honoured: bool,
            commands: dict[str, str]) -> dict:
    store = "cold" if cold else "warm"
    name = f"{n}-{procs}p-{store}"
    cache, env_extra = store_env(args.workdir, n, honoured)
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    out = args.workdir / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = tl_command(args, data, out, procs)
    env_text = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_extra.items())
    commands[name] = f"{env_text} {shlex.join(cmd)}"
    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = logs / name
    print(f"scale: {name}: {commands[name]}", file=sys.stderr, flush=True)
    proc = subprocess.Popen([sys.executable, str(BENCH / "measure.py"), f"{base}.json", f"{base}.out", "--", *cmd],
                            env=run_env(args.threads, env_extra))
    sampler = Sampler(proc.pid)
    sampler.start()
    proc.wait()
    sampler.done.set()
    sampler.join()
    record: dict = {"rows": n, "procs": procs, "store": store, "name": name}
    if proc.returncode != 0 or not Path(f"{base}.json").is_file():
        return record | {"rc": proc.returncode, "error": "bench/measure.py failed"}
    info = json.loads(Path(f"{base}.json").read_text())
    per_process = sampler.report(procs)
    record |= {"rc": info["rc"], "wall_s": info["wall_s"], "launch_unix": info["launch_unix"],
               "cpu_s": round(info["user_s"] + info["sys_s"], 2), "others_cores": info["others_cores"],
               "max_rss_mib": info["max_rss_mib"],  # the largest single process (getrusage)
               "processes": per_process, "samples": sampler.samples,
               "max_worker_rss_mib": max((p["peak_rss_mib"] for p in per_process if p["role"].startswith("rank")),
                                         default=None)}
    if info["rc"] != 0:
        tail = Path(f"{base}.out.err").read_text(errors="replace").strip().splitlines()[-15:]
        return record | {"error": "\n".join(tail)}
    found = metrics_path(out)
    if found is None:
        return record | {"error": f"no metrics.json in {out}"}
    m = json.loads(found.read_text())
    first = m.get("first_step_unix")
    record |= {
        "first_step_s": round(first - info["launch_unix"], 3) if first else None,
        **{k: m.get(k) for k in ("tokenize_runtime_s", "tokenize_cached", "num_train_samples", "num_eval_samples",
                                 "eval_accuracy", "train_runtime_s", "train_steps", "world_size",
                                 "data_peak_rss_mib", "peak_rss_mib")},
    }
    rows, size, created = store_info(cache)
    built = created is not None and created >= info["launch_unix"]
    record |= {"store_rows": rows, "store_bytes": size, "store_built_this_run": built}
    if procs == 1 and not args.no_max_steps:
        with contextlib.suppress(Exception):  # a measurement aid only
            record["batch_widths"] = widest_batches(cache, args.steps)  # tl run's default seed, 0
    if cold:
        explicit = next((m[k] for k in ("tokenize_rows", "tokenized_rows", "num_tokenized") if m.get(k)), None)
        split_rows = (m.get("num_train_samples") or 0) + (m.get("num_eval_samples") or 0)
        counted, source = ((explicit, "metrics.json") if explicit else (rows, "store manifest") if rows
                           else (split_rows, "num_train_samples + num_eval_samples"))
        seconds = m.get("tokenize_runtime_s")
        if seconds:
            record |= {"tokenized_rows": counted, "tokenized_rows_from": source,
                       "tokenize_rows_per_s": round(counted / seconds), "tokenize_rows_per_s_over_n": round(n / seconds)}
        if not built:
            record["warning"] = f"cold run wrote no store in {cache} (is it the directory tl used?)"
        elif m.get("tokenize_cached"):  # rank 0 waited for the store another rank was building, then read it
            record["note"] = "rank 0 read the store another process built during this run"
    elif m.get("tokenize_cached") is False:
        record["warning"] = "warm run tokenized again (no store hit)"
    shutil.rmtree(out, ignore_errors=True)  # the checkpoint; metrics are in the record
    return record


def plan(args: argparse.Namespace) -> list[tuple[int, bool]]:
    """(processes, cold) in run order for one size."""
    first, others = args.procs[0], args.procs[1:]
    if args.warm_only:  # the stores of an earlier invocation, in the same --workdir
        return [(p, False) for p in args.procs]
    return ([(first, True), (first, False)] + [(p, False) for p in others]
            + [(p, True) for p in others if p in args.cold_procs])


# ---------------------------------------------------------------- report


def targets(results: list[dict], baselines: dict[int, dict]) -> dict:
    ok = [r for r in results if "error" not in r]
    rss = [max([r["max_rss_mib"]] + [p["peak_rss_mib"] for p in r["processes"]]) for r in ok]
    ratios = []
    for r in ok:
        base = baselines.get(r["rows"])
        if r["store"] == "cold" and r.get("tokenize_rows_per_s") and base:
            r["tokenize_ratio"] = round(base["encode_batch_ids"]["rows_per_s"] / r["tokenize_rows_per_s"], 2)
            ratios.append(r["tokenize_ratio"])
    warm = [r["first_step_s"] for r in ok if r["store"] == "warm" and r.get("first_step_s") is not None]

    def verdict(values: list[float], limit: float) -> bool | None:
        return (max(values) < limit if limit != TARGET_TOKENIZE_RATIO else max(values) <= limit) if values else None

    return {
        "peak_rss": {"target": f"every process < {TARGET_RSS_MIB:.0f} MiB at every size",
                     "worst_mib": max(rss, default=None), "pass": verdict(rss, TARGET_RSS_MIB)},
        "tokenize": {"target": f"raw tokenizers encode_batch (+ .ids) rows/s / tl's rows/s <= {TARGET_TOKENIZE_RATIO}",
                     "worst_ratio": max(ratios, default=None), "pass": verdict(ratios, TARGET_TOKENIZE_RATIO)},
        "first_step": {"target": f"time to first training step < {TARGET_FIRST_STEP_S:.0f} s with the store present",
                       "worst_s": max(warm, default=None), "pass": verdict(warm, TARGET_FIRST_STEP_S)},
    }


def fmt(x, spec: str = ".0f") -> str:
    return "" if x is None else format(x, spec)


def table(report: dict) -> str:
    s = report["settings"]
    limit = (f"--epochs 1 --max-train-samples {s['steps'] * BATCH} (--no-max-steps: harness test)" if s["no_max_steps"]
             else f"--max-steps {s['steps']}")
    lines = [
        f"Synthetic Rotten Tomatoes rows (see bench/scale.py); minilm, torch, max length {MAX_LENGTH}, batch {BATCH}, "
        f"{limit}, --max-eval-samples {s['max_eval']}, {s['threads']} thread(s) per process. Store: cold = tl reads, "
        "splits, tokenizes and writes its store; warm = the store exists. Peak RSS: the largest process "
        "(getrusage), and each process's peak sampled every 0.2 s; data ready: rank 0's peak RSS when its data was "
        "read, tokenized and mapped, before the model was built (metrics.json data_peak_rss_mib): what grows with the "
        "rows, where the rest is the model, its optimizer state and the activations of the longest batch drawn. "
        "First step: launch to the first optimizer step.",
        "",
        "| rows | processes | store | wall s | peak RSS MiB (largest) | per process MiB (sampled) | data ready MiB | "
        "widest batch (tokens) | first step s | tokenize s | tokenize rows/s | eval acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        head = f"| {r['rows']:,} | {r['procs']} | {r['store']} |"
        if "error" in r:
            lines.append(f"{head} failed (exit {r.get('rc')}): {r['error'].splitlines()[-1][:100]} | | | | | | | | |")
            continue
        per = ", ".join(f"{p['role']} {p['peak_rss_mib']:.0f}" for p in r["processes"])
        rate = fmt(r.get("tokenize_rows_per_s")) if r["store"] == "cold" else ""
        lines.append(f"{head} {r['wall_s']:.0f} | {r['max_rss_mib']:.0f} | {per} | {fmt(r.get('data_peak_rss_mib'))} | "
                     f"{(r.get('batch_widths') or {}).get('widest', '')} | "
                     f"{fmt(r.get('first_step_s'), '.1f')} | "
                     f"{fmt(r.get('tokenize_runtime_s'), '.1f')} | {rate} | {fmt(r.get('eval_accuracy'), '.3f')} |")
    lines += [
        "",
        f"Tokenization: Hugging Face tokenizers encode_batch (minilm's tokenizer.json, truncation {MAX_LENGTH}, "
        f"batches of {BASELINE_BATCH:,}, every core, median of {s['baseline_reps']}) over the "
        f"first min(N, {BASELINE_ROWS:,}) rows, against tl's cold runs (rows tokenized / tokenize_runtime_s).",
        "",
        "| rows | processes | raw rows/s | raw + .ids rows/s | tl rows/s | rows tl tokenized (from) | raw+.ids / tl |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        base = report["baseline"].get(str(r["rows"]))
        if r["store"] != "cold" or "error" in r or not base:
            continue
        lines.append(f"| {r['rows']:,} | {r['procs']} | {base['encode_batch']['rows_per_s']:,} | "
                     f"{base['encode_batch_ids']['rows_per_s']:,} | {fmt(r.get('tokenize_rows_per_s'), ',.0f')} | "
                     f"{fmt(r.get('tokenized_rows'), ',')} ({r.get('tokenized_rows_from', '')}) | "
                     f"{fmt(r.get('tokenize_ratio'), '.2f')} |")
    lines += ["", "| target | worst | pass |", "|---|---|---|"]
    for t in report["targets"].values():
        worst = next(v for k, v in t.items() if k.startswith("worst"))
        lines.append(f"| {t['target']} | {fmt(worst, '.2f')} | {'' if t['pass'] is None else ('yes' if t['pass'] else 'NO')} |")
    return "\n".join(lines) + "\n"


def write(args: argparse.Namespace, data: dict, baselines: dict[int, dict], results: list[dict], commands: dict,
          extra: dict, machine: dict) -> str:
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "data": {str(k): v for k, v in data.items()}, "machine": machine, **extra,
              "commands": commands, "baseline": {str(k): v for k, v in baselines.items()},
              "targets": targets(results, baselines), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = table(report)
    (args.out / f"{args.name}.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[200_000, 1_000_000, 2_000_000])
    p.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--warm-only", action="store_true",
                   help="only warm runs, on the stores an earlier invocation left in --workdir (no baseline)")
    p.add_argument("--cold-procs", nargs="+", type=int, default=[1],
                   help="process counts that also get a cold run after the warm ones (the first of --procs always does)")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps (--max-steps; default 20)")
    p.add_argument("--max-eval", type=int, default=2000, help="--max-eval-samples (default 2000)")
    p.add_argument("--threads", type=int, default=1, help="--threads per process, and RAYON/OMP threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--baseline-reps", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/tl-scale"),
                   help="data files, stores, logs; kept for reuse (default /tmp/tl-scale)")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--name", default="scale")
    p.add_argument("--no-max-steps", action="store_true",
                   help="for a tl without --max-steps: --epochs 1 --max-train-samples STEPS x 32 (harness tests only)")
    args = p.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"scale: working directory {args.workdir}", file=sys.stderr, flush=True)
    if not args.no_max_steps and not tl_supports("--max-steps"):
        sys.exit("scale: this tl has no `tl run --max-steps`; pass --no-max-steps to test the harness without it")
    honoured = honours_cache_dir()
    if not honoured:
        print("scale: tl does not read TL_ENCODE_CACHE_DIR; giving each size its own TL_HOME instead",
              file=sys.stderr, flush=True)
    sizes = sorted(set(args.sizes))
    data = build_data(args.workdir, sizes, args.seed)
    tokenizer_json = model_dir() / "tokenizer.json"
    machine = machine_info()
    extra = {"store_env": "TL_ENCODE_CACHE_DIR" if honoured else "TL_HOME (tl does not read TL_ENCODE_CACHE_DIR)",
             "tokenizer": str(tokenizer_json),
             "targets_issue_17": {"peak_rss_mib": TARGET_RSS_MIB, "tokenize_ratio": TARGET_TOKENIZE_RATIO,
                                  "first_step_s": TARGET_FIRST_STEP_S}}
    baselines: dict[int, dict] = {}
    by_rows: dict[int, dict] = {}
    for n in sizes:
        rows = min(n, BASELINE_ROWS)
        if args.warm_only:
            continue
        if rows not in by_rows:
            by_rows[rows] = baseline(Path(data[n]["path"]), rows, args.baseline_reps, args.threads, tokenizer_json)
            print(json.dumps({"baseline_rows": rows} | by_rows[rows]), flush=True)
        baselines[n] = by_rows[rows]
    results: list[dict] = []
    commands: dict[str, str] = {}
    for n in sizes:
        for procs, cold in plan(args):
            record = one_run(args, n, Path(data[n]["path"]), procs, cold, honoured, commands)
            results.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "processes"}), flush=True)
            write(args, data, baselines, results, commands, extra, machine)
    print(write(args, data, baselines, results, commands, extra, machine))
    print(f"scale: working directory kept: {args.workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
