"""Model FLOPs utilisation (MFU): this machine's dense GEMM peak per framework and precision, and the
training FLOPs of a BERT classifier.

    python bench/flops.py peak --framework torch|tensorflow --dtype fp32|bf16 [--sizes 2048 4096]
                               [--repeats 5] [--threads N] [--device cpu|cuda]

prints, as JSON, the achieved FLOP/s of square matmuls (2·n³ FLOPs each) timed with the framework
itself: one warm-up call, then ``--repeats`` timed calls per size; the peak is the best size's median.

FLOP counting (``forward_flops``): every matmul of the encoder -- Q, K, V and output projections
(4·h² weights a layer) and the feed-forward pair (2·h·i) -- costs 2 FLOPs per weight per token; the
attention scores QKᵀ and the context AV cost 2·L·h each per token (4·L·h a layer, L the padded
length); the pooler and the classifier add 2·(h² + h·labels) per sequence. Embedding look-ups,
LayerNorm, softmax and GELU are not counted. Training = 3 × forward (the backward pass is two
matmuls per forward matmul), i.e. the usual 6 × (matmul parameters) per token plus attention.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


def bert_config(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def matmul_params(cfg: dict) -> int:
    """Weights of the encoder's matmuls (what the 6·N rule counts as N)."""
    h, i = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    return int(cfg["num_hidden_layers"]) * (4 * h * h + 2 * h * i)


def forward_flops(cfg: dict, length: int, num_labels: int = 2) -> float:
    """Forward FLOPs of one sequence computed at ``length`` tokens (padding included)."""
    h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    return 2.0 * length * matmul_params(cfg) + layers * 4.0 * length * length * h + 2.0 * (h * h + h * num_labels)


def train_flops(cfg: dict, batches: Iterable[tuple[int, int]], num_labels: int = 2) -> float:
    """Training FLOPs (forward + backward = 3 × forward) of batches given as (rows, padded width)."""
    return sum(3.0 * rows * forward_flops(cfg, width, num_labels) for rows, width in batches)


def useful_flops(cfg: dict, lengths: Iterable[int], num_labels: int = 2) -> float:
    """Training FLOPs had every row been computed at its own length (no padding)."""
    return sum(3.0 * forward_flops(cfg, int(n), num_labels) for n in lengths)


def tl_batches(model_dir: str | Path, texts: Sequence[str], batch_size: int, max_length: int, seed: int,
               epoch: int = 0) -> tuple[list[tuple[int, int]], list[int]]:
    """The (rows, width) of every training batch tl makes from ``texts`` -- its own tokenizer,
    length-grouped order and dynamic padding (``tl.data.batching``) -- and the real length of each row."""
    from tl.data.batching import train_order
    from tl.data.tokenization import Tokenizer
    from tl.models.inference import encode

    encoded = encode(Tokenizer.from_dir(model_dir), list(texts), None, max_length)
    order = train_order(encoded.lengths, batch_size, seed, epoch)
    batches = [(len(rows), int(encoded.collate(rows).input_ids.shape[1])) for rows in order]
    return batches, [int(n) for n in encoded.lengths]


def _time_torch(n: int, dtype: str, repeats: int, threads: int | None, device: str = "cpu") -> list[float]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3 if device == "cuda" else 1):  # warm-up (and, on a GPU, clocks up)
        torch.matmul(a, b)
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        sync()
        out.append(time.perf_counter() - t)
    return out


def _time_tensorflow(n: int, dtype: str, repeats: int, threads: int | None, device: str = "cpu") -> list[float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised by an earlier size
            pass
    dt = tf.bfloat16 if dtype == "bf16" else tf.float32
    a = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 1)), dt)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 2)), dt)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()  # warm-up and trace
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        matmul(a, b).numpy()  # .numpy() waits for the result
        out.append(time.perf_counter() - t)
    return out


def measure_peak(framework: str, dtype: str, sizes: Sequence[int], repeats: int, threads: int | None,
                 device: str = "cpu") -> dict:
    timer = _time_torch if framework == "torch" else _time_tensorflow
    per_size = {}
    for n in sizes:
        seconds = timer(n, dtype, repeats, threads, device)
        flops = [2.0 * n**3 / s for s in seconds]
        per_size[str(n)] = {"seconds": seconds, "flops": flops, "median_flops": statistics.median(flops)}
    best = max(per_size, key=lambda k: per_size[k]["median_flops"])
    return {"framework": framework, "dtype": dtype, "device": device, "threads": threads, "sizes": per_size, "best_size": int(best),
            "peak_flops": per_size[best]["median_flops"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    peak = sub.add_parser("peak", help="time square matmuls; print JSON")
    peak.add_argument("--framework", choices=("torch", "tensorflow"), required=True)
    peak.add_argument("--dtype", choices=("fp32", "bf16"), required=True)
    peak.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    peak.add_argument("--repeats", type=int, default=5)
    peak.add_argument("--threads", type=int)
    peak.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                      help="cuda: torch on the GPU (TensorFlow places on a visible GPU by itself)")
    a = p.parse_args()
    print(json.dumps(measure_peak(a.framework, a.dtype, a.sizes, a.repeats, a.threads, a.device)))


if __name__ == "__main__":
    main()
