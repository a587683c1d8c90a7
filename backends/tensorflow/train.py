"""The Keras training loop: ``fit`` over tf.data, AdamW, linear warm-up then linear decay, bf16 mixed
precision, global-norm clipping. Same schedule, decay groups and clipping as the torch backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np

from tl.batching import Batch
from tl.config import TrainSettings
from tl.errors import TLError
from tl.interfaces import TrainCallbacks

# keras and tensorflow come through tl_tensorflow.model, which selects Keras' backend before importing it.
from tl_tensorflow import distributed
from tl_tensorflow.model import TensorflowModel, keras, tf, weight_map

MAX_GRAD_NORM = 1.0
ADAM_EPSILON = 1e-8  # torch.optim.AdamW's default (Keras defaults to 1e-7)


def seed_everything(seed: int) -> None:
    """Python, numpy, TensorFlow and Keras' global seed generator."""
    keras.utils.set_random_seed(seed)


def set_threads(threads: int | None) -> None:
    """TensorFlow fixes its thread pools when it first runs an op (building the model does), so
    this only takes effect when called before; otherwise a different request is reported."""
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            warnings.warn(
                f"threads={threads} not applied: TensorFlow's thread pools were already initialized "
                f"(intra-op threads: {current or 'all cores'})",
                RuntimeWarning,
                stacklevel=2,
            )


