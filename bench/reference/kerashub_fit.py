"""Reference: fine-tune with a plain KerasHub ``BertTextClassifier.fit`` script on TensorFlow.

    python bench/reference/kerashub_fit.py --model DIR --train train.jsonl --eval eval.jsonl \
        --metrics-out metrics.json [--precision bf16|fp32] [--threads N] [--lr 1e-4] [--seed 0]

The classifier, its ``BertTextClassifierPreprocessor`` (``BertTokenizer`` on the checkpoint's vocab.txt,
``sequence_length`` 128, so every row is padded to 128) and the weights come from KerasHub's own
Hugging Face converter, reading the local checkpoint directory (``from_preset(DIR)``; no hub access).
``fit`` runs the preprocessor inside its tf.data pipeline, as KerasHub does for string inputs. Same
optimizer settings as tl: AdamW (weight decay 0.01, none on biases and LayerNorm, epsilon 1e-8), linear
warm-up (10%) and decay, global-norm clipping at 1.0; Keras' ``mixed_bfloat16`` policy for bf16;
batch 32, one epoch, the rows shuffled with the seed. ``compile`` keeps Keras' default jit_compile
("auto", which is off on a CPU-only machine).

Writes metrics in tl's names: train_runtime_s (the ``fit`` call), train_samples_per_second,
first_step_unix, eval_accuracy, eval_loss.
"""

from __future__ import annotations

import os
import time

from common import arguments, eval_metrics, label_space, read_jsonl, write_metrics

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class WarmupLinear(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr: float, total: int, warmup: int) -> None:
        self.lr, self.total, self.warmup = lr, total, warmup

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rising = step / max(1, self.warmup)
        falling = keras.ops.maximum(0.0, (self.total - step) / max(1, self.total - self.warmup))
        return self.lr * keras.ops.where(step < self.warmup, rising, falling)


class FirstStep(keras.callbacks.Callback):
    unix: float | None = None

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.unix is None:
            self.unix = time.time()


def main() -> None:
    a = arguments(__doc__)
    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    keras.utils.set_random_seed(a.seed)
    keras.config.set_dtype_policy("mixed_bfloat16" if a.precision == "bf16" else "float32")
    train_texts, train_labels = read_jsonl(a.train)
    eval_texts, eval_labels = read_jsonl(a.eval)
    names, label_id = label_space(train_labels)
    train_y = np.array([label_id[x] for x in train_labels])

    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        str(a.model), sequence_length=a.max_length)
    classifier = keras_hub.models.BertTextClassifier.from_preset(
        str(a.model), num_classes=len(names), preprocessor=preprocessor)
    total = -(-len(train_texts) // a.batch_size)
    optimizer = keras.optimizers.AdamW(learning_rate=WarmupLinear(a.lr, total, int(0.1 * total)),
                                       weight_decay=0.01, epsilon=1e-8, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    classifier.compile(optimizer=optimizer,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=[keras.metrics.SparseCategoricalAccuracy()])
    train_ds = (tf.data.Dataset.from_tensor_slices((train_texts, train_y))
                .shuffle(len(train_texts), seed=a.seed).batch(a.batch_size))
    first = FirstStep()
    t0 = time.perf_counter()
    history = classifier.fit(train_ds, epochs=1, verbose=0, callbacks=[first])
    runtime = time.perf_counter() - t0

    logits = classifier.predict(tf.data.Dataset.from_tensor_slices(eval_texts).batch(64), verbose=0)
    metrics = {
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_second": round(len(train_texts) / runtime, 2),
        "train_steps": int(optimizer.iterations.numpy()),
        "num_train_samples": len(train_texts),
        "num_eval_samples": len(eval_texts),
        "first_step_unix": first.unix,
        "train_loss": float(history.history["loss"][-1]),
        **eval_metrics(logits, eval_labels, label_id),
        "padded_tokens": len(train_texts) * a.max_length,
        "precision": a.precision,
        "dtype_policy": classifier.backbone.dtype_policy.name,
        "jit_compile": bool(classifier.jit_compile),
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
    write_metrics(a.metrics_out, metrics)


if __name__ == "__main__":
    main()
