"""tl against the plain framework recipes, side by side on this machine (GitHub issue 6).

    .venv/bin/python bench/compare.py [--repeats 3] [--steps 60] [--only SECTION...] [--full]

Matched settings everywhere: model ``minilm`` (the MiniLM-L6-H384 BERT tl pulls), dataset
``rotten_tomatoes``, max length 128, batch 32, AdamW at lr 1e-4 with a linear schedule (10% warm-up),
the same precision (``--precision``; ``auto``, the default: bf16 where the CPU has bf16 instructions
(AVX-512 BF16 or AMX), else fp32 — on AVX2 alone torch's bf16 matmuls run at under 1 GFLOP/s), the same number of optimizer steps
(``--steps``; ``--full``: one epoch of the whole training split), the same threads, seed 0. The
reference scripts train and evaluate on exactly the examples tl uses (tl's sha256 held-out split and
fixed subsets, exported through tl's own Python API).

Sections (``--only``):
  train-torch  tl run --backend torch | transformers.Trainer script | classic padded-to-128 torch loop
  train-tf     tl run --backend tensorflow | KerasHub BertTextClassifier.fit script
  backends     tl run --backend torch | tl run --backend tensorflow (not in the default set: the two train
               sections run both; this is the pair alone, for the TensorFlow / torch ratio)
  tokenize     tl's tokenizer | transformers one text at a time | transformers batched | KerasHub on tf.data
  predict      tl predict --input (torch, tensorflow) | transformers pipeline (batch 1 and 64)
  startup      tl --help, tl plugins (time to first training step comes from the train sections)
  peak         dense GEMM peak of torch and TensorFlow at the run's precision (for MFU; bench/flops.py)

Every run is its own process, wrapped in a fresh helper (bench/measure.py) that records its wall time
and peak RSS, with ``--threads`` passed as an option where there is one and always as OMP_NUM_THREADS,
TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS and RAYON_NUM_THREADS. Repeats interleave the variants (rotating their order) so machine noise hits them alike.
Writes bench/results/compare.json (medians, every raw sample, ratios, machine, exact commands) and
bench/results/compare.md (``--out DIR --name NAME``: DIR/NAME.json and DIR/NAME.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import flops  # noqa: E402
import report  # noqa: E402

SECTIONS = ("startup", "tokenize", "peak", "train-torch", "train-tf", "backends", "predict")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "backends")
PACKAGES = ("tl", "torch", "transformers", "accelerate", "tokenizers", "tensorflow", "keras", "keras-hub")


@dataclass
class Ctx:
    work: Path
    threads: int
    precision: str
    lr: float
    seed: int
    n_train: int | None  # None: the whole training split
    n_eval: int | None
    predict_n: int
    full: bool = False
    device: str = "cpu"  # cpu or cuda: where every run trains/predicts (cpu hides the GPUs from tl)
    tokenize_texts: int = 0
    model_dir: Path = Path()
    trainer_env: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    predict_model: Path | None = None
    tl_batches: list[tuple[int, int]] = field(default_factory=list)
    tl_lengths: list[int] = field(default_factory=list)
    counter: int = 0

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def tl(self) -> str:
        return str(Path(sys.executable).parent / "tl")

    def device_env(self) -> dict[str, str]:
        """What every run's environment adds for ``device``: none of the GPUs for cpu (tl's plan takes a
        visible one)."""
        return {"CUDA_VISIBLE_DEVICES": ""} if self.device == "cpu" else {}


class RunFailed(RuntimeError):
    pass


def measured(ctx: Ctx, name: str, cmd: list[str], env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run ``cmd`` under bench/measure.py; returns its measurements and its stdout."""
    ctx.counter += 1
    base = ctx.work / "logs" / f"{ctx.counter:03d}"
    base.parent.mkdir(parents=True, exist_ok=True)
    ctx.commands.setdefault(name, shlex.join(cmd))
    threads = str(ctx.threads)  # also for what has no thread option (tl predict, the pipeline, tokenizers)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
                "RAYON_NUM_THREADS": threads, **ctx.device_env(), **(env or {})}
    subprocess.run([ctx.python, str(BENCH / "measure.py"), f"{base}.json", f"{base}.out", "--", *cmd],
                   env=full_env, check=True)
    info = json.loads(Path(f"{base}.json").read_text())
    if info["rc"] != 0:
        err = Path(f"{base}.out.err").read_text(errors="replace").strip().splitlines()[-5:]
        raise RunFailed(f"{name}: exit {info['rc']}: {shlex.join(cmd)}\n  " + "\n  ".join(err))
    return info, Path(f"{base}.out").read_text(errors="replace")