class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr * factor(step)``: linear warm-up with factor (step+1)/(warmup+1) for ``warmup`` steps, then
    linear decay to 0 at ``total`` (tl_torch.train.linear_schedule, step-for-step)."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int) -> None:
        self.lr = float(lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        rising = (step + 1.0) / (warmup + 1.0)
        falling = keras.ops.maximum(
            0.0, (float(self.total_steps) - step) / float(max(1, self.total_steps - self.warmup_steps))
        )
        return self.lr * keras.ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict:
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


class PresummedAdamW(keras.optimizers.AdamW):
    """AdamW for gradients that ``BertClassifier``'s grouped step has already summed over the
    replicas (devices or workers). Keras' TensorFlow optimizer would sum them itself, but only after
    clipping each replica's part by its own norm; summing first and skipping that second reduction
    clips the whole step's gradient, as in one process."""

    gradients_presummed = True

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def make_optimizer(model: TensorflowModel, settings: TrainSettings, total: int, warmup: int, grouped: bool):
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe). ``grouped``
    (accumulation or several replicas): ``PresummedAdamW``; ``BertClassifier`` accumulates a step's
    micro-batches itself, row-weighted (Keras' ``gradient_accumulation_steps`` averages micro-batch
    means, and its ``cond`` around a cross-replica update TensorFlow refuses: "`merge_call` called
    while defining a new graph or a tf.function")."""
    optimizer = (PresummedAdamW if grouped else keras.optimizers.AdamW)(
        learning_rate=LinearSchedule(settings.lr, total, warmup),
        weight_decay=settings.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=ADAM_EPSILON,
        global_clipnorm=MAX_GRAD_NORM,
    )
    optimizer.exclude_from_weight_decay(var_list=[s.variable for s in weight_map(model.network) if not s.decays])
    if settings.precision == "fp16" and settings.loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_dataset(train_batches: Callable[[int], Iterable[Batch]], epochs: int, steps_per_epoch: int
                 ) -> tf.data.Dataset:
    """Every epoch's batches, one epoch after the other; fit(steps_per_epoch=...) cuts them into epochs.

    The core's length-grouped, dynamically padded batches are collated up front (a few MB per epoch)
    and held as ragged tensors [batch, (rows), (width)], so the tf.data pipeline runs entirely in
    the graph: no Python generator in the step loop (``from_generator``'s iterator also stalls for
    about a minute on tear-down while its worker waits for the GIL). Errors in the data therefore
    surface here, before training starts, as tl's own exceptions."""
    return dataset_factory(train_batches, epochs, steps_per_epoch)()


def dataset_factory(train_batches: Callable[[int], Iterable[Batch]], epochs: int, steps_per_epoch: int,
                    group: int = 0) -> Callable[[], tf.data.Dataset]:
    """``make_dataset``, collated now, the dataset made when called (multi-worker: by the strategy,
    on the worker's input device). ``group`` > 0: each element is a tuple of ``group`` consecutive
    (x, y) micro-batches (the micro-batches of one optimizer step; each keeps its own width)."""
    batches: list[Batch] = []
    for epoch in range(epochs):
        n = 0
        for b in train_batches(epoch):
            batches.append(b)
            n += 1
        if n != steps_per_epoch:
            raise TLError(f"epoch {epoch} had {n} batches, expected steps_per_epoch={steps_per_epoch}")
    if not batches:
        raise TLError("no training batches")
    if group and len(batches) % group:
        raise TLError(f"{len(batches)} micro-batches do not make groups of {group}")

    def dense(x):
        return x.to_tensor() if isinstance(x, tf.RaggedTensor) else x

    def unpack(x, y):
        return {k: dense(v) for k, v in x.items()}, dense(y)

    def slices(part: list[Batch]) -> tf.data.Dataset:
        sizes = np.array([len(b) for b in part], dtype=np.int64)
        widths = np.repeat(np.array([b.input_ids.shape[1] for b in part], dtype=np.int64), sizes)

        def ragged(field: str) -> tf.RaggedTensor:
            flat = np.concatenate([getattr(b, field).reshape(-1) for b in part]).astype(np.int32)
            rows = tf.RaggedTensor.from_row_lengths(flat, widths)
            return tf.RaggedTensor.from_row_lengths(rows, sizes)

        inputs = {"token_ids": ragged("input_ids"), "segment_ids": ragged("token_type_ids"),
                  "padding_mask": ragged("attention_mask")}
        labels = tf.RaggedTensor.from_row_lengths(np.concatenate([b.labels for b in part]).astype(np.int64), sizes)
        return (tf.data.Dataset.from_tensor_slices((inputs, labels))
                .map(unpack, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))

    def make() -> tf.data.Dataset:
        if not group:
            return slices(batches).prefetch(tf.data.AUTOTUNE)
        return tf.data.Dataset.zip(tuple(slices(batches[k::group]) for k in range(group))).prefetch(tf.data.AUTOTUNE)

    return make


class Report(keras.callbacks.Callback):
    """Forwards fit's per-step numbers (one fit step is one optimizer step) to tl's callbacks."""

    def __init__(self, callbacks: TrainCallbacks) -> None:
        super().__init__()
        self.callbacks = callbacks
        self.step = 0
        self.loss_sum = 0.0
        self.n_batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.loss_sum = 0.0
        self.n_batches = 0

    def on_train_batch_end(self, batch, logs=None):
        # multi-replica steps report shape-[1] values (see BertClassifier._grouped_train_step)
        loss, rows = float(np.ravel(logs["loss"])[0]), int(np.ravel(logs["samples"])[0])
        self.loss_sum += loss
        self.n_batches += 1
        self.step += 1
        self.callbacks.on_step(self.step, loss, rows)

    def on_epoch_end(self, epoch, logs=None):
        self.callbacks.on_epoch_end(epoch, self.loss_sum / max(1, self.n_batches))


def train(model: TensorflowModel, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
          settings: TrainSettings, callbacks: TrainCallbacks) -> None:
    """``steps_per_epoch`` counts micro-batches (over this process's replicas). Several replicas
    (workers x local devices): each trains on its shard of every micro-batch under the strategy
    ``configure()`` set up; the model must have been built under it (``build_model`` does)."""
    set_threads(settings.threads)
    seed_everything(settings.seed)
    model.set_precision(settings.precision)
    network = model.network
    strategy = distributed.strategy()
    replicas = settings.world_size * settings.replicas
    if replicas > 1 and (strategy is None or strategy.num_replicas_in_sync != replicas
                         or network.distribute_strategy is not strategy):
        raise TLError(f"training on {replicas} replicas needs the backend configured (configure()) and the "
                      "model built under its tf.distribute strategy")
    accum = max(1, settings.grad_accum)
    per_step = accum * settings.replicas  # micro-batches of one optimizer step in this process
    grouped = per_step > 1 or replicas > 1
    total = steps_per_epoch // per_step * settings.epochs  # optimizer steps
    warmup = int(settings.warmup_ratio * total)
    network.grouped_steps = grouped
    with distributed.scope():
        network.compile(
            optimizer=make_optimizer(model, settings, total, warmup, grouped),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,  # XLA recompiles for every padded width; slower on CPU with dynamic shapes
        )
    if total == 0:
        for epoch in range(settings.epochs):
            callbacks.on_epoch_end(epoch, 0.0)
        return
    # grouped: one element per replica and optimizer step, a tuple of its ``accum`` micro-batches;
    # a strategy hands a process's consecutive elements to its replicas in turn
    make = dataset_factory(train_batches, settings.epochs, steps_per_epoch, group=accum if grouped else 0)
    report = Report(callbacks)
    if strategy is None:
        network.fit(make(), epochs=settings.epochs, steps_per_epoch=steps_per_epoch // per_step, shuffle=False,
                    verbose=0, callbacks=[report])
        return
    with strategy.scope():
        network.fit(distributed.distribute(strategy, make), epochs=settings.epochs,
                    steps_per_epoch=steps_per_epoch // per_step, shuffle=False, verbose=0, callbacks=[report])
