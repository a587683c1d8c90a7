"""MPNet on TensorFlow: tl's own Keras layers (KerasHub has no MPNet), reproducing transformers'
``MPNetForSequenceClassification`` (no pooler; ``MPNetClassificationHead``: first token -> dropout ->
dense -> tanh -> dropout -> ``out_proj``) and ``MPNetForTokenClassification`` (sequence output ->
dropout -> classifier).

The encoder is ``MPNetModel``'s: word + position embeddings (no token types; position ids counted
past the padding id 1 from the token ids, as RoBERTa's), LayerNorm, dropout; then post-LayerNorm
blocks whose attention scores get one relative position bias, T5-style buckets of ``memory -
context`` looked up in ``encoder.relative_attention_bias`` once and shared by every layer. As in
transformers, the buckets are always 32 over a maximum distance of 128 (``compute_position_bias``
never passes the config's ``relative_attention_num_buckets``, which only sizes the table); they are
precomputed here for relative positions -128..128 (beyond: the outermost bucket), which reproduces
transformers' float32 logarithm bucket for bucket. Deviation: Keras' ``Embedding`` has no
``padding_idx``, so the rows of id 1 are neither zeroed at random initialisation nor frozen; they
only feed padded positions, whose outputs no head or loss reads. Softmax runs in float32 under
mixed precision, as under torch's autocast.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.families.bert import classifier_dense
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs

#: transformers' ``MPNetEmbeddings.padding_idx`` (fixed, whatever ``pad_token_id`` says).
PADDING_IDX = 1
#: The bucketing ``MPNetEncoder.compute_position_bias`` applies (its defaults, never overridden).
NUM_BUCKETS = 32
MAX_DISTANCE = 128


def relative_position_buckets(num_buckets: int = NUM_BUCKETS, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """``MPNetEncoder.relative_position_bucket`` of every relative position ``memory - context`` from
    ``-max_distance`` to ``max_distance`` (index: position + ``max_distance``); farther positions
    fall in the same (last) bucket of their side."""
    n = -np.arange(-max_distance, max_distance + 1)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int32) * half
    n = np.abs(n)
    max_exact = half // 2
    scaled = np.log(np.maximum(n, 1) / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    large = np.minimum(max_exact + scaled.astype(np.int32), half - 1)
    return ret + np.where(n < max_exact, n, large).astype(np.int32)


def _dense(units: int, initializer_range: float, name: str, act=None) -> keras.layers.Dense:
    return keras.layers.Dense(units, activation=act, name=name, bias_initializer="zeros",
                              kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range))


class MPNetSelfAttention(keras.layers.Layer):
    """transformers' ``MPNetSelfAttention``: projections ``q``, ``k``, ``v`` (kernels [hidden, hidden];
    under LoRA, ``q`` and ``v`` are wrapped) and ``o``; the position bias and key mask are given."""

    def __init__(self, hidden: int, heads: int, dropout: float, initializer_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heads, self.head_dim = heads, hidden // heads
        self.q = _dense(hidden, initializer_range, "q")
        self.k = _dense(hidden, initializer_range, "k")
        self.v = _dense(hidden, initializer_range, "v")
        self.o = _dense(hidden, initializer_range, "o")
        self.dropout = keras.layers.Dropout(dropout, name="attention_probs_dropout")

    def _split(self, x, batch):
        return ops.transpose(ops.reshape(x, (batch, -1, self.heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, position_bias, keep, training=False):
        batch = ops.shape(x)[0]
        q, k, v = (self._split(p(x), batch) for p in (self.q, self.k, self.v))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(self.head_dim)
        scores = ops.cast(scores, "float32") + ops.cast(position_bias, "float32")
        # transformers adds the float32 minimum at padded keys: the same probabilities
        scores = ops.where(keep, scores, float(np.finfo(np.float32).min))
        probs = self.dropout(ops.cast(ops.softmax(scores, axis=-1), v.dtype), training=training)
        context = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        return self.o(ops.reshape(context, (batch, -1, self.heads * self.head_dim)))


class MPNetLayer(keras.layers.Layer):
    """transformers' ``MPNetLayer``: attention -> dropout -> residual LayerNorm, then intermediate
    dense (activation) -> output dense -> dropout -> residual LayerNorm."""

    def __init__(self, config: dict, act, **kwargs) -> None:
        super().__init__(**kwargs)
        hidden, init = int(config["hidden_size"]), float(config.get("initializer_range", 0.02))
        dropout, eps = float(config.get("hidden_dropout_prob", 0.1)), float(config.get("layer_norm_eps", 1e-12))
        self.attention = MPNetSelfAttention(hidden, int(config["num_attention_heads"]),
                                            float(config.get("attention_probs_dropout_prob", 0.1)), init, name="attn")
        self.attention_dropout = keras.layers.Dropout(dropout, name="attention_dropout")
        self.attention_layer_norm = keras.layers.LayerNormalization(epsilon=eps, name="attention_layer_norm")
        self.intermediate = _dense(int(config["intermediate_size"]), init, "intermediate", act)
        self.output_dense = _dense(hidden, init, "output")
        self.output_dropout = keras.layers.Dropout(dropout, name="output_dropout")
        self.output_layer_norm = keras.layers.LayerNormalization(epsilon=eps, name="output_layer_norm")

    def call(self, x, position_bias, keep, training=False):
        attended = self.attention(x, position_bias, keep, training=training)
        x = self.attention_layer_norm(self.attention_dropout(attended, training=training) + x)
        out = self.output_dense(self.intermediate(x))
        return self.output_layer_norm(self.output_dropout(out, training=training) + x)


class MPNetEncoder(keras.layers.Layer):
    """transformers' ``MPNetModel`` without its pooler: the inputs dict -> the sequence output
    [batch, length, hidden]. ``segment_ids`` is ignored (MPNet has no token types)."""

    def __init__(self, config: dict, act, **kwargs) -> None:
        super().__init__(**kwargs)
        hidden, init = int(config["hidden_size"]), float(config.get("initializer_range", 0.02))
        normal = keras.initializers.RandomNormal(stddev=init)
        self.num_layers = int(config["num_hidden_layers"])
        self.word_embeddings = keras.layers.Embedding(int(config["vocab_size"]), hidden,
                                                      embeddings_initializer=normal, name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(int(config.get("max_position_embeddings", 512)), hidden,
                                                          embeddings_initializer=normal, name="position_embeddings")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=float(config.get("layer_norm_eps", 1e-12)), name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(float(config.get("hidden_dropout_prob", 0.1)),
                                                       name="embeddings_dropout")
        self.relative_attention_bias = keras.layers.Embedding(
            int(config.get("relative_attention_num_buckets", NUM_BUCKETS)), int(config["num_attention_heads"]),
            embeddings_initializer=normal, name="relative_attention_bias")
        self.blocks = [MPNetLayer(config, act, name=f"layer_{i}") for i in range(self.num_layers)]
        self.buckets = relative_position_buckets()

    def position_bias(self, length):
        """[1, heads, length, length]: the bias of ``memory - context`` (``compute_position_bias``)."""
        positions = ops.arange(length, dtype="int32")
        relative = ops.clip(positions[None, :] - positions[:, None], -MAX_DISTANCE, MAX_DISTANCE) + MAX_DISTANCE
        values = self.relative_attention_bias(ops.take(ops.convert_to_tensor(self.buckets), relative))
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def call(self, inputs, training=False):
        ids = ops.cast(inputs["token_ids"], "int32")
        real = ops.cast(ops.not_equal(ids, PADDING_IDX), "int32")
        positions = ops.cumsum(real, axis=1) * real + PADDING_IDX  # create_position_ids_from_input_ids
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        x = self.embeddings_dropout(self.embeddings_layer_norm(x), training=training)
        bias = self.position_bias(ops.shape(ids)[1])
        keep = ops.not_equal(inputs["padding_mask"], 0)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias, keep, training=training)
        return x


class MPNetClassificationHead(keras.layers.Layer):
    """transformers' ``MPNetClassificationHead``: first token -> dropout -> dense -> tanh -> dropout
    -> ``out_proj`` (here ``classifier``, float32)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float, initializer_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(hidden, initializer_range, "dense", "tanh")
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.classifier = classifier_dense(num_labels, initializer_range, name="out_proj")

    def call(self, sequence, training=False):
        x = self.dense(self.dropout(sequence[:, 0, :], training=training))
        return self.classifier(self.dropout(x, training=training))