# ---------------------------------------------------------------- data and set-up


def export_data(ctx: Ctx) -> None:
    """The train/eval examples `tl run` uses (its registry, hash split and subsets), as JSON Lines for the
    reference scripts; texts for the tokenization and prediction sections."""
    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry
    from tl.data.loading import load_splits
    from tl.training.config import RunConfig

    registry, _ = load_registry()
    ctx.model_dir, _ = resolve_model("minilm", registry)
    config = RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label",
                       max_train_samples=ctx.n_train, max_eval_samples=ctx.n_eval)
    splits = load_splits(config, registry)
    full = load_splits(RunConfig(dataset="rotten_tomatoes", text_column="text", label_column="label"), registry)
    data = ctx.work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, ex in (("train", splits.train), ("eval", splits.eval)):
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text, label in zip(ex.texts, ex.labels, strict=True):
                f.write(json.dumps({"text": text, "label": label}) + "\n")  # ASCII: U+2028 and the like escaped
    one_line = [" ".join(t.split()) for t in full.train.texts]
    (data / "tokenize.txt").write_text("\n".join(one_line) + "\n", encoding="utf-8")
    ctx.tokenize_texts = len(one_line)
    held_out = [" ".join(t.split()) for t in full.eval.texts]
    for n in (ctx.predict_n, 2 * ctx.predict_n):
        picked = (held_out * (n // len(held_out) + 1))[:n]
        (data / f"predict-{n}.txt").write_text("\n".join(picked) + "\n", encoding="utf-8")
    ctx.n_train, ctx.n_eval = len(splits.train), len(splits.eval)
    ctx.tl_batches, ctx.tl_lengths = flops.tl_batches(ctx.model_dir, splits.train.texts, 32, 128, ctx.seed)


def trainer_env(ctx: Ctx) -> dict[str, str]:
    """transformers.Trainer needs accelerate, which tl's extras do not install: if the environment
    lacks it, install it (and psutil) into bench/.deps, outside the venv, for the Trainer script only."""
    if importlib.util.find_spec("accelerate") is not None:
        return {}
    deps = BENCH / ".deps"
    if not (deps / "accelerate").is_dir():
        print(f"compare: installing accelerate into {deps} (transformers.Trainer needs it)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(deps), "--no-deps",
                        "accelerate>=1.1", "psutil"], check=True)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(deps), os.environ.get("PYTHONPATH")]))}


# ---------------------------------------------------------------- training sections


def tl_train_cmd(ctx: Ctx, backend: str, out: Path) -> list[str]:
    cmd = [ctx.tl, "run", "--backend", backend, "--model", "minilm", "--dataset", "rotten_tomatoes",
           "--epochs", "1", "--batch-size", "32", "--max-length", "128", "--lr", str(ctx.lr), "--seed", str(ctx.seed),
           "--precision", ctx.precision, "--threads", str(ctx.threads), "-o", str(out), "-q", "--json"]
    if not ctx.full:
        cmd += ["--max-train-samples", str(ctx.n_train), "--max-eval-samples", str(ctx.n_eval)]
    return cmd


