"""The Keras training loop: ``fit`` over tf.data, AdamW, linear warm-up then linear decay, bf16 mixed
precision, global-norm clipping. Same schedule, decay groups and clipping as the torch backend.

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tl import faults
from tl.data.batching import Batch
from tl.errors import TLError
from tl.interfaces import TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.ledger import Ledger
from tl.training.oom import OomRetry, split_group
from tl.training.resume import host_rng_state, set_host_rng_state
from tl_tensorflow import distributed, strategies
from tl_tensorflow.model import TensorflowModel
from tl_tensorflow.runtime import graph_rewrites_off, set_threads
from tl_tensorflow.weights import weight_map

MAX_GRAD_NORM = 1.0
ADAM_EPSILON = 1e-8  # torch.optim.AdamW's default (Keras defaults to 1e-7)
PREFETCH = 2  # collated micro-batches (or groups of them) unpacked ahead of the training step


def seed_everything(seed: int) -> None:
    """Python, numpy, TensorFlow and Keras' global seed generator."""
    keras.utils.set_random_seed(seed)


class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr * factor(step)``: linear warm-up with factor (step+1)/(warmup+1) for ``warmup`` steps, then
    linear decay to 0 at ``total`` (tl.training.schedule.linear_schedule, step-for-step)."""

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


class TLAdamW(keras.optimizers.Adam):
    """torch's AdamW, with a learning-rate factor per variable (``lr_factors``: discriminative rates;
    0 freezes a variable: no update, no weight decay and, with ``mask_frozen``, no part in the
    gradient clip). Weight decay is decoupled and comes before the Adam update, as in torch.

    ``presummed``: the gradients were already summed over the replicas by ``Classifier``'s
    grouped step. Keras' TensorFlow optimizer would sum them itself, but only after clipping each
    replica's part by its own norm; summing first and skipping that second reduction clips the whole
    step's gradient, as in one process."""

    def __init__(self, *, decays: dict[int, bool], weight_decay_rate: float, presummed: bool = False,
                 mask_frozen: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self._decays_by_id = decays  # id(keras variable) -> decays
        self.weight_decay_rate = float(weight_decay_rate)
        self.gradients_presummed = presummed
        self.mask_frozen = mask_frozen

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._index = {self._var_key(v): i for i, v in enumerate(variables)}
        self._decays = [self._decays_by_id.get(id(v), False) for v in variables]
        self.lr_factors = self.add_variable(shape=(len(variables),), initializer="ones", dtype="float32",
                                            name="lr_factors")

    def set_factors(self, factors: list[float]) -> None:
        self.lr_factors.assign(np.asarray(factors, dtype=np.float32))

    def apply(self, grads, trainable_variables=None):
        if self.mask_frozen:
            grads = [_scaled(g, tf.cast(self.lr_factors[i] > 0, g.dtype)) if g is not None else None
                     for i, g in enumerate(grads)]
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        """One variable's update (Keras' per-variable path: several replicas)."""
        i = self._index[self._var_key(variable)]
        dtype = tf.as_dtype(variable.dtype)
        lr = tf.cast(learning_rate, dtype) * tf.cast(self.lr_factors[i], dtype)
        self._apply_one(gradient, variable, lr, i, self._constants(dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Every variable's update, with the step's scalars (bias corrections, Adam's constants, each
        variable's rate) made once rather than per variable: the optimizer's part of tracing the step
        function (the first step's cost) went from 1.6 s to 0.7 s for MiniLM. Under a tf.distribute
        strategy, Keras' own path (``update_step`` per variable in the strategy's update context)."""
        if tf.distribute.has_strategy():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        rates = tf.unstack(tf.cast(learning_rate, tf.float32) * self.lr_factors)
        constants = {tf.float32: self._constants(tf.float32)}
        for gradient, variable in zip(grads, trainable_variables, strict=True):
            i = self._index[self._var_key(variable)]
            dtype = tf.as_dtype(variable.dtype)  # Keras variables give a name
            if dtype not in constants:
                constants[dtype] = self._constants(dtype)
            self._apply_one(gradient, variable, tf.cast(rates[i], dtype), i, constants[dtype])

    def _constants(self, dtype) -> dict:
        """This step's scalars of ``ResourceApplyAdam`` in ``dtype``, and the weight-decay rate."""
        step = tf.cast(self.iterations + 1, dtype)
        beta1, beta2 = tf.constant(self.beta_1, dtype), tf.constant(self.beta_2, dtype)
        return {"beta1_power": tf.pow(beta1, step), "beta2_power": tf.pow(beta2, step), "beta1": beta1,
                "beta2": beta2, "epsilon": tf.constant(self.epsilon, dtype),
                "decay": tf.constant(self.weight_decay_rate, dtype)}

    def _apply_one(self, gradient, variable, lr, i: int, constants: dict) -> None:
        """Decoupled weight decay, then Adam in TensorFlow's fused kernel (``ResourceApplyAdam``: one
        pass over the variable and its two slots, where Keras' Adam runs ten element-wise ops, each a
        pass over memory; the same formula, ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``).
        It took the optimizer from 12% of MiniLM's fp32 step on CPU to 3% (``bench/profile_step.py``)."""
        if self._decays[i] and self.weight_decay_rate:
            # torch's ``p.mul_(1 - lr * wd)``. ``assign`` adopts the product's buffer (its only user):
            # one pass over the variable, where ``assign_sub(p * lr * wd)`` made the product, then read
            # both and wrote (MiniLM's decay on one CPU thread: 23 -> 15 ms a step, half of it the
            # embedding matrix).
            variable.assign(variable * (1.0 - constants["decay"] * lr))
        if isinstance(gradient, tf.IndexedSlices):  # not from tl's train steps (they densify)
            super().update_step(gradient, variable, lr)
            return
        slot = self._get_variable_index(variable)
        c = constants
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[slot].handle, v=self._velocities[slot].handle,
            beta1_power=c["beta1_power"], beta2_power=c["beta2_power"], lr=lr, beta1=c["beta1"], beta2=c["beta2"],
            epsilon=c["epsilon"], grad=tf.cast(gradient, variable.dtype), use_locking=False)

    def _clip_gradients(self, grads):
        """Clipping by global norm with ``tf.clip_by_global_norm`` (one fused ``L2Loss`` per tensor
        for the norm, where Keras squares each gradient into a new tensor and then sums it)."""
        if not (self.global_clipnorm and self.global_clipnorm > 0):
            return super()._clip_gradients(grads)
        present = [g for g in grads if g is not None]
        clipped = iter(tf.clip_by_global_norm(present, self.global_clipnorm)[0])
        return [None if g is None else next(clipped) for g in grads]

    def _all_reduce_sum_gradients(self, grads_and_vars):
        if self.gradients_presummed:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)


def _scaled(g, factor):
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * factor, g.indices, g.dense_shape)
    return g * factor


def make_optimizer(model: TensorflowModel, settings: TrainSettings, total: int, warmup: int, grouped: bool):
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe). ``grouped``
    (accumulation or several replicas): gradients come pre-summed; ``Classifier`` accumulates a
    step's micro-batches itself, row-weighted (Keras' ``gradient_accumulation_steps`` averages
    micro-batch means, and its ``cond`` around a cross-replica update TensorFlow refuses: "`merge_call`
    called while defining a new graph or a tf.function")."""
    optimizer = TLAdamW(
        learning_rate=LinearSchedule(settings.lr, total, warmup),
        decays={id(s.variable): s.decays for s in weight_map(model.network)},
        weight_decay_rate=settings.weight_decay,
        presummed=grouped,
        mask_frozen=settings.strategy.name == "gradual-unfreeze",
        beta_1=0.9,
        beta_2=0.999,
        epsilon=ADAM_EPSILON,
        global_clipnorm=MAX_GRAD_NORM,
    )
    if settings.precision == "fp16" and settings.loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def collect(train_batches: Callable[[int], Iterable[Batch]], epochs: int, steps_per_epoch: int | Callable[[int], int],
            start_epoch: int = 0, skip: int = 0) -> list[Batch]:
    """Every epoch's micro-batches from ``start_epoch`` on, one epoch after the other, less the first
    ``skip`` of ``start_epoch`` (already trained before a resume). ``steps_per_epoch``: the micro-batches
    each epoch must have, or a function of the epoch (``Ledger.micro_batches``: --max-steps cuts the last)."""
    batches: list[Batch] = []
    for epoch in range(start_epoch, epochs):
        expected = steps_per_epoch(epoch) if callable(steps_per_epoch) else steps_per_epoch
        n = 0
        for b in train_batches(epoch):
            if not (epoch == start_epoch and n < skip):
                batches.append(b)
            n += 1
        if n != expected:
            raise TLError(f"epoch {epoch} had {n} batches, expected steps_per_epoch={expected}")
    return batches