class TokenClassificationHead(keras.layers.Layer):
    """``MPNetForTokenClassification``'s head: dropout -> classifier on every token."""

    def __init__(self, num_labels: int, dropout: float, initializer_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.classifier = classifier_dense(num_labels, initializer_range)

    def call(self, sequence, training=False):
        return self.classifier(self.dropout(sequence, training=training))


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")
    if int(config.get("relative_attention_num_buckets", NUM_BUCKETS)) < NUM_BUCKETS:
        raise UsageError(f"{source}/{CONFIG_NAME}: relative_attention_num_buckets "
                         f"{config['relative_attention_num_buckets']} is below the {NUM_BUCKETS} buckets "
                         "transformers' MPNet looks up")
    encoder = MPNetEncoder(config, activation(config, source), name="mpnet")
    init, dropout = float(config.get("initializer_range", 0.02)), float(config.get("hidden_dropout_prob", 0.1))
    if head_kind == HEAD_SEQUENCE_CLASSIFICATION:
        head = MPNetClassificationHead(int(config["hidden_size"]), num_labels, dropout, init, name="head")
    else:
        head = TokenClassificationHead(num_labels, dropout, init, name="head")
    return Classifier(encoder, head, family=family, config=config, num_layers=encoder.num_layers,
                      head_kind=head_kind, name="mpnet_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    encoder = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", encoder.word_embeddings.embeddings)
    w.embedding("embeddings.position_embeddings.weight", encoder.position_embeddings.embeddings)
    w.layer_norm("embeddings.LayerNorm", encoder.embeddings_layer_norm)
    w.embedding("encoder.relative_attention_bias.weight", encoder.relative_attention_bias.embeddings)
    for i, block in enumerate(encoder.blocks):
        prefix = f"encoder.layer.{i}"
        for name in ("q", "k", "v", "o"):
            w.dense(f"{prefix}.attention.attn.{name}", getattr(block.attention, name))
        w.layer_norm(f"{prefix}.attention.LayerNorm", block.attention_layer_norm)
        w.dense(f"{prefix}.intermediate.dense", block.intermediate)
        w.dense(f"{prefix}.output.dense", block.output_dense)
        w.layer_norm(f"{prefix}.output.LayerNorm", block.output_layer_norm)
    if net.per_token:
        w.dense("classifier", net.classifier)
    else:
        w.dense("classifier.dense", net.head.dense)
        w.dense("classifier.out_proj", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    out = {}
    for i, block in enumerate(net.encoder.blocks):
        for name in net.family.lora:
            out[f"encoder.layer.{i}.attention.attn.{name}"] = (block.attention, name)
    return out