def reference_cmd(ctx: Ctx, script: str, metrics: Path) -> list[str]:
    data = ctx.work / "data"
    return [ctx.python, str(BENCH / "reference" / script), "--model", str(ctx.model_dir), "--train",
            str(data / "train.jsonl"), "--eval", str(data / "eval.jsonl"), "--metrics-out", str(metrics),
            "--precision", ctx.precision, "--threads", str(ctx.threads), "--lr", str(ctx.lr), "--seed", str(ctx.seed),
            "--device", ctx.device]


def train_sample(ctx: Ctx, name: str, cmd: list[str], metrics_path: Path, env: dict | None = None) -> dict:
    info, _ = measured(ctx, name, cmd, env)
    m = json.loads(metrics_path.read_text())
    sample = {
        "samples_per_second": m["train_samples_per_second"],
        "train_runtime_s": m["train_runtime_s"],
        "eval_accuracy": m["eval_accuracy"],
        "eval_loss": m["eval_loss"],
        "first_step_s": round(m["first_step_unix"] - info["launch_unix"], 3) if m.get("first_step_unix") else None,
        "wall_s": info["wall_s"],
        "cpu_s": round(info["user_s"] + info["sys_s"], 2),
        "others_cores": info["others_cores"],
        "max_rss_mib": info["max_rss_mib"],
        "train_steps": m["train_steps"],
        "num_train_samples": m["num_train_samples"],
        "num_eval_samples": m["num_eval_samples"],
        "precision": m["precision"],
        "tokenize_runtime_s": m.get("tokenize_runtime_s"),
    }
    if (sample["num_train_samples"], sample["num_eval_samples"]) != (ctx.n_train, ctx.n_eval):
        raise RunFailed(f"{name} trained/evaluated on {sample['num_train_samples']}/{sample['num_eval_samples']} "
                        f"examples, expected {ctx.n_train}/{ctx.n_eval}")
    for key in ("batch_shapes", "padded_tokens", "real_tokens", "dtype_policy", "jit_compile", "optimizer",
                "mixed_precision"):
        if key in m:
            sample[key] = m[key]
    return sample


def tl_train(ctx: Ctx, backend: str) -> Callable[[int], dict]:
    def run(r: int) -> dict:
        out = ctx.work / f"run-{backend}-{r}"
        sample = train_sample(ctx, f"tl run --backend {backend}", tl_train_cmd(ctx, backend, out), out / "metrics.json")
        if backend == "torch" and ctx.predict_model is None:
            ctx.predict_model = ctx.work / "predict-model"
            shutil.copytree(out / "model", ctx.predict_model)
        shutil.rmtree(out, ignore_errors=True)
        return sample

    return run


def reference_train(ctx: Ctx, name: str, script: str) -> Callable[[int], dict]:
    def run(r: int) -> dict:
        metrics = ctx.work / f"{script}-{r}.json"
        env = ctx.trainer_env if script == "hf_trainer.py" else None
        return train_sample(ctx, name, reference_cmd(ctx, script, metrics), metrics, env)

    return run


# ---------------------------------------------------------------- other sections


def tokenize_variant(ctx: Ctx, variant: str) -> Callable[[int], dict]:
    def run(r: int) -> dict:
        cmd = [ctx.python, str(BENCH / "tok_speed.py"), variant, "--model", str(ctx.model_dir), "--texts",
               str(ctx.work / "data" / "tokenize.txt"), "--max-length", "128"]
        info, out = measured(ctx, f"tokenize {variant}", cmd)
        res = json.loads(out.strip().splitlines()[-1])
        return {**res, "max_rss_mib": info["max_rss_mib"], "wall_s": info["wall_s"], "others_cores": info["others_cores"]}

    return run


