"""The operator groups behind the gap between tl's TensorFlow and torch training steps, each measured
alone at MiniLM's shapes, the two frameworks side by side.

    .venv/bin/python bench/op_groups.py [--repeats 30] [--threads 1] [--out bench/results] [--name op_groups]

``bench/profile_step.py`` says where a whole step's time goes on each backend, but each framework's
profiler adds its own overhead per operator, so its groups cannot be compared across frameworks to
the millisecond. This times the groups that differ, forward and backward, outside any profiler,
in one process (both frameworks on ``--threads`` threads; medians of ``--repeats`` after two warm-up
calls), at the shapes of MiniLM-L6-H384 with batches of 32 and the quick-start's mean padded width 35:

- layer norm over [32, 35, 384] (13 per step): Keras' ``LayerNormalization`` (KerasHub builds the
  encoders with it) against ``torch.nn.LayerNorm``;
- GELU over [32, 35, 1536] (6 per step): TensorFlow's ``tf.nn.gelu`` (what Keras runs), tl's
  ``gelu_exact`` (what tl's TensorFlow families run) and ``torch.nn.functional.gelu``;
- dropout, p = 0.1, over [32, 35, 384] (13 per step: embeddings, each layer's attention output and
  feed-forward output) and over the attention probabilities [32, 12, 35, 35] (6 per step): Keras'
  ``Dropout`` against ``torch.nn.functional.dropout``;
- the AdamW step over MiniLM's 22.6M parameters (its real variable shapes, decay on the matrices):
  tl's ``TLAdamW`` (``apply`` in a ``tf.function``) against ``torch.optim.AdamW(fused=True)``.

Per step, the gap of each group is (TensorFlow - torch) x its count per step; the sum is what these
groups cost the TensorFlow step. Writes OUT/NAME.json and OUT/NAME.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BATCH, WIDTH, HIDDEN, FFN, HEADS, LAYERS, VOCAB, POSITIONS = 32, 35, 384, 1536, 12, 6, 30522, 512


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn()`` after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def minilm_shapes() -> list[tuple[tuple[int, ...], bool]]:
    """MiniLM-L6-H384's trainable tensors with a sequence-classification head: (shape, decays)."""
    shapes = [((VOCAB, HIDDEN), True), ((POSITIONS, HIDDEN), True), ((2, HIDDEN), True), ((HIDDEN,), False),
              ((HIDDEN,), False)]
    for _ in range(LAYERS):
        shapes += [((HIDDEN, HIDDEN), True), ((HIDDEN,), False)] * 4  # q, k, v, attention output
        shapes += [((HIDDEN,), False)] * 2  # attention layer norm
        shapes += [((HIDDEN, FFN), True), ((FFN,), False), ((FFN, HIDDEN), True), ((HIDDEN,), False)]
        shapes += [((HIDDEN,), False)] * 2  # output layer norm
    shapes += [((HIDDEN, HIDDEN), True), ((HIDDEN,), False), ((HIDDEN, 2), True), ((2,), False)]  # pooler, head
    return shapes


def tensorflow_groups(repeats: int) -> dict[str, float]:
    import keras
    import tensorflow as tf

    from tl_tensorflow.network import gelu_exact
    from tl_tensorflow.train import TLAdamW

    hidden = tf.random.normal([BATCH, WIDTH, HIDDEN], seed=1)
    wide = tf.random.normal([BATCH, WIDTH, FFN], seed=2)
    probs = tf.random.uniform([BATCH, HEADS, WIDTH, WIDTH], seed=4)

    def backward(layer: Callable, x: tf.Tensor, weights: list) -> Callable[[], object]:
        upstream = tf.random.normal(x.shape, seed=3)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return tape.gradient(y, [x, *weights], output_gradients=upstream)

        return step

    norm = keras.layers.LayerNormalization(epsilon=1e-12)
    norm.build([None, None, HIDDEN])
    dropout = keras.layers.Dropout(0.1, seed=0)
    out = {
        "layer norm": timed(backward(norm, hidden, norm.trainable_variables), repeats),
        "gelu (tf.nn.gelu)": timed(backward(lambda x: tf.nn.gelu(x, approximate=False), wide, []), repeats),
        "gelu": timed(backward(gelu_exact, wide, []), repeats),
        "dropout": timed(backward(lambda x: dropout(x, training=True), hidden, []), repeats),
        "dropout (attention probabilities)": timed(backward(lambda x: dropout(x, training=True), probs, []), repeats),
    }
    shapes = minilm_shapes()
    variables = [keras.Variable(tf.random.normal(s, stddev=0.02, seed=i), name=f"w{i}") for i, (s, _) in enumerate(shapes)]
    grads = [tf.random.normal(s, stddev=1e-3, seed=100 + i) for i, (s, _) in enumerate(shapes)]
    optimizer = TLAdamW(decays={id(v): d for v, (_, d) in zip(variables, shapes, strict=True)}, weight_decay_rate=0.01,
                        learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8, global_clipnorm=1.0)
    optimizer.build(variables)
    out["AdamW step (with clipping)"] = timed(tf.function(lambda: optimizer.apply(grads, variables)), repeats)
    return out


