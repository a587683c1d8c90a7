"""The Keras 3 network of tl's classifiers on TensorFlow: a family's encoder, then its head.

``Classifier`` is family-agnostic: it runs ``encoder`` (inputs -> whatever the family's head reads:
a sequence output, or a dict with a pooled output) and ``head`` (-> logits, float32), and owns the
loss and the train steps. Each model family (``tl.interfaces.Family``) names a module of its own,
``tl_tensorflow.families.<family>`` for the built-ins, that builds the pair as transformers defines
the family and maps its weights to transformers names (``tl_tensorflow.families`` states the
contract). ``build_network`` dispatches on the checkpoint's family.

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does): it
imports keras, which picks its backend once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tl.data.batching import IGNORE_INDEX, Batch
from tl.errors import TLError, UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME

SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


@tf.custom_gradient
def gelu_exact(x: tf.Tensor):
    """GELU with the normal CDF through ``erf``, as torch and transformers compute it
    (``x * 0.5 * (1 + erf(x / sqrt 2))``), and its derivative written out
    (``cdf(x) + x * pdf(x)``). TensorFlow's ``tf.nn.gelu(approximate=False)`` goes through ``erfc``,
    which Eigen does not vectorize, and is differentiated op by op: forward and backward on MiniLM's
    feed-forward activations ([32, 35, 1536], fp32, one thread) took 9.9 ms there and 6.2 ms here
    (torch's fused kernels: 2.2 ms; ``bench/op_groups.py``), 22 ms of each step over six layers."""
    with tf.name_scope("gelu"):  # profiles group its ops by this name (bench/profile_step.py)
        cdf = 0.5 * (1.0 + tf.math.erf(x * SQRT_HALF))
        y = x * cdf

    def grad(dy: tf.Tensor) -> tf.Tensor:
        with tf.name_scope("gelu_grad"):
            return dy * (cdf + x * INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x)))

    return y, grad


#: transformers' ``hidden_act`` -> the Keras activation of the feed-forward block.
ACTIVATIONS: dict[str, Callable] = {
    "gelu": gelu_exact,  # torch's erf form, its derivative written out (faster than tf.nn.gelu)
    "gelu_new": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_fast": lambda x: keras.activations.gelu(x, approximate=True),
    "relu": keras.activations.relu,
    "silu": keras.activations.silu,
    "swish": keras.activations.silu,
    "tanh": keras.activations.tanh,
}
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
#: The head kinds ``Classifier`` trains (``summed_loss`` scores either shape of labels); a family
#: builds the heads of the kinds it lists in ``Family.architectures``.
HEAD_KINDS = (HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION)
INPUT_SIGNATURE = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}