def peak_variant(ctx: Ctx, framework: str, dtype: str) -> Callable[[int], dict]:
    def run(r: int) -> dict:
        cmd = [ctx.python, str(BENCH / "flops.py"), "peak", "--framework", framework, "--dtype", dtype,
               "--threads", str(ctx.threads), "--device", ctx.device, "--repeats", "5",
               "--sizes", *(("4096", "8192") if ctx.device == "cuda" else ("2048", "4096"))]
        info, out = measured(ctx, f"peak {framework} {dtype}", cmd)
        return {**json.loads(out.strip().splitlines()[-1]), "others_cores": info["others_cores"]}

    return run


def ensure_predict_model(ctx: Ctx) -> Path:
    if ctx.predict_model is None:  # train-torch did not run: make the model once, unmeasured
        out = ctx.work / "run-predict-model"
        subprocess.run(tl_train_cmd(ctx, "torch", out), check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", **ctx.device_env()})
        ctx.predict_model = out / "model"
    return ctx.predict_model


def predict_variant(ctx: Ctx, name: str) -> Callable[[int], dict]:
    """Wall time on N and on 2N texts: end-to-end texts/s on 2N; steady-state texts/s = N / (t(2N) - t(N)),
    which cancels start-up and model loading."""

    def cmd(path: Path) -> list[str]:
        model = str(ensure_predict_model(ctx))
        if name.startswith("tl"):
            backend = "torch" if "torch" in name else "tensorflow"
            return [ctx.tl, "predict", "--model", model, "--input", str(path), "--backend", backend, "--json",
                    "--precision", ctx.precision, "--threads", str(ctx.threads)]
        batch = ["--batch-size", "64"] if "64" in name else []
        return [ctx.python, str(BENCH / "reference" / "hf_pipeline.py"), "--model", model, "--input", str(path), *batch,
                "--precision", ctx.precision, "--threads", str(ctx.threads), "--device", ctx.device]

    def run(r: int) -> dict:
        n = ctx.predict_n
        walls, rss, outs, others = [], [], [], []
        for k in (n, 2 * n):
            info, out = measured(ctx, f"{name} on {k} texts", cmd(ctx.work / "data" / f"predict-{k}.txt"))
            lines = [ln for ln in out.splitlines() if ln.strip()]
            if name.startswith("tl") and len(lines) != k:
                raise RunFailed(f"{name} printed {len(lines)} predictions for {k} texts")
            walls.append(info["wall_s"])
            rss.append(info["max_rss_mib"])
            others.append(info["others_cores"])
            outs.append(lines[-1])
        sample = {"wall_n_s": walls[0], "wall_2n_s": walls[1], "end_to_end_texts_per_second": round(2 * n / walls[1], 1),
                  "steady_texts_per_second": round(n / (walls[1] - walls[0]), 1) if walls[1] > walls[0] else None,
                  "max_rss_mib": rss[1], "others_cores": max(others)}
        if not name.startswith("tl"):
            inner = json.loads(outs[1])
            sample["in_process_texts_per_second"] = round(inner["texts"] / inner["predict_s"], 1)
        return sample

    return run


def startup_variant(ctx: Ctx, args: list[str]) -> Callable[[int], dict]:
    def run(r: int) -> dict:
        info, _ = measured(ctx, "tl " + " ".join(args), [ctx.tl, *args])
        return {"wall_s": info["wall_s"], "max_rss_mib": info["max_rss_mib"], "others_cores": info["others_cores"]}

    return run


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def variants(ctx: Ctx, section: str) -> dict[str, Callable[[int], dict]]:
    """The runs of one section; those of a framework this environment lacks (a GPU machine with torch
    alone, say) are left out rather than recorded as failures."""
    if section == "train-torch":
        return {"tl (torch)": tl_train(ctx, "torch"),
                "transformers Trainer": reference_train(ctx, "transformers Trainer", "hf_trainer.py"),
                "classic padded loop": reference_train(ctx, "classic padded loop", "classic_padded.py")}
    if section == "train-tf":
        return {"tl (tensorflow)": tl_train(ctx, "tensorflow"),
                "KerasHub fit": reference_train(ctx, "KerasHub fit", "kerashub_fit.py")}
    if section == "backends":
        return {"tl (torch)": tl_train(ctx, "torch"), "tl (tensorflow)": tl_train(ctx, "tensorflow")}
    if section == "tokenize":
        return {f"tokenize {v}": tokenize_variant(ctx, v) for v in ("tl", "hf-loop", "hf-batch", "kerashub")}
    if section == "peak":
        return {f"{fw} {ctx.precision}": peak_variant(ctx, fw, ctx.precision) for fw in ("torch", "tensorflow")
                if installed(fw)}
    if section == "predict":
        names = ("tl predict (torch)", "tl predict (tensorflow)", "pipeline (batch 1)", "pipeline (batch 64)")
        return {n: predict_variant(ctx, n) for n in names if installed("tensorflow") or "tensorflow" not in n}
    return {"tl --help": startup_variant(ctx, ["--help"]), "tl plugins": startup_variant(ctx, ["plugins"])}


# ---------------------------------------------------------------- summary


def medians(samples: list[dict]) -> dict[str, float]:
    ok = [s for s in samples if "error" not in s]
    keys = {k for s in ok for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: statistics.median(s[k] for s in ok if isinstance(s.get(k), (int, float))) for k in sorted(keys)}


def add_mfu(ctx: Ctx, results: dict) -> dict:
    """Training FLOPs of each training variant (padded, as computed, and useful, at the rows' real lengths)
    and, when the peak section ran, achieved FLOP/s over the GEMM peak of its framework at its precision."""
    peaks = {name: v["median"].get("peak_flops") for name, v in results.get("peak", {}).get("variants", {}).items()}
    cfg = flops.bert_config(ctx.model_dir)
    dtype = "bf16" if ctx.precision == "bf16" else "fp32"
    best = max((v for k, v in peaks.items() if k.endswith(dtype) and v), default=None)
    useful = flops.useful_flops(cfg, ctx.tl_lengths)
    out = {}
    for section in ("train-torch", "train-tf", "backends"):
        for name, v in results.get(section, {}).get("variants", {}).items():
            framework = "tensorflow" if section == "train-tf" or "tensorflow" in name else "torch"
            ok = [s for s in v["samples"] if "error" not in s]
            if not ok:
                continue
            s = ok[0]
            if "batch_shapes" in s:
                shapes = [tuple(x) for x in s["batch_shapes"]]
            elif name.startswith("tl"):
                shapes = ctx.tl_batches
            else:  # padded to 128: every batch is [32, 128], the last one possibly shorter
                shapes = [(min(32, ctx.n_train - i), 128) for i in range(0, ctx.n_train, 32)]
            computed = flops.train_flops(cfg, shapes)
            runtime = v["median"]["train_runtime_s"]
            entry = {
                "padded_tokens_per_sample": round(sum(r * w for r, w in shapes) / ctx.n_train, 1),
                "real_tokens_per_sample": round(sum(ctx.tl_lengths) / ctx.n_train, 1),
                "train_flops": computed, "useful_train_flops": useful,
                "achieved_flops_per_s": computed / runtime, "useful_flops_per_s": useful / runtime,
            }
            peak = peaks.get(f"{framework} {dtype}")
            if peak:
                entry.update({"peak_flops": peak, "peak_of": f"{framework} {dtype}", "mfu": computed / runtime / peak,
                              "useful_mfu": useful / runtime / peak, "best_peak_flops": best,
                              "mfu_vs_best_peak": computed / runtime / best})
            out[f"{section}: {name}"] = entry
    return out


RATIOS = {  # (section, numerator, denominator, metric)
    "tl/Trainer samples/s": ("train-torch", "tl (torch)", "transformers Trainer", "samples_per_second"),
    "tl/classic samples/s": ("train-torch", "tl (torch)", "classic padded loop", "samples_per_second"),
    "tl tf/KerasHub samples/s": ("train-tf", "tl (tensorflow)", "KerasHub fit", "samples_per_second"),
    "tl tf/tl torch samples/s": ("backends", "tl (tensorflow)", "tl (torch)", "samples_per_second"),
    "tl/hf-loop tokenize": ("tokenize", "tokenize tl", "tokenize hf-loop", "texts_per_second"),
    "tl/hf-batch tokenize": ("tokenize", "tokenize tl", "tokenize hf-batch", "texts_per_second"),
    "tl/kerashub tokenize": ("tokenize", "tokenize tl", "tokenize kerashub", "texts_per_second"),
    "tl torch predict/pipeline b1 (steady)": ("predict", "tl predict (torch)", "pipeline (batch 1)",
                                              "steady_texts_per_second"),
    "tl torch predict/pipeline b64 (steady)": ("predict", "tl predict (torch)", "pipeline (batch 64)",
                                               "steady_texts_per_second"),
    "tl tf predict/pipeline b64 (steady)": ("predict", "tl predict (tensorflow)", "pipeline (batch 64)",
                                            "steady_texts_per_second"),
}
DELTAS = {  # accuracy differences in points
    "tl - Trainer accuracy (points)": ("train-torch", "tl (torch)", "transformers Trainer"),
    "tl - classic accuracy (points)": ("train-torch", "tl (torch)", "classic padded loop"),
    "tl tf - KerasHub accuracy (points)": ("train-tf", "tl (tensorflow)", "KerasHub fit"),
    "tl tf - tl torch accuracy (points)": ("backends", "tl (tensorflow)", "tl (torch)"),
}


def ratios(results: dict) -> dict[str, float]:
    out = {}

    def med(section: str, name: str, key: str) -> float | None:
        return results.get(section, {}).get("variants", {}).get(name, {}).get("median", {}).get(key)

    for label, (section, a, b, key) in RATIOS.items():
        x, y = med(section, a, key), med(section, b, key)
        if x and y:
            out[label] = round(x / y, 3)
    if "tl tf/tl torch samples/s" not in out:  # the two train sections ran instead of "backends"
        x, y = med("train-tf", "tl (tensorflow)", "samples_per_second"), med("train-torch", "tl (torch)",
                                                                             "samples_per_second")
        if x and y:
            out["tl tf/tl torch samples/s"] = round(x / y, 3)
    for label, (section, a, b) in DELTAS.items():
        x, y = med(section, a, "eval_accuracy"), med(section, b, "eval_accuracy")
        if x is not None and y is not None:
            out[label] = round(100 * (x - y), 2)
    return out


def auto_device() -> str:
    """cuda where torch sees a CUDA GPU (asked in a child process, so this one stays framework-free), else cpu."""
    if not shutil.which("nvidia-smi") or not installed("torch"):
        return "cpu"
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                         capture_output=True, text=True)
    return "cuda" if out.stdout.strip() == "True" else "cpu"


