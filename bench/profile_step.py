"""Where a training step's time goes, torch and TensorFlow side by side: tl's own training loop under
each framework's profiler, the operators put into the same groups.

    python bench/profile_step.py [--backend both|torch|tensorflow] [--steps 10] [--warmup 3]
                                 [--threads 1] [--precision fp32|bf16] [--out bench/results/profile_step]

Trains MiniLM on Rotten Tomatoes with tl's real loop (``backend.train``: tl's tokenizer, length-grouped
batches of 32, dynamic padding, AdamW, clipping, the chosen precision), skips ``--warmup`` steps, then
records ``--steps`` steps: torch under ``torch.profiler``, TensorFlow under ``tf.profiler`` (its XSpace
trace read back: every operator the step function's executor ran). Both backends train the same
batches. Operators go into the same groups on both (matmuls, attention softmax, layer norm, GELU and
dropout, element-wise, casts and layout, embedding, loss, optimizer, clipping, input pipeline); what
no operator accounts for (the step's wall time less its operators: Python, Keras' and the executor's
bookkeeping, the host reading the loss) is "Python / framework"; TensorFlow's one-off tracing and graph
set-up is the first step's time less a median step. MFU divides the model's training FLOPs
(``bench/flops.py``: padded tokens as computed; "useful" counts real tokens only) by the recorded
wall time and by the dense GEMM peak measured afterwards in the same process, same framework,
precision and threads; the matmuls' own rate divides those FLOPs by the matmul group's time.

``--backend both`` (the default) profiles each backend in its own process, then writes
``<out>.json`` and ``<out>.md`` (the side-by-side table); each backend also writes ``<out>-<backend>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402
from workload import train_timed  # noqa: E402

BACKENDS = ("torch", "tensorflow")

#: Group order in the tables.
ORDER = ("matmul", "attention softmax", "layer norm", "gelu / dropout", "elementwise (add, mul, ...)",
         "casts / copies / layout", "embedding", "loss", "optimizer (AdamW)", "gradient clipping", "input pipeline",
         "other operators", "Python / framework (outside operators)")
PYTHON = ORDER[-1]

#: torch operator name -> group. First match wins; matched against the profiler's (self) ops.
TORCH_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")),
    ("attention softmax", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax")),
    ("optimizer (AdamW)", ("adam", "Optimizer.step", "aten::_foreach", "aten::lerp", "aten::addcdiv",
                           "aten::addcmul", "aten::sqrt")),
    ("gradient clipping", ("aten::norm", "aten::linalg_vector_norm", "aten::clamp", "aten::stack")),
    ("layer norm", ("layer_norm",)),
    ("gelu / dropout", ("gelu", "dropout", "aten::bernoulli", "aten::native_dropout")),
    ("casts / copies / layout", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous",
                                 "aten::transpose", "aten::permute", "aten::view", "aten::reshape", "aten::cat")),
    ("embedding", ("embedding",)),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("elementwise (add, mul, ...)", ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::fill_",
                                     "aten::zero_", "aten::where", "aten::sum", "aten::empty")),
]

#: TensorFlow: (group, name-scope keys, op types). Name scopes first (the optimizer's Square is the
#: optimizer's), then types; first match wins.
TF_GROUPS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("gradient clipping", ("clip_by_global_norm", "global_norm"), ("L2Loss",)),
    ("optimizer (AdamW)", ("adam",), ("ResourceApplyAdam",)),
    ("loss", ("loss", "crossentropy"), ("SparseSoftmaxCrossEntropyWithLogits",)),
    ("matmul", (), ("MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
                    "_MklMatMul", "_MklFusedMatMul", "_MklNativeFusedMatMul", "_MklBatchMatMulV2",
                    "_MklFusedBatchMatMulV2", "_MklEinsum")),
    ("attention softmax", ("softmax",), ("Softmax", "_MklSoftmax")),
    ("layer norm", ("layer_norm", "layernorm"), ("_MklLayerNorm", "_FusedLayerNorm")),
    ("gelu / dropout", ("gelu", "dropout"), ("Erf", "Erfc", "StatelessRandomUniformV2",
                                             "StatelessRandomGetKeyCounter")),
    ("embedding", ("embedding",), ("GatherV2", "ResourceGather", "UnsortedSegmentSum")),
    ("input pipeline", ("iteratorgetnext",), ("IteratorGetNext", "OptionalFromValue")),
    ("casts / copies / layout", (), ("Cast", "Transpose", "_MklTranspose", "Identity", "Reshape", "ConcatV2",
                                     "Pad", "Tile", "Slice", "StridedSlice", "StridedSliceGrad", "BroadcastTo",
                                     "Pack", "Unpack", "Squeeze", "ExpandDims", "ConjugateTranspose", "Shape",
                                     "ReadVariableOp")),
    ("elementwise (add, mul, ...)", (), ("Mul", "AddV2", "Add", "AddN", "Sub", "RealDiv", "SelectV2", "Sum",
                                         "Mean", "Square", "Sqrt", "Rsqrt", "RsqrtGrad", "SquaredDifference",
                                         "Neg", "Exp", "BiasAdd", "BiasAddGrad", "Maximum", "Minimum", "Fill",
                                         "ZerosLike", "OnesLike", "GreaterEqual", "Greater", "Less", "Equal",
                                         "NotEqual", "Pow", "_UnaryOpsComposition", "_MklAdd", "_MklAddV2",
                                         "AssignSubVariableOp", "AssignAddVariableOp", "AssignVariableOp")),
]
#: Ops that enclose other ops (their time is the inner ops').
TF_ENCLOSING = {"StatefulPartitionedCall", "PartitionedCall", "While", "If", "StatelessIf", "StatelessWhile",
                "Start"}


def torch_group(name: str) -> str:
    if name.startswith("ProfilerStep"):  # the step's own range: its self time is what no operator ran
        return PYTHON
    low = name.lower()
    for group, keys in TORCH_GROUPS:
        if any(k.lower() in low for k in keys):
            return group
    return "other operators"


def tf_group(scope: str, op_type: str) -> str:
    low = scope.lower()
    for group, scopes, types in TF_GROUPS:
        if any(k in low for k in scopes) or op_type in types:
            return group
    return "other operators"


def prepare(a: argparse.Namespace):
    """MiniLM's directory, the recorded run's batches and settings, the backend and the model."""
    from tl.interfaces import HeadSpec
    from tl.plugins.registry import get_backend
    from tl.training.config import TrainSettings

    work = workload.rotten_tomatoes("minilm", 32 * (1 + a.warmup + a.steps))
    batches = work.batches()
    backend = get_backend(work.registry, a.backend)
    if a.backend == "tensorflow":
        backend.configure(a.threads)
    model = backend.build_model(work.model_dir, HeadSpec("sequence_classification", work.labels), work.tokenizer,
                                init="pretrained", seed=0, info={})
    settings = TrainSettings(epochs=1, batch_size=32, lr=1e-4, weight_decay=0.01, warmup_ratio=0.1, seed=0,
                             precision=a.precision, threads=a.threads)
    return work.model_dir, batches, backend, model, settings


def profile_torch(a, backend, model, batches, settings) -> tuple[list[float], dict[str, dict], dict]:
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    torch.set_num_threads(a.threads)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True,
                 schedule=schedule(wait=0, warmup=a.warmup, active=a.steps, repeat=1)) as prof:
        times = train_timed(backend, model, batches, settings, on_step=lambda step: prof.step())
    groups: dict[str, dict] = {}
    counted = 0.0
    for e in prof.key_averages():
        g = groups.setdefault(torch_group(e.key), {"ms": 0.0, "ops": {}})
        g["ms"] += e.self_cpu_time_total / 1e3
        g["ops"][e.key] = g["ops"].get(e.key, 0.0) + e.self_cpu_time_total / 1e3
        if torch_group(e.key) == "matmul":
            counted += float(e.flops or 0)
    return times, groups, {"framework": f"torch {torch.__version__}", "profiler_matmul_flops": counted}


def profile_tensorflow(a, backend, model, batches, settings) -> tuple[list[float], dict[str, dict], dict]:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="tl-profile-")

    def on_step(step: int) -> None:
        if step == a.warmup:
            tf.profiler.experimental.start(logdir)
        elif step == a.warmup + a.steps:
            tf.profiler.experimental.stop()

    times = train_timed(backend, model, batches, settings, on_step=on_step)
    space = xplane_pb2.XSpace()
    space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    groups: dict[str, dict] = {}
    functions: set[str] = set()
    for line in host.lines:
        for e in line.events:
            name = host.event_metadata[e.metadata_id].name
            if line.name == "python" and name.startswith("EagerLocalExecute: __inference_"):
                functions.add(name.split(": ", 1)[1])
            in_data = line.name.startswith("tf_data")
            # operators are "scope:Type"; "Class::Method" events are the executor's and tf.data's own
            if ":" not in name or "::" in name or not (line.name.startswith("tf_Compute") or in_data):
                continue
            scope, op_type = name.rsplit(":", 1)
            if op_type in TF_ENCLOSING or " " in op_type:
                continue
            group = "input pipeline" if in_data else tf_group(scope, op_type)
            g = groups.setdefault(group, {"ms": 0.0, "ops": {}})
            g["ms"] += e.duration_ps / 1e9
            g["ops"][op_type] = g["ops"].get(op_type, 0.0) + e.duration_ps / 1e9
    return times, groups, {"framework": f"tensorflow {tf.__version__}",
                           "oneDNN": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                           "step_functions_run": sorted(functions)}


def run_one(a: argparse.Namespace) -> dict:
    import flops

    model_dir, batches, backend, model, settings = prepare(a)
    profiler = profile_torch if a.backend == "torch" else profile_tensorflow
    times, groups, extra = profiler(a, backend, model, batches, settings)
    recorded_times = times[a.warmup:a.warmup + a.steps]
    recorded = batches[a.warmup:a.warmup + a.steps]
    wall_ms = sum(recorded_times) * 1e3
    ops_ms = sum(g["ms"] for name, g in groups.items() if name != PYTHON)
    python = groups.setdefault(PYTHON, {"ms": 0.0, "ops": {}})
    python["ms"] = max(python["ms"], wall_ms - ops_ms)
    steps = len(recorded_times)
    for g in groups.values():
        g["per_step_ms"] = round(g["ms"] / steps, 1)
        g["share"] = round(g["ms"] / wall_ms, 4)
        g["ops"] = {k: round(v, 1) for k, v in sorted(g["ops"].items(), key=lambda kv: -kv[1])[:6]}
        g["ms"] = round(g["ms"], 1)
    peak = flops.measure_peak(a.backend, a.precision, [2048], 3, a.threads)["peak_flops"]
    cfg = flops.bert_config(model_dir)
    model_flops = flops.train_flops(cfg, [(len(b), b.input_ids.shape[1]) for b in recorded])
    useful = flops.useful_flops(cfg, [int(n) for b in recorded for n in b.attention_mask.sum(axis=1)])
    wall_s = wall_ms / 1e3
    matmul_s = groups.get("matmul", {}).get("ms", 0.0) / 1e3
    median = statistics.median(recorded_times)
    return {
        "backend": a.backend,
        **extra,
        "settings": {k: v for k, v in vars(a).items() if k != "out"},
        "step_ms_median": round(median * 1e3, 1),
        "step_ms_all": [round(t * 1e3, 1) for t in times],
        "first_step_s": round(times[0], 2),
        "first_step_extra_s": round(times[0] - median, 2),
        "steps_recorded": steps,
        "widths": [int(b.input_ids.shape[1]) for b in recorded],
        "mean_padded_width": round(statistics.mean(b.input_ids.shape[1] for b in recorded), 1),
        "wall_s": round(wall_s, 3),
        "operators_s": round(ops_ms / 1e3, 3),
        "gemm_peak_gflops": round(peak / 1e9, 1),
        "mfu": round(model_flops / wall_s / peak, 4),
        "mfu_useful": round(useful / wall_s / peak, 4),
        "matmul_gflops": round(model_flops / matmul_s / 1e9, 1) if matmul_s else None,
        "matmul_efficiency": round(model_flops / matmul_s / peak, 4) if matmul_s else None,
        "groups": {k: groups[k] for k in ORDER if k in groups},
    }


def table(results: dict[str, dict]) -> list[str]:
    names = list(results)
    head = ", ".join(f"{r['framework']}" for r in results.values())
    r0 = next(iter(results.values()))
    s = r0["settings"]
    lines = [f"**Where a training step goes** — MiniLM, batch 32, {s['precision']}, {s['threads']} thread(s), "
             f"{r0['steps_recorded']} steps after {s['warmup']} warm-up, the same batches on both (mean padded "
             f"width {r0['mean_padded_width']}); {head}.", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, fn) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in results.values()) + " |")

    row("median step", lambda r: f"{r['step_ms_median']:.0f} ms")
    row("first step (tracing, set-up)", lambda r: f"{r['first_step_s']:.1f} s (+{r['first_step_extra_s']:.1f} s)")
    row("traced step functions run while recorded (1: no retracing)",
        lambda r: str(len(r["step_functions_run"])) if "step_functions_run" in r else "— (eager)")
    row("MFU (useful tokens)", lambda r: f"{r['mfu']:.0%} ({r['mfu_useful']:.0%})")
    row("matmuls' own rate, % of the GEMM peak",
        lambda r: f"{r['matmul_gflops']} GFLOP/s, {r['matmul_efficiency']:.0%} of {r['gemm_peak_gflops']}")
    for group in ORDER:
        if not any(group in r["groups"] for r in results.values()):
            continue

        def cell(r, group=group) -> str:
            g = r["groups"].get(group)
            if not g:
                return "—"
            ops = ", ".join(f"`{k}`" for k in list(g["ops"])[:2])
            return f"{g['share']:.1%} · {g['per_step_ms']:.0f} ms" + (f" ({ops})" if ops else "")
        row(group, cell)
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("both", *BACKENDS), default="both")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "profile_step")
    a = p.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.backend != "both":
        result = run_one(a)
        a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        print("\n".join(table({a.backend: result})))
        return
    env = {**os.environ, **{k: str(a.threads) for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                                         "TF_NUM_INTEROP_THREADS", "RAYON_NUM_THREADS")}}
    results = {}
    for backend in BACKENDS:
        out = a.out.with_name(f"{a.out.name}-{backend}")
        cmd = [sys.executable, __file__, "--backend", backend, "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--threads", str(a.threads), "--precision", a.precision, "--out", str(out)]
        subprocess.run(cmd, check=True, env=env)
        results[backend] = json.loads(out.with_suffix(".json").read_text())
    command = f"python bench/profile_step.py --steps {a.steps} --warmup {a.warmup} --threads {a.threads} " \
              f"--precision {a.precision}"
    a.out.with_suffix(".json").write_text(json.dumps({"command": command, **results}, indent=2) + "\n")
    lines = table(results)
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
