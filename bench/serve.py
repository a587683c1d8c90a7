"""Serving: `tl serve` and `tl predict` on each runtime against what people write by hand (GitHub issue 14).

    .venv/bin/python bench/serve.py [--model DIR] [--repeats 3] [--duration 10] [--concurrency 1 8 32]
        [--only serve predict] [--predict-texts 1000] [--threads N]

Model: ``--model`` (a tl model directory), else MiniLM fine-tuned here for one epoch on the whole
``rotten_tomatoes`` training split (max length 128, batch 32, lr 1e-4, fp32, seed 0), then exported
with ``tl export --format onnx`` (fp32) and ``--quantize int8``; the export times and self-check
differences are recorded.

serve    Each server in its own process, on this machine's cores (the servers' defaults), driven from
         this process by ``--concurrency`` closed-loop HTTP clients (httpx, one keep-alive connection
         each), each sending one held-out Rotten Tomatoes snippet per request for ``--duration`` seconds
         after a 2 s warm-up: requests/s, p50 and p99 latency, errors. Servers: ``tl serve`` on the
         torch runtime, on ONNX fp32 and on ONNX int8 (default micro-batching), and the plain FastAPI
         server wrapping a transformers ``pipeline`` (bench/reference/pipeline_server.py), fp32
         everywhere. Repeats interleave the servers.
predict  ``tl predict --input`` on N and 2N held-out snippets for torch bf16, torch fp32, ONNX fp32 and
         ONNX int8 (steady texts/s = N / (t(2N) - t(N)), which cancels start-up), and each one's
         held-out accuracy from ``tl evaluate --dataset rotten_tomatoes`` on the whole eval split.

Writes bench/results/serve.json (every sample, medians, ratios, machine, exact commands) and
bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from compare import machine_info  # noqa: E402

SERVERS = ("tl-torch", "tl-onnx", "tl-onnx-int8", "fastapi-pipeline")
PREDICTORS = ("torch-bf16", "torch-fp32", "onnx-fp32", "onnx-int8")
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "TOKENIZERS_PARALLELISM": "false"}


def tl_bin() -> str:
    return str(Path(sys.executable).parent / "tl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], commands: dict, name: str) -> subprocess.CompletedProcess:
    commands.setdefault(name, shlex.join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV})
    if done.returncode != 0:
        raise SystemExit(f"serve bench: {name} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return done


def prepare(work: Path, args: argparse.Namespace, commands: dict) -> dict[str, Path]:
    model = Path(args.model) if args.model else work / "run" / "model"
    if not args.model:
        run([tl_bin(), "run", "--model", "minilm", "--dataset", "rotten_tomatoes", "--epochs", "1", "--batch-size", "32",
             "--max-length", "128", "--lr", "1e-4", "--seed", "0", "--precision", "fp32", "-o", str(work / "run"), "-q"],
            commands, "train")
    dirs = {"model": model, "onnx": work / "onnx", "onnx-int8": work / "onnx-int8"}
    for key, extra in (("onnx", []), ("onnx-int8", ["--quantize", "int8"])):
        t0 = time.perf_counter()
        run([tl_bin(), "export", "--model", str(model), "--format", "onnx", "-o", str(dirs[key]), *extra],
            commands, f"export {key}")
        dirs[f"{key}-export-s"] = round(time.perf_counter() - t0, 1)  # type: ignore[assignment]
    return dirs


def held_out_texts() -> list[str]:
    from tl.cli.common import load_registry
    from tl.data.loading import load_splits
    from tl.training.config import RunConfig

    registry, _ = load_registry(warn=False)
    splits = load_splits(RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label"), registry)
    return [" ".join(t.split()) for t in splits.eval.texts]


# ---------------------------------------------------------------- servers


def server_cmd(name: str, dirs: dict, port: int, threads: int | None) -> list[str]:
    thread_opt = ["--threads", str(threads)] if threads else []
    if name == "fastapi-pipeline":
        return [sys.executable, str(BENCH / "reference" / "pipeline_server.py"), "--model", str(dirs["model"]),
                "--port", str(port), *thread_opt]
    model, runtime = {"tl-torch": (dirs["model"], "torch"), "tl-onnx": (dirs["onnx"], "onnx"),
                      "tl-onnx-int8": (dirs["onnx-int8"], "onnx")}[name]
    return [tl_bin(), "serve", "--model", str(model), "--runtime", runtime, "--port", str(port),
            "--precision", "fp32", *thread_opt]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    probe = "/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve bench: server exited with {proc.returncode}: {proc.stderr.read()[-600:]}")
        try:
            r = httpx.get(url + probe, timeout=2)
            if r.status_code == 200:
                return
            if r.status_code == 404:
                probe = "/healthz"  # the reference server has no readiness endpoint
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"serve bench: {url} not ready after {timeout:.0f} s")


async def load(url: str, texts: list[str], concurrency: int, duration: float, warmup: float = 2.0) -> dict:
    """Closed-loop clients: each sends one text per request, waits for the answer, sends the next."""
    import httpx

    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = k
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            r = await http.post(url + "/v1/predict", json={"texts": [texts[i % len(texts)]]})
            t1 = time.perf_counter()
            ok = r.status_code == 200 and len(r.json()["predictions"]) == 1
            if t0 >= measure_from and t1 <= stop_at:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
            i += concurrency

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
    lat = sorted(latencies)
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
    return {"requests_per_second": round(len(lat) / duration, 1), "p50_ms": round(pick(0.5), 1),
            "p99_ms": round(pick(0.99), 1), "requests": len(lat), "errors": errors}


def serve_sample(name: str, dirs: dict, texts: list[str], args: argparse.Namespace, commands: dict) -> dict:
    port = free_port()
    cmd = server_cmd(name, dirs, port, args.threads)
    commands.setdefault(f"server {name}", shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        wait_ready(url, proc)
        out = {"ready_s": round(time.perf_counter() - t0, 1)}
        for c in args.concurrency:
            out[f"c{c}"] = asyncio.run(load(url, texts, c, args.duration))
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------- tl predict / evaluate


def predictor(name: str, dirs: dict) -> tuple[Path, list[str]]:
    runtime, precision = name.split("-")
    if runtime == "torch":
        return dirs["model"], ["--runtime", "torch", "--precision", precision]
    return dirs["onnx-int8" if precision == "int8" else "onnx"], ["--runtime", "onnx"]


def predict_sample(name: str, dirs: dict, files: dict[int, Path], args: argparse.Namespace, commands: dict) -> dict:
    model, opts = predictor(name, dirs)
    threads = ["--threads", str(args.threads)] if args.threads else []
    walls = {}
    for n, path in files.items():
        cmd = [tl_bin(), "predict", "--model", str(model), "--input", str(path), "--json", *opts, *threads]
        t0 = time.perf_counter()
        done = run(cmd, commands, f"predict {name} {n}")
        walls[n] = time.perf_counter() - t0
        if len(done.stdout.splitlines()) != n:
            raise SystemExit(f"serve bench: predict {name} printed {len(done.stdout.splitlines())} lines for {n} texts")
    n, n2 = sorted(walls)
    return {"wall_n_s": round(walls[n], 2), "wall_2n_s": round(walls[n2], 2),
            "steady_texts_per_second": round(n / (walls[n2] - walls[n]), 1) if walls[n2] > walls[n] else None}


def accuracy(name: str, dirs: dict, work: Path, args: argparse.Namespace, commands: dict) -> dict:
    model, opts = predictor(name, dirs)
    out = work / f"evaluation-{name}.json"
    threads = ["--threads", str(args.threads)] if args.threads else []
    run([tl_bin(), "evaluate", "--model", str(model), "--dataset", "rotten_tomatoes", "-o", str(out), *opts, *threads],
        commands, f"evaluate {name}")
    m = json.loads(out.read_text())
    return {"eval_accuracy": m["eval_accuracy"], "eval_loss": m["eval_loss"], "num_eval_samples": m["num_eval_samples"]}


# ---------------------------------------------------------------- report


def median_of(samples: list[dict], *keys: str) -> float | None:
    vals = []
    for s in samples:
        v = s
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return round(statistics.median(vals), 1) if vals else None


def interleaved(names: tuple[str, ...], repeats: int, label: str, sample) -> dict[str, list]:
    """``sample(name)`` for every name, ``repeats`` times, the order rotated every repeat so that
    machine noise hits every variant alike."""
    samples: dict[str, list] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            print(f"serve bench: {label} repeat {r + 1}/{repeats}: {name}", file=sys.stderr)
            samples[name].append(sample(name))
    return samples


def table(res: dict) -> str:
    a = res["args"]
    lines = [f"Serving MiniLM (rotten_tomatoes, 1 epoch), this machine ({res['machine']['cpu']}, "
             f"{res['machine']['cores_usable']} cores); medians of {a['repeats']}; {a['duration']} s per level, "
             "one held-out snippet per request.", ""]
    if res.get("serve"):
        cs = a["concurrency"]
        lines += ["| server | " + " | ".join(f"c={c} req/s | c={c} p50 ms | c={c} p99 ms" for c in cs) + " |",
                  "|---|" + "---|---|---|" * len(cs)]
        for name, med in res["serve"]["medians"].items():
            cells = [f"{med[f'c{c}']['requests_per_second']} | {med[f'c{c}']['p50_ms']} | {med[f'c{c}']['p99_ms']}"
                     for c in cs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "Ratios at the highest concurrency (tl serve / plain FastAPI + pipeline): " + ", ".join(
            f"{k} {v}" for k, v in res["serve"]["ratios"].items()), ""]
    if res.get("predict"):
        lines += ["| tl predict | steady texts/s | held-out accuracy |", "|---|---|---|"]
        for name, med in res["predict"]["medians"].items():
            acc = res["predict"]["accuracy"][name]["eval_accuracy"]
            lines.append(f"| {name} | {med} | {acc:.4f} |")
        lines += ["", "Ratios: " + ", ".join(f"{k} {v}" for k, v in res["predict"]["ratios"].items()), ""]
    if res.get("exports"):
        lines += ["Exports: " + ", ".join(f"{k} {v}" for k, v in res["exports"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="A trained tl model directory (default: fine-tune MiniLM here).")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--only", nargs="+", choices=("serve", "predict"), default=["serve", "predict"])
    p.add_argument("--predict-texts", type=int, default=1000)
    p.add_argument("--threads", type=int, help="Compute threads of every server and predictor (default: theirs).")
    p.add_argument("--out", default=str(BENCH / "results" / "serve"))
    args = p.parse_args()
    commands: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tl-bench-serve-") as tmp:
        work = Path(tmp)
        dirs = prepare(work, args, commands)
        exports = {}
        for key in ("onnx", "onnx-int8"):
            check = json.loads((dirs[key] / "tl.json").read_text()).get("export", {}).get("self_check", {})
            exports[key] = {"export_s": dirs[f"{key}-export-s"], "self_check": check,
                            "size_mib": round((dirs[key] / "model.onnx").stat().st_size / 2**20, 1)}
        texts = held_out_texts()
        res: dict = {"args": vars(args), "machine": machine_info(), "exports": exports, "commands": commands}
        if "serve" in args.only:
            samples = interleaved(SERVERS, args.repeats, "serve",
                                  lambda name: serve_sample(name, dirs, texts, args, commands))
            medians = {n: {f"c{c}": {k: median_of(s, f"c{c}", k) for k in ("requests_per_second", "p50_ms", "p99_ms")}
                           for c in args.concurrency} for n, s in samples.items()}
            top = f"c{max(args.concurrency)}"
            plain = medians["fastapi-pipeline"][top]
            ratios = {f"{n} throughput": round(medians[n][top]["requests_per_second"] / plain["requests_per_second"], 2)
                      for n in SERVERS[:3]}
            ratios.update({f"{n} p99": round(medians[n][top]["p99_ms"] / plain["p99_ms"], 2) for n in SERVERS[:3]})
            res["serve"] = {"samples": samples, "medians": medians, "ratios": ratios}
        if "predict" in args.only:
            data = work / "data"
            data.mkdir()
            files = {}
            for n in (args.predict_texts, 2 * args.predict_texts):
                picked = (texts * (n // len(texts) + 1))[:n]
                files[n] = data / f"predict-{n}.txt"
                files[n].write_text("\n".join(picked) + "\n", encoding="utf-8")
            psamples = interleaved(PREDICTORS, args.repeats, "predict",
                                   lambda name: predict_sample(name, dirs, files, args, commands))
            pmed = {n: median_of(s, "steady_texts_per_second") for n, s in psamples.items()}
            acc = {n: accuracy(n, dirs, work, args, commands) for n in PREDICTORS}
            pratios = {"onnx-int8 / torch-bf16 texts/s": round(pmed["onnx-int8"] / pmed["torch-bf16"], 2),
                       "onnx-int8 / torch-fp32 texts/s": round(pmed["onnx-int8"] / pmed["torch-fp32"], 2),
                       "onnx-fp32 / torch-fp32 texts/s": round(pmed["onnx-fp32"] / pmed["torch-fp32"], 2),
                       "onnx-int8 - torch-bf16 accuracy (points)":
                           round(100 * (acc["onnx-int8"]["eval_accuracy"] - acc["torch-bf16"]["eval_accuracy"]), 2)}
            res["predict"] = {"samples": psamples, "medians": pmed, "accuracy": acc, "ratios": pratios}
        res["commands"] = commands
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(table(res))
    print(table(res))


if __name__ == "__main__":
    main()