def auto_precision(device: str) -> str:
    """bf16 where it is fast: a GPU, or a CPU that computes bf16 natively (tl's own rule,
    ``tl.training.hardware``, framework-free); else fp32."""
    from tl.training.hardware import cpu_info

    return "bf16" if device == "cuda" or cpu_info().native_bf16 else "fp32"


def gpu_info() -> list[str]:
    """``nvidia-smi``'s name, memory and driver of each GPU (empty without one)."""
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]


def machine_info() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), [])
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # accelerate, when compare.py installed it for the Trainer script
            found = [d.version for d in md.distributions(path=[str(BENCH / ".deps")])
                     if d.metadata["Name"].lower() == pkg]
            versions[pkg] = f"{found[0]} (bench/.deps)" if found else None
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "core", "backends", "plugins"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split("\n")
    return {"cpu": cpu, "cores_usable": len(os.sched_getaffinity(0)), "memory_gib": round(mem / 2**20, 1),
            "gpus": gpu_info(),
            "cpu_features": [f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f"))],
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "git_commit": git, "uncommitted_changes": [d.strip() for d in dirty if d.strip()]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps of batch 32 (default 60)")
    p.add_argument("--eval-samples", type=int, default=500, help="held-out examples scored (default 500)")
    p.add_argument("--full", action="store_true", help="the whole training split (1 epoch) and held-out split")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 on a GPU or a CPU with AVX-512 BF16 or AMX, else fp32")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where every run computes; auto: cuda where torch sees a CUDA GPU, else cpu")
    p.add_argument("--predict-texts", type=int, default=1000, help="N for the N / 2N prediction runs")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS))
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--name", default="compare", help="results file stem: OUT/NAME.json and OUT/NAME.md")
    p.add_argument("--nice", type=int, default=0,
                   help="add this to the scheduling priority of every run (e.g. -10, as root, on a shared machine)")
    p.add_argument("--keep-work", action="store_true", help="keep run logs and data under OUT/work")
    a = p.parse_args()
    if a.device == "auto":
        a.device = auto_device()
    elif a.device == "cuda" and auto_device() != "cuda":
        p.error("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    if a.precision == "auto":
        a.precision = auto_precision(a.device)
    if a.nice:
        os.nice(a.nice)  # inherited by every run
    work = a.out / f"work-{a.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = Ctx(work=work, threads=a.threads, precision=a.precision, lr=1e-4, seed=0,
              n_train=None if a.full else 32 * a.steps, n_eval=None if a.full else a.eval_samples,
              predict_n=a.predict_texts, full=a.full, device=a.device)
    t_start = time.time()
    load_before = os.getloadavg()
    export_data(ctx)
    if "train-torch" in a.only:
        ctx.trainer_env = trainer_env(ctx)
    sections = [s for s in SECTIONS if s in a.only]
    table = {s: variants(ctx, s) for s in sections}
    results: dict[str, Any] = {s: {"variants": {n: {"samples": []} for n in table[s]}} for s in sections}
    for r in range(a.repeats):
        for s in sections:
            names = list(table[s])
            k = r % len(names)
            for name in names[k:] + names[:k]:  # rotate the order every repeat
                t, load = time.time(), os.getloadavg()[0]
                try:
                    sample = table[s][name](r)
                except (RunFailed, subprocess.CalledProcessError, KeyError, ValueError) as exc:
                    sample = {"error": str(exc)}
                    print(f"compare: FAILED {exc}", file=sys.stderr)
                sample["repeat"], sample["loadavg_1m_before"] = r, load
                results[s]["variants"][name]["samples"].append(sample)
                print(f"[{r + 1}/{a.repeats}] {s} | {name}: {report.brief(sample)} ({time.time() - t:.0f} s)",
                      file=sys.stderr, flush=True)
    for s in sections:
        for v in results[s]["variants"].values():
            v["median"] = medians(v["samples"])
    summary = {
        "settings": {"model": "minilm", "model_dir": str(ctx.model_dir), "dataset": "rotten_tomatoes",
                     "max_length": 128, "batch_size": 32, "lr": ctx.lr, "warmup_ratio": 0.1, "weight_decay": 0.01,
                     "seed": ctx.seed, "precision": ctx.precision, "device": ctx.device, "threads": ctx.threads, "repeats": a.repeats,
                     "niceness": os.getpriority(os.PRIO_PROCESS, 0),
                     "train_samples": ctx.n_train, "eval_samples": ctx.n_eval,
                     "steps": -(-ctx.n_train // 32), "full": a.full, "predict_texts": [ctx.predict_n, 2 * ctx.predict_n],
                     "tokenize_texts": ctx.tokenize_texts},
        "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "total_wall_s": round(time.time() - t_start, 1),
        "commands": ctx.commands,
        "results": results,
        "ratios": ratios(results),
        "mfu": add_mfu(ctx, results),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    md_text = report.markdown(summary)
    (a.out / f"{a.name}.md").write_text(md_text)
    print(md_text)
    if not a.keep_work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
