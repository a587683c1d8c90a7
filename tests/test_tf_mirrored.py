"""MirroredStrategy (one process, several local devices) on CPU: two logical CPU devices stand in for
two GPUs, so the replica path (per-replica shards from the core, one dataset element per replica and
step, gradients summed across replicas before one global clip) runs in CI. The same code runs on
GPUs, where the plan turns it on for 2+ visible GPUs (tests/test_gpu.py, marker ``gpu``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tinybert import make_checkpoint, synthetic_rows, write_csv

pytest.importorskip("tensorflow")

#: eval_loss of 2 replicas vs 1 device with the same effective batch. Measured 7e-10.
LOSS_TOLERANCE = 1e-5

SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import numpy as np

    from tl_tensorflow.runtime import activate
    activate()  # selects Keras' backend before TensorFlow starts
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tl.data.batching import accumulation_split, iter_batches, train_order
    from tl.training.config import TrainSettings
    from tl.data.tables import load_examples
    from tl.interfaces import HeadSpec, TrainCallbacks
    from tl.evaluation.metrics import cross_entropy
    from tl.models.inference import dataset_logits, encode
    from tl.data.tokenization import Tokenizer
    from tl_tensorflow import distributed
    from tl_tensorflow.backend import TensorflowBackend

    ckpt, data, replicas = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    examples = load_examples(data, "text", "label")
    labels = ("negative", "positive")
    tokenizer = Tokenizer.from_dir(ckpt)
    enc = encode(tokenizer, examples.texts, None, 32, np.array([labels.index(x) for x in examples.labels]))
    backend = TensorflowBackend()
    backend.configure(1)
    if replicas > 1:
        backend.strategy = distributed.mirrored(replicas, [d.name for d in tf.config.list_logical_devices("CPU")[:replicas]])
    model = backend.build_model(ckpt, HeadSpec("sequence_classification", labels), tokenizer, init="pretrained",
                                seed=0, info={})
    settings = TrainSettings(epochs=4, batch_size=16, lr=5e-3, weight_decay=0.01, warmup_ratio=0.1, seed=0,
                             precision="fp32", threads=1, grad_accum=2, replicas=replicas)

    def order(epoch):
        return accumulation_split(train_order(enc.lengths, 16, 0, epoch), 2, 1, 0, replicas)

    steps = []
    callbacks = TrainCallbacks(on_step=lambda step, loss, rows: steps.append((loss, rows)),
                               on_epoch_end=lambda epoch, loss: None)
    backend.train(model, lambda e: iter_batches(enc, order(e)), len(order(0)), settings, callbacks)
    strategy = backend.strategy
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync if strategy else 1,
        "eval_loss": cross_entropy(dataset_logits(model, enc), enc.labels),
        "steps": len(steps), "rows": sum(r for _, r in steps), "train_loss": float(np.mean([l for l, _ in steps])),
    }))
''')


def start(tmp_path: Path, ckpt: Path, data: Path, replicas: int) -> subprocess.Popen:
    """One training process (one thread: backend.configure(1)); the test starts both at once, one per core."""
    script = tmp_path / "mirrored.py"
    if not script.exists():
        script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("TF_CONFIG", "WORLD_SIZE", "RANK"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, str(script), str(ckpt), str(data), str(replicas)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow  # 21 s: two virtual CPU devices; with the multi-worker case in -m slow
def test_two_mirrored_replicas_match_one_device(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", dropout=0.0)  # dropout masks differ by shard shape
    data = write_csv(tmp_path / "train.csv", synthetic_rows(400, seed=1))
    procs = [start(tmp_path, ckpt, data, replicas) for replicas in (1, 2)]
    try:
        one, two = (result(p) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert (one["replicas"], two["replicas"]) == (1, 2)
    # every step saw all 16 rows of its batch (400 rows: 25 steps, x 4 epochs), and the model learned
    assert one["steps"] == two["steps"] == 100 and one["rows"] == two["rows"] == 1600
    assert one["eval_loss"] < 0.1
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], abs=LOSS_TOLERANCE)
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=LOSS_TOLERANCE)