def make_dataset(train_batches: Callable[[int], Iterable[Batch]], epochs: int, steps_per_epoch: int
                 ) -> tf.data.Dataset:
    """Every epoch's batches, one epoch after the other.

    The core's length-grouped, dynamically padded batches are collated up front (a few MB per epoch)
    and held as ragged tensors [batch, (rows), (width)], so the tf.data pipeline runs entirely in
    the graph: no Python generator in the step loop (``from_generator``'s iterator also stalls for
    about a minute on tear-down while its worker waits for the GIL). Errors in the data therefore
    surface here, before training starts, as tl's own exceptions."""
    return dataset_factory(collect(train_batches, epochs, steps_per_epoch))()


def dataset_factory(batches: list[Batch], group: int = 0) -> Callable[[], tf.data.Dataset]:
    """The dataset of ``batches`` (see ``make_dataset``), made when called (multi-worker: by the
    strategy, on the worker's input device). ``group`` > 0: each element is a tuple of ``group``
    consecutive (x, y) micro-batches (the micro-batches of one optimizer step on one replica; each
    keeps its own width)."""
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
        flat_labels = np.concatenate([b.labels.reshape(-1) for b in part]).astype(np.int64)
        if part[0].labels.ndim == 2:  # token labels [rows, width] (-100: not scored), shaped like the ids
            labels = tf.RaggedTensor.from_row_lengths(tf.RaggedTensor.from_row_lengths(flat_labels, widths), sizes)
        else:
            labels = tf.RaggedTensor.from_row_lengths(flat_labels, sizes)
        return tf.data.Dataset.from_tensor_slices((inputs, labels)).map(unpack)

    def make() -> tf.data.Dataset:
        data = slices(batches) if not group else tf.data.Dataset.zip(
            tuple(slices(batches[k::group]) for k in range(group)))
        return data.prefetch(PREFETCH).with_options(_untuned())

    return make


