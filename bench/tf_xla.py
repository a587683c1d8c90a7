"""Does XLA (``jit_compile=True``) speed up tl's TensorFlow training here? Both ways, side by side.

    python bench/tf_xla.py [--steps 60] [--threads 1] [--repeats 1]

Runs ``tl run recipes/quickstart.toml --backend tensorflow`` on ``32 * steps`` training examples
(500 held out) in its own process, once as shipped (``jit_compile=False``) and once with Keras'
``Model.compile`` forced to ``jit_compile=True`` (``--child xla``), alternating, and prints each run's
training samples/s, training time and held-out accuracy as JSON, then the ratio of the medians.
Dynamic padding gives a handful of batch widths, and XLA compiles the step again for each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(xla: bool, args: list[str]) -> None:
    if xla:
        import keras

        original = keras.Model.compile

        def compile_with_xla(self, *a, **k):
            k["jit_compile"] = True
            return original(self, *a, **k)

        keras.Model.compile = compile_with_xla
    from tl.cli import main

    sys.argv = ["tl", *args]
    main()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2] == "xla", sys.argv[3:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    runs: dict[str, list[dict]] = {"eager": [], "xla": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for mode in ("eager", "xla") if r % 2 == 0 else ("xla", "eager"):
                cmd = [sys.executable, __file__, "--child", mode, "run", str(ROOT / "recipes" / "quickstart.toml"),
                       "--backend", "tensorflow", "--threads", str(a.threads), "--max-train-samples",
                       str(32 * a.steps), "--max-eval-samples", "500", "-q", "--json", "-o", f"{tmp}/{mode}-{r}"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                m = json.loads(out.stdout.strip().splitlines()[-1])
                row = {"mode": mode, "repeat": r, "train_samples_per_second": m["train_samples_per_second"],
                       "train_runtime_s": m["train_runtime_s"], "eval_accuracy": m["eval_accuracy"]}
                runs[mode].append(row)
                print(json.dumps(row), flush=True)
    eager = statistics.median(x["train_samples_per_second"] for x in runs["eager"])
    xla = statistics.median(x["train_samples_per_second"] for x in runs["xla"])
    print(json.dumps({"eager_samples_per_second": eager, "xla_samples_per_second": xla,
                      "xla_vs_eager": round(xla / eager, 3)}))


if __name__ == "__main__":
    main()