def torch_groups(repeats: int) -> dict[str, float]:
    import torch

    torch.manual_seed(0)

    def backward(layer: Callable, shape: tuple[int, ...]) -> Callable[[], object]:
        x = torch.randn(shape, requires_grad=True)
        upstream = torch.randn(shape)

        def step():
            x.grad = None
            layer(x).backward(upstream)

        return step

    norm = torch.nn.LayerNorm(HIDDEN, eps=1e-12)
    out = {
        "layer norm": timed(backward(norm, (BATCH, WIDTH, HIDDEN)), repeats),
        "gelu": timed(backward(torch.nn.functional.gelu, (BATCH, WIDTH, FFN)), repeats),
        "dropout": timed(backward(lambda x: torch.nn.functional.dropout(x, 0.1, True), (BATCH, WIDTH, HIDDEN)),
                         repeats),
        "dropout (attention probabilities)": timed(
            backward(lambda x: torch.nn.functional.dropout(x, 0.1, True), (BATCH, HEADS, WIDTH, WIDTH)), repeats),
    }
    shapes = minilm_shapes()
    params = [torch.nn.Parameter(torch.randn(s) * 0.02) for s, _ in shapes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    decay = [p for p, (_, d) in zip(params, shapes, strict=True) if d]
    rest = [p for p, (_, d) in zip(params, shapes, strict=True) if not d]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                  lr=1e-4, fused=True)

    def step():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    out["AdamW step (with clipping)"] = timed(step, repeats)
    return out


#: Calls per training step of MiniLM-L6.
PER_STEP = {"layer norm": 13, "gelu": 6, "dropout": 13, "dropout (attention probabilities)": 6,
            "AdamW step (with clipping)": 1}


def table(result: dict) -> str:
    tf_ms, torch_ms = result["tensorflow_ms"], result["torch_ms"]
    lines = [f"**Operator groups alone, forward + backward** — MiniLM-L6 shapes (batch {BATCH}, width {WIDTH}), "
             f"fp32, {result['settings']['threads']} thread(s), medians of {result['settings']['repeats']}; "
             f"{result['versions']}.", "",
             "| group | TensorFlow, ms | torch, ms | TensorFlow ÷ torch | per step | TensorFlow − torch per step, ms |",
             "|---|---|---|---|---|---|"]
    for group, count in PER_STEP.items():
        a, b = tf_ms[group], torch_ms[group]
        lines.append(f"| {group} | {a:.2f} | {b:.2f} | {a / b:.2f}× | {count} | {(a - b) * count:+.1f} |")
    lines.append(f"| gelu, TensorFlow's `tf.nn.gelu` (before tl's) | {tf_ms['gelu (tf.nn.gelu)']:.2f} | "
                 f"{torch_ms['gelu']:.2f} | {tf_ms['gelu (tf.nn.gelu)'] / torch_ms['gelu']:.2f}× | 6 | "
                 f"{(tf_ms['gelu (tf.nn.gelu)'] - torch_ms['gelu']) * 6:+.1f} |")
    lines += ["", f"Sum of the gaps per step: **{result['gap_per_step_ms']:+.1f} ms**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--name", default="op_groups")
    a = p.parse_args()
    os.environ.update({"OMP_NUM_THREADS": str(a.threads), "KERAS_BACKEND": "tensorflow",
                       "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    from tl_tensorflow.runtime import activate, set_threads

    activate()  # oneDNN on, as tl trains
    set_threads(a.threads)
    import tensorflow as tf
    import torch
    from compare import machine_info  # bench/ is this script's directory

    torch.set_num_threads(a.threads)
    tf_ms = tensorflow_groups(a.repeats)
    torch_ms = torch_groups(a.repeats)
    gap = sum((tf_ms[g] - torch_ms[g]) * n for g, n in PER_STEP.items())
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {"repeats": a.repeats, "threads": a.threads, "batch": BATCH, "width": WIDTH},
              "machine": machine_info(),
              "versions": f"torch {torch.__version__}, tensorflow {tf.__version__}",
              "tensorflow_ms": {k: round(v, 3) for k, v in tf_ms.items()},
              "torch_ms": {k: round(v, 3) for k, v in torch_ms.items()},
              "per_step": PER_STEP, "gap_per_step_ms": round(gap, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (a.out / f"{a.name}.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