def _untuned() -> tf.data.Options:
    """tf.data without autotuning. Its optimizer thread buys nothing here (unpacking a collated
    micro-batch is trivial next to a step), and deleting the iterator at the end of ``fit`` waits
    for that thread: 0 to 12 s per run, at random, on a 2-core CPU (often 4 s, a third of a
    1,600-example ``--strategy freeze`` epoch on MiniLM)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class Report(keras.callbacks.Callback):
    """Hands each of fit's steps (one fit step is one optimizer step) to the core's ``Ledger``: step
    reports, epoch ends, checkpoints and stopping at a step boundary.

    ``begin(batches, per_step)`` before each ``fit``: the micro-batches it trains, ``per_step`` of them
    (this process's) per step. Before each step the fault suite's switch may raise an injected
    out-of-memory error (``tl.faults.simulated_oom``), as the step would. ``in_ledger``: the ledger's
    work (evaluation, checkpoints) is running, so an error then is not the training step's."""

    def __init__(self, ledger: Ledger, first_rows: int,
                 ledger_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        super().__init__()
        self.ledger = ledger
        self.first_rows = first_rows
        self.ledger_context = ledger_context  # around the ledger's work (evaluation: graph rewrites back on)
        self.batches: list[Batch] = []
        self.per_step = 1
        self.done = 0  # steps of the current fit done
        self.in_ledger = False

    def begin(self, batches: list[Batch], per_step: int) -> None:
        self.batches, self.per_step, self.done, self.in_ledger = batches, per_step, 0, False

    def on_train_batch_begin(self, batch, logs=None):
        step = self.ledger.step + 1
        lo = self.done * self.per_step
        for b in self.batches[lo:lo + self.per_step]:
            if faults.simulated_oom(step, len(b), self.first_rows):
                raise tf.errors.ResourceExhaustedError(None, None, f"injected out of memory at step {step} "
                                                                   f"({len(b)} rows)")

    def on_train_batch_end(self, batch, logs=None):
        # multi-replica steps report shape-[1] values (see Classifier._grouped_train_step)
        loss, rows = float(np.ravel(logs["loss"])[0]), int(np.ravel(logs["samples"])[0])
        self.done += 1
        self.in_ledger = True
        with self.ledger_context():
            self.ledger.step_done(loss, rows)
        self.in_ledger = False


def pieces_per_step(batches: list[Batch], per_step: int, split: int) -> list[tuple[list[Batch], int]]:
    """``batches`` (``per_step`` per optimizer step) cut ``split`` ways (``tl.training.oom``), as runs of
    consecutive steps with the same number of micro-batches per step: (micro-batches, per step). A
    micro-batch of fewer rows than ``split`` gives fewer slices, and a grouped dataset needs one count."""
    runs: list[tuple[list[Batch], int]] = []
    for i in range(0, len(batches), per_step):
        pieces = split_group(batches[i:i + per_step], split)
        if runs and runs[-1][1] == len(pieces):
            runs[-1][0].extend(pieces)
        else:
            runs.append((pieces, len(pieces)))
    return runs


def train(model: TensorflowModel, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
          settings: TrainSettings, callbacks: TrainCallbacks, strategy: tf.distribute.Strategy | None = None
          ) -> None:
    """``steps_per_epoch`` counts micro-batches (over this process's replicas). Several replicas
    (workers x local devices): each trains on its shard of every micro-batch under ``strategy`` (the
    one the backend's ``configure()`` made); the model must have been built under it (``build_model``
    does).
    ``callbacks.resume``: continue from that checkpoint (weights, optimizer, RNG, data position).

    Out of memory in a step (``tf.errors.ResourceExhaustedError``): ``fit`` stops, and the step and the
    rest are trained by a new ``fit`` with every micro-batch cut in two (then four...), as grouped steps
    (``tl.training.oom``). Not with several replicas: there it is a one-line ``TLError`` at once."""
    set_threads(settings.threads)
    seed_everything(settings.seed)
    model.strategy = settings.strategy
    with distributed.scope(strategy):
        strategies.prepare(model, settings.strategy, settings.seed)
    model.set_precision(settings.precision)
    network = model.network
    replicas = settings.world_size * settings.replicas
    if replicas > 1 and (strategy is None or strategy.num_replicas_in_sync != replicas
                         or network.distribute_strategy is not strategy):
        raise TLError(f"training on {replicas} replicas needs the backend configured (configure()) and the "
                      "model built under its tf.distribute strategy")
    accum = max(1, settings.grad_accum)
    per_step = accum * settings.replicas  # micro-batches of one optimizer step in this process
    grouped = per_step > 1 or replicas > 1
    ledger = Ledger(settings, steps_per_epoch, callbacks, lambda d: write_state(d, model, optimizer),
                    begin_epoch=lambda epoch: begin_epoch(epoch))
    total, warmup = ledger.total_steps, ledger.warmup_steps
    network.grouped_steps = grouped
    network.class_weights = settings.class_weights  # --class-weights: summed_loss weights each label
    with distributed.scope(strategy):
        optimizer = make_optimizer(model, settings, total, warmup, grouped)
        network.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,  # XLA recompiles for every padded width; slower on CPU with dynamic shapes
        )
        optimizer.build(network.trainable_variables)
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer

    def begin_epoch(epoch: int) -> None:
        """Rates and frozen groups for ``epoch`` (they change per epoch under gradual-unfreeze)."""
        if epoch >= settings.epochs:
            return
        factors = strategies.lr_factors(model, network.trainable_variables, settings.strategy, epoch)
        inner.set_factors(factors)
        callbacks.on_info({"strategy": settings.strategy.name, **strategies.parameter_counts(model, factors)})

    if total == 0:
        ledger.empty_epochs()
        return
    ledger.resume(lambda d: restore(d, model, optimizer))
    if ledger.start_epoch >= settings.epochs:  # resumed at the final checkpoint (to save the model again)
        return
    begin_epoch(ledger.start_epoch)

    # grouped: one element per replica and optimizer step, a tuple of its ``accum`` micro-batches;
    # a strategy hands a process's consecutive elements to its replicas in turn
    batches = collect(train_batches, settings.epochs, ledger.micro_batches, ledger.start_epoch, ledger.skip)
    with graph_rewrites_off() as restored:  # the step graph unoptimized on CPU (see there)
        report = Report(ledger, first_rows=-(-settings.batch_size // (accum * replicas)), ledger_context=restored)
        retry = OomRetry(callbacks.warn, replicas)  # several replicas: no retry (see OomRetry)
        first_step = ledger.step

        def fit(part: list[Batch], group: int) -> None:
            """Train the steps of ``part``, ``group`` micro-batches per step and replica (0: one, ungrouped)."""
            steps = len(part) // (max(1, group) * settings.replicas)
            report.begin(part, max(1, group) * settings.replicas)
            if strategy is None:
                network.fit(dataset_factory(part, group)(), epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0,
                            callbacks=[report])
                return
            with strategy.scope():
                network.fit(distributed.distribute(strategy, dataset_factory(part, group)), epochs=1,
                            steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[report])

        while True:
            done = (ledger.step - first_step) * per_step  # micro-batches trained (a failed step applied nothing)
            try:
                if retry.split == 1:
                    fit(batches[done:], accum if grouped else 0)
                else:
                    for part, group in pieces_per_step(batches[done:], per_step, retry.split):
                        fit(part, group)
                return
            except tf.errors.ResourceExhaustedError:
                if report.in_ledger:  # out of memory in evaluation or a checkpoint, not in the training step
                    raise
            # Out of memory in a step: its traced function applies the optimizer last, so the failed step
            # changed no weight, slot or step counter, and the ledger has not counted it. Redo it and the
            # rest with every micro-batch cut twice as finely, in grouped steps (which sum their
            # micro-batches' gradients, pre-summed for the optimizer) from now on.
            done = (ledger.step - first_step) * per_step
            retry.halve(ledger.step + 1, batches[done:done + per_step])
            if not grouped:
                grouped = network.grouped_steps = inner.gradients_presummed = True
                network.train_function = None  # traced for ungrouped steps: trace again


def rng_variables(model: TensorflowModel) -> list:
    """Keras' seed-generator states (dropout masks come from them), in the network's variable
    order: everything of ``network.variables`` that is not a weight."""
    weights = {id(v) for v in model.network.weights}
    return [v for v in model.network.variables if id(v) not in weights]


def extra_weights(model: TensorflowModel) -> list:
    """Weights outside the transformers layout (LoRA matrices), in the network's order."""
    mapped = {id(s.variable) for s in weight_map(model.network)}
    return [v for v in model.network.weights if id(v) not in mapped and "lora_" in v.path]


def write_state(directory: Path, model: TensorflowModel, optimizer) -> None:
    """Weights (transformers names), optimizer slots and step counter, and every RNG state as
    safetensors (no pickles); Python's and NumPy's RNG states as JSON. The data position is in the
    checkpoint's ``state.json`` (written by the core)."""
    from safetensors.numpy import save_file

    save_file(model.state(merged=False), str(directory / "model.safetensors"))
    tensors = {f"optimizer/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    tensors.update({f"extra/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(extra_weights(model))})
    tensors.update({f"rng/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(rng_variables(model))})
    save_file(tensors, str(directory / "trainer.safetensors"))
    meta = {"optimizer": [v.path for v in optimizer.variables], **host_rng_state()}
    (directory / "trainer.json").write_text(json.dumps(meta), encoding="utf-8")


def restore(directory: Path, model: TensorflowModel, optimizer) -> None:
    from safetensors.numpy import load_file

    try:
        model.load_state(load_file(str(directory / "model.safetensors")), f"{directory}/model.safetensors")
        tensors = load_file(str(directory / "trainer.safetensors"))
        meta = json.loads((directory / "trainer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TLError) as exc:
        raise TLError(f"cannot resume from {directory}: {type(exc).__name__}: {exc}") from None
    slots = sorted(k for k in tensors if k.startswith("optimizer/"))
    seeds = sorted(k for k in tensors if k.startswith("rng/"))
    rngs = rng_variables(model)
    if len(slots) != len(optimizer.variables) or len(seeds) != len(rngs):
        raise TLError(f"cannot resume from {directory}: it holds {len(slots)} optimizer and {len(seeds)} RNG "
                      f"variables, this run has {len(optimizer.variables)} and {len(rngs)} (different options?)")
    for key, v in zip(slots, optimizer.variables, strict=True):
        v.assign(tensors[key])
    for key, v in zip(seeds, rngs, strict=True):
        v.assign(tensors[key])
    extras = sorted(k for k in tensors if k.startswith("extra/"))
    for key, v in zip(extras, extra_weights(model), strict=True):  # LoRA matrices
        v.assign(tensors[key])
    set_host_rng_state(meta)