@contextlib.contextmanager
def _tape(variables):
    """A gradient tape that watches ``variables`` alone. A plain tape watches every trainable
    ``tf.Variable`` the forward pass reads, and Keras' ``trainable = False`` leaves the underlying
    variable trainable: under ``--strategy freeze`` it recorded the frozen encoder and built its
    whole backward pass into the step (about 2,000 of the step graph's 3,400 ops for MiniLM; never
    run, but traced and optimized with every new step function)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([v.value for v in variables])  # Keras variables wrap the tf.Variable the tape reads
        yield tape


class Classifier(keras.Model):
    """A family's ``encoder`` (a Keras layer: the inputs dict -> what the head reads) and ``head`` (a
    Keras layer -> logits; its last layer, ``head.classifier``, a float32 ``Dense(num_labels)``).

    Set by the family's ``build``: ``family`` (the ``Family`` entry), ``num_layers`` (transformer
    blocks: layer-wise strategies), and ``config`` (the checkpoint's config.json)."""

    def __init__(self, encoder: keras.layers.Layer, head: keras.layers.Layer, *, family: Family, config: dict,
                 num_layers: int, head_kind: str = HEAD_SEQUENCE_CLASSIFICATION, **kwargs) -> None:
        super().__init__(**kwargs)
        if head_kind not in HEAD_KINDS:
            raise UsageError(f"the tensorflow backend cannot build a {head_kind!r} head (heads: {', '.join(HEAD_KINDS)})")
        self.head_kind = head_kind
        self.encoder = encoder
        self.head = head
        self.family = family
        self.config = config
        self.num_layers = int(num_layers)

    @property
    def classifier(self) -> keras.layers.Dense:
        """The last Dense of the head (kept float32 under mixed precision)."""
        return self.head.classifier

    @property
    def per_token(self) -> bool:
        return self.head_kind == HEAD_TOKEN_CLASSIFICATION

    #: ``--strategy freeze``: the encoder runs in inference mode (no dropout) while the head trains.
    encoder_inference = False

    def call(self, inputs, training=False):
        encoder_training = bool(training) and not self.encoder_inference
        return self.head(self.encoder(inputs, training=encoder_training), training=training)

    #: Set by tl_tensorflow.train: the loss weight of each label id (``TrainSettings.class_weights``), or None.
    class_weights: tuple[float, ...] | None = None

    def summed_loss(self, y, logits):
        """(cross-entropy summed over the scored labels, how many labels were scored): [rows] labels
        with [rows, labels] logits, or [rows, tokens] labels (-100: not scored) with per-token logits.
        With ``class_weights``, each label's cross-entropy times its label's weight (a weighted sum;
        the count stays the number of scored labels)."""
        weights = None if self.class_weights is None else tf.constant(self.class_weights, tf.float32)
        if not self.per_token:
            per_row = tf.cast(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True), tf.float32)
            if weights is not None:
                per_row *= tf.gather(weights, tf.cast(y, tf.int32))
            return tf.reduce_sum(per_row), tf.cast(tf.shape(y)[0], tf.float32)
        scored = tf.not_equal(y, IGNORE_INDEX)
        target = tf.where(scored, y, tf.zeros_like(y))
        per_token = tf.cast(keras.losses.sparse_categorical_crossentropy(target, logits, from_logits=True), tf.float32)
        if weights is not None:
            per_token *= tf.gather(weights, tf.cast(target, tf.int32))
        total = tf.reduce_sum(tf.where(scored, per_token, 0.0))
        return total, tf.reduce_sum(tf.cast(scored, tf.float32))

    #: Set by tl_tensorflow.train: each element is a tuple of (x, y) micro-batches making one
    #: optimizer step on this replica (gradient accumulation, or several replicas).
    grouped_steps = False

    def train_step(self, data):
        # fit()'s default step reports the running mean of the loss; tl's callbacks want each batch's.
        if self.grouped_steps:
            return self._grouped_train_step(data)
        x, y = data
        variables = self.trainable_variables
        with _tape(variables) as tape:
            logits = self(x, training=True)
            if self.per_token or self.class_weights is not None:  # the (weighted) sum over targets / targets
                total, scored = self.summed_loss(y, logits)
                loss = total / tf.maximum(scored, 1.0)
            else:
                loss = self.compute_loss(x=x, y=y, y_pred=logits, training=True)
            scaled = self.optimizer.scale_loss(loss)  # fp16 loss scaling; the identity otherwise
        # Embedding gradients come as IndexedSlices with a row per token; made dense (repeated token
        # ids summed) so that clipping by global norm sees the true norm, as in torch and in the grouped
        # step (Keras' clip_by_global_norm takes the norm of the slices' rows, smaller when ids repeat).
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in tape.gradient(scaled, variables)]
        self.optimizer.apply(grads, variables)
        return {"loss": loss, "samples": tf.shape(y)[0]}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Under a tf.distribute strategy, Keras 3's fit peeks at the first distributed batch and
        all-reduces it to get input shapes, which fails on dict inputs ("Attempt to convert a value
        ({'token_ids': PerReplica:...}) with an unsupported type") and would need equal shapes on
        every worker. The shapes are known: build from a one-row stand-in batch instead."""
        if iterator is not None and self.distribute_strategy.num_replicas_in_sync > 1:
            stand_in = {name: np.zeros((1, 8), dtype=np.int32) for name in INPUT_NAMES}
            labels = np.zeros((1, 8) if self.per_token else (1,), dtype=np.int64)
            iterator, data_batch = None, (stand_in, labels)  # x, y
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _grouped_train_step(self, data):
        """One optimizer step whose rows are spread over micro-batches (gradient accumulation) and
        replicas (devices or workers). ``data`` is this replica's shards of the step's micro-batches,
        a tuple of (x, y). Each micro-batch's loss is CE_sum(its rows) / rows of the whole step (for a
        token head: over labelled tokens), so the losses and their gradients SUM to the single-process mean loss of the step and its
        gradient (Keras' own accumulation would average micro-batch means instead, weighting a short
        last micro-batch too much). The gradients are summed over the replicas here, once per step,
        before the optimizer, so that clipping by global norm sees the whole step's gradient as in
        one process; the optimizer (``TLAdamW``, presummed) does not reduce again."""
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # under a LossScaleOptimizer
        if not getattr(inner, "gradients_presummed", False):
            raise TLError("grouped train steps need tl_tensorflow.train's optimizer (gradients_presummed)")
        replica = tf.distribute.get_replica_context()
        total = tf.distribute.ReduceOp.SUM
        local_rows = tf.add_n([tf.shape(y)[0] for _, y in data])
        rows = tf.maximum(replica.all_reduce(total, tf.cast(local_rows, tf.float32)), 1.0)
        targets = rows  # token head: the labelled tokens of the whole step
        if self.per_token:
            local = tf.add_n([tf.reduce_sum(tf.cast(tf.not_equal(y, IGNORE_INDEX), tf.float32)) for _, y in data])
            targets = tf.maximum(replica.all_reduce(total, local), 1.0)
        variables = self.trainable_variables
        grads = [tf.zeros(v.shape, dtype=v.dtype) for v in variables]
        loss = tf.zeros((), tf.float32)
        for x, y in data:  # the step's micro-batches: gradients accumulate locally
            with _tape(variables) as tape:
                logits = self(x, training=True)
                micro_loss = self.summed_loss(y, logits)[0] / targets
                scaled = self.optimizer.scale_loss(micro_loss)  # fp16 loss scaling; the identity otherwise
            micro = tape.gradient(scaled, variables)
            grads = [a if g is None else a + tf.convert_to_tensor(g)  # embeddings: IndexedSlices -> dense
                     for a, g in zip(grads, micro, strict=True)]
            loss += micro_loss
        if replica.num_replicas_in_sync > 1:
            grads = replica.all_reduce(total, grads)
            loss = replica.all_reduce(total, loss)
        self.optimizer.apply(grads, variables)
        if replica.num_replicas_in_sync == 1:
            return {"loss": loss, "samples": tf.cast(rows, tf.int32)}
        # Shape [1], not scalars: under MultiWorkerMirroredStrategy Keras 3 reduces step outputs with
        # strategy.reduce(MEAN, v, axis=0), which fails on scalars ("Invalid reduction dimension 0 for
        # input with 0 dimensions", tensorflow/tensorflow#72388). Every replica holds the same values.
        return {"loss": tf.reshape(loss, [1]), "samples": tf.reshape(tf.cast(rows, tf.int32), [1])}


def activation(config: dict, source: Path, key: str = "hidden_act") -> Callable:
    """The Keras function of ``config[key]`` (a transformers activation name), or a one-line error."""
    name = config.get(key, "gelu")
    if name not in ACTIVATIONS:
        raise UsageError(f"{source}/{CONFIG_NAME}: {key} {name!r} is not supported by the tensorflow backend "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def family_module(family: Family):
    """The module that builds ``family`` on TensorFlow (``Family.tensorflow``), imported now."""
    import importlib

    if not family.tensorflow:
        raise UsageError(f"model family {family.name!r} has no TensorFlow implementation; use --backend torch")
    try:
        return importlib.import_module(family.tensorflow)
    except ImportError as exc:
        raise UsageError(f"model family {family.name!r}: cannot import {family.tensorflow} ({exc})") from None


def build_network(config: dict, family: Family, num_labels: int, source: Path,
                  head_kind: str = HEAD_SEQUENCE_CLASSIFICATION) -> Classifier:
    """The Keras classifier of ``family`` for a transformers config, randomly initialized and built."""
    if head_kind not in family.architectures:
        raise UsageError(f"model family {family.name!r} has no {head_kind!r} head "
                         f"(heads: {', '.join(family.architectures)})")
    try:
        net = family_module(family).build(config, family, num_labels, head_kind, source)
    except KeyError as exc:
        raise UsageError(f"{source}/{CONFIG_NAME} lacks {exc.args[0]!r}") from None
    dummy = {name: np.zeros((1, 2), dtype=np.int32) for name in INPUT_NAMES}
    net(dummy, training=False)  # creates every variable
    return net


def to_inputs(b: Batch) -> dict[str, np.ndarray]:
    return {
        "token_ids": np.asarray(b.input_ids, dtype=np.int32),
        "segment_ids": np.asarray(b.token_type_ids, dtype=np.int32),
        "padding_mask": np.asarray(b.attention_mask, dtype=np.int32),
    }
