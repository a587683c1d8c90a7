"""The Keras 3 network of tl's BERT classifier on TensorFlow.

The encoder is KerasHub's ``BertBackbone``; its ``pooled_output`` (BERT's pooler, dense + tanh) feeds
dropout and a ``Dense(num_labels)`` head, as in transformers' ``BertForSequenceClassification``; for a
token head its ``sequence_output`` does (``BertForTokenClassification``, which has no pooler: the
backbone's pooler is then frozen and neither loaded nor saved). The network's weights map to
transformers names in ``tl_tensorflow.weights``.

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does): it
imports keras, which picks its backend once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tl.data.batching import IGNORE_INDEX, Batch
from tl.errors import TLError, UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION
from tl.models.hf_checkpoint import CONFIG_NAME

#: transformers' ``hidden_act`` -> the Keras activation of the feed-forward block.
ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: keras.activations.gelu(x, approximate=False),
    "gelu_new": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_fast": lambda x: keras.activations.gelu(x, approximate=True),
    "relu": keras.activations.relu,
    "silu": keras.activations.silu,
    "swish": keras.activations.silu,
}
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
#: Head kind -> the BertBackbone output the head reads. A new head kind is a new entry here (and in
#: ``Capabilities.heads``); ``BertClassifier.summed_loss`` scores either shape of labels.
HEAD_INPUTS = {HEAD_SEQUENCE_CLASSIFICATION: "pooled_output", HEAD_TOKEN_CLASSIFICATION: "sequence_output"}
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


class BertClassifier(keras.Model):
    """BertBackbone -> pooled output (sequence head) or sequence output (token head) -> dropout ->
    Dense(num_labels) (float32 even under bf16)."""

    def __init__(self, backbone: keras_hub.models.BertBackbone, num_labels: int, dropout: float,
                 initializer_range: float, head_kind: str = HEAD_SEQUENCE_CLASSIFICATION, **kwargs) -> None:
        super().__init__(**kwargs)
        if head_kind not in HEAD_INPUTS:
            raise UsageError(f"the tensorflow backend cannot build a {head_kind!r} head (heads: {', '.join(HEAD_INPUTS)})")
        self.head_kind = head_kind
        self.backbone = backbone
        if self.per_token:  # BertForTokenClassification has no pooler: unused, never trained or saved
            backbone.get_layer("pooled_dense").trainable = False
        self.classifier_dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.classifier = keras.layers.Dense(
            num_labels,
            kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
            bias_initializer="zeros",
            dtype="float32",
            name="classifier",
        )

    @property
    def per_token(self) -> bool:
        return self.head_kind == HEAD_TOKEN_CLASSIFICATION

    #: ``--strategy freeze``: the encoder runs in inference mode (no dropout) while the head trains.
    encoder_inference = False

    def call(self, inputs, training=False):
        encoder_training = bool(training) and not self.encoder_inference
        features = self.backbone(inputs, training=encoder_training)[HEAD_INPUTS[self.head_kind]]
        return self.classifier(self.classifier_dropout(features, training=training))

    def summed_loss(self, y, logits):
        """(cross-entropy summed over the scored labels, how many labels were scored): [rows] labels
        with [rows, labels] logits, or [rows, tokens] labels (-100: not scored) with per-token logits."""
        if not self.per_token:
            per_row = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            return tf.reduce_sum(tf.cast(per_row, tf.float32)), tf.cast(tf.shape(y)[0], tf.float32)
        scored = tf.not_equal(y, IGNORE_INDEX)
        per_token = keras.losses.sparse_categorical_crossentropy(tf.where(scored, y, tf.zeros_like(y)), logits,
                                                                 from_logits=True)
        total = tf.reduce_sum(tf.where(scored, tf.cast(per_token, tf.float32), 0.0))
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
            if self.per_token:  # the mean over labelled tokens
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


def _check_architecture(config: dict, source: Path) -> None:
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise UsageError(
            f"{source}/{CONFIG_NAME}: hidden_act {act!r} is not supported by the tensorflow backend "
            f"(supported: {', '.join(ACTIVATIONS)})"
        )
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise UsageError(
            f"{source}/{CONFIG_NAME}: position_embedding_type {kind!r} is not supported by the tensorflow "
            "backend (only 'absolute')"
        )
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")


def build_network(config: dict, num_labels: int, source: Path,
                  head_kind: str = HEAD_SEQUENCE_CLASSIFICATION) -> BertClassifier:
    """The Keras classifier for a transformers BERT config, randomly initialized and built."""
    hidden_dropout = float(config.get("hidden_dropout_prob", 0.1))
    try:
        _check_architecture(config, source)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=int(config["vocab_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            hidden_dim=int(config["hidden_size"]),
            intermediate_dim=int(config["intermediate_size"]),
            dropout=hidden_dropout,
            max_sequence_length=int(config.get("max_position_embeddings", 512)),
            num_segments=int(config.get("type_vocab_size", 2)),
            dtype="float32",
        )
    except KeyError as exc:
        raise UsageError(f"{source}/{CONFIG_NAME} lacks {exc.args[0]!r}") from None
    # BertBackbone hard-codes the tanh-approximated GELU and eps 1e-12; follow the checkpoint's config
    # (BERT uses the exact GELU), so logits match transformers.
    activation = ACTIVATIONS[config.get("hidden_act", "gelu")]
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    backbone.get_layer("embeddings_layer_norm").epsilon = epsilon
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        block.activation = activation
        block._feedforward_intermediate_dense.activation = activation
        block.layer_norm_epsilon = epsilon
        block._self_attention_layer_norm.epsilon = epsilon
        block._feedforward_layer_norm.epsilon = epsilon
    classifier_dropout = config.get("classifier_dropout")
    net = BertClassifier(
        backbone,
        num_labels,
        dropout=hidden_dropout if classifier_dropout is None else float(classifier_dropout),
        initializer_range=float(config.get("initializer_range", 0.02)),
        head_kind=head_kind,
        name="bert_classifier",
    )
    dummy = {name: np.zeros((1, 2), dtype=np.int32) for name in INPUT_NAMES}
    net(dummy, training=False)  # creates the head's variables
    return net


def to_inputs(b: Batch) -> dict[str, np.ndarray]:
    return {
        "token_ids": np.asarray(b.input_ids, dtype=np.int32),
        "segment_ids": np.asarray(b.token_type_ids, dtype=np.int32),
        "padding_mask": np.asarray(b.attention_mask, dtype=np.int32),
    }
