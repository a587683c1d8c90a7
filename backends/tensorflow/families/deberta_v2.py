"""DeBERTa-v2 and DeBERTa-v3 on TensorFlow: tl's own Keras layers reproducing transformers'
``DebertaV2Model`` (disentangled self-attention with content->position and position->content terms,
log-bucketed relative positions, shared or separate position projections, layer-normed relative
embeddings, the optional convolution after the first layer, optional absolute positions, token types
and ``embed_proj``) with transformers' heads: ``DebertaV2ForSequenceClassification`` (ContextPooler on
the first token: dropout(pooler_dropout) -> ``pooler.dense`` -> pooler_hidden_act, then
dropout(cls_dropout, else hidden_dropout_prob) -> classifier) and ``DebertaV2ForTokenClassification``
(dropout(hidden_dropout_prob) -> classifier).

KerasHub's ``DebertaV3Backbone`` is not used: it fixes options transformers reads from config.json
(buckets, shared keys, the convolution, absolute positions). Deviations: ``z_steps`` (always 0 in
transformers' classes) and ``query_states`` are not modelled; the padding row of the word embeddings is
not frozen as torch's ``padding_idx`` does (its gradient is zero anyway, masked positions being zeroed).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs


def _dense(units: int, init: float, name: str, use_bias: bool = True) -> keras.layers.Dense:
    return keras.layers.Dense(units, use_bias=use_bias, name=name,
                              kernel_initializer=keras.initializers.RandomNormal(stddev=init))


def _layer_norm(eps: float, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=eps, name=name)


def _split_heads(x, heads: int):
    """[..., length, heads * head_dim] -> [..., heads, length, head_dim] (a leading batch axis or none)."""
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([shape[:-1], [heads, -1]], axis=0))
    return tf.transpose(x, [0, 2, 1, 3]) if x.shape.rank == 4 else tf.transpose(x, [1, 0, 2])


def log_bucket_position(relative_pos, bucket_size: int, max_position: int):
    """transformers' ``make_log_bucket_position`` (float32 arithmetic, as torch does it)."""
    sign = tf.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = tf.where((relative_pos < mid) & (relative_pos > -mid), tf.constant(mid - 1, relative_pos.dtype),
                       tf.abs(relative_pos))
    log_pos = tf.math.ceil(tf.math.log(tf.cast(abs_pos, tf.float32) / mid)
                           / tf.math.log(tf.constant((max_position - 1) / mid, tf.float32)) * (mid - 1)) + mid
    return tf.where(abs_pos <= mid, relative_pos, tf.cast(log_pos, relative_pos.dtype) * sign)


def relative_positions(length, bucket_size: int, max_position: int):
    """[length, length] query position - key position, log-bucketed when both sizes are positive."""
    ids = tf.range(length, dtype=tf.int32)
    rel = ids[:, None] - ids[None, :]
    if bucket_size > 0 and max_position > 0:
        rel = log_bucket_position(rel, bucket_size, max_position)
    return rel


def _gather_positions(att, index):
    """``att`` [batch, heads, L, R] and ``index`` [L, L] -> out[b, h, i, j] = att[b, h, i, index[i, j]]
    (transformers' ``torch.gather`` on the index expanded over batch and heads), as [L, L, batch, heads]."""
    return tf.gather(tf.transpose(att, [2, 3, 0, 1]), index, axis=1, batch_dims=1)


class DisentangledSelfAttention(keras.layers.Layer):
    """transformers' ``DisentangledSelfAttention``; ``query_proj`` and ``value_proj`` are the LoRA targets
    (a wrapper set on them also projects the relative embeddings, as PEFT's does under share_att_key)."""

    def __init__(self, opts: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.opts = opts
        hidden, init = opts["hidden"], opts["init"]
        self.heads = opts["heads"]
        self.query_proj = _dense(hidden, init, "query_proj")
        self.key_proj = _dense(hidden, init, "key_proj")
        self.value_proj = _dense(hidden, init, "value_proj")
        types = opts["pos_att_type"]
        self.c2p, self.p2c = "c2p" in types, "p2c" in types
        if opts["relative_attention"] and not opts["share_att_key"]:
            if self.c2p:
                self.pos_key_proj = _dense(hidden, init, "pos_key_proj")
            if self.p2c:
                self.pos_query_proj = _dense(hidden, init, "pos_query_proj")
        head_dim = hidden // self.heads
        # sqrt(head_dim * scale_factor) in float32, as torch (the factor counts c2p and p2c even without
        # relative_attention)
        self.scale = float(np.sqrt(np.float32(head_dim * (1 + self.c2p + self.p2c))))
        self.pos_dropout = keras.layers.Dropout(opts["hidden_dropout"])
        self.dropout = keras.layers.Dropout(opts["attention_dropout"])

    def call(self, x, attention_mask, relative_pos, rel_embeddings, training=False):
        q = _split_heads(self.query_proj(x), self.heads)  # [batch, heads, L, head_dim]
        k = _split_heads(self.key_proj(x), self.heads)
        v = _split_heads(self.value_proj(x), self.heads)
        scale = tf.cast(self.scale, q.dtype)
        scores = tf.matmul(q, k / scale, transpose_b=True)
        if self.opts["relative_attention"]:
            rel = self.pos_dropout(rel_embeddings, training=training)  # [2 * span, hidden]
            span = self.opts["att_span"]
            bias = 0
            if self.c2p:
                proj = self.key_proj if self.opts["share_att_key"] else self.pos_key_proj
                pos_key = _split_heads(proj(rel), self.heads)  # [heads, 2 * span, head_dim]
                c2p = tf.einsum("bhqd,hrd->bhqr", q, pos_key)
                c2p = _gather_positions(c2p, tf.clip_by_value(relative_pos + span, 0, 2 * span - 1))
                bias = bias + tf.transpose(c2p, [2, 3, 0, 1]) / scale
            if self.p2c:
                proj = self.query_proj if self.opts["share_att_key"] else self.pos_query_proj
                pos_query = _split_heads(proj(rel), self.heads)
                p2c = tf.einsum("bhkd,hrd->bhkr", k, pos_query)
                p2c = _gather_positions(p2c, tf.clip_by_value(-relative_pos + span, 0, 2 * span - 1))
                bias = bias + tf.transpose(p2c, [2, 3, 1, 0]) / scale  # [key, query] -> [query, key]
            scores = scores + bias
        scores = tf.where(attention_mask, scores, tf.constant(scores.dtype.min, scores.dtype))
        probs = self.dropout(tf.nn.softmax(scores, axis=-1), training=training)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])  # [batch, L, heads, head_dim]
        shape = tf.shape(context)
        return tf.reshape(context, tf.concat([shape[:2], [-1]], axis=0))


class DebertaV2Layer(keras.layers.Layer):
    """transformers' ``DebertaV2Layer``: attention (``attention.self`` + ``attention.output``), then the
    feed-forward block (``intermediate`` + ``output``), each post-LayerNorm."""

    def __init__(self, opts: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        hidden, init, eps = opts["hidden"], opts["init"], opts["eps"]
        self.attention = DisentangledSelfAttention(opts, name="attention_self")
        self.attention_dense = _dense(hidden, init, "attention_output_dense")
        self.attention_norm = _layer_norm(eps, "attention_output_LayerNorm")
        self.intermediate = _dense(opts["intermediate"], init, "intermediate_dense")
        self.act = opts["act"]
        self.output_dense = _dense(hidden, init, "output_dense")
        self.output_norm = _layer_norm(eps, "output_LayerNorm")
        self.dropout = keras.layers.Dropout(opts["hidden_dropout"])

    def call(self, x, attention_mask, relative_pos, rel_embeddings, training=False):
        a = self.attention(x, attention_mask, relative_pos, rel_embeddings, training=training)
        a = self.attention_norm(self.dropout(self.attention_dense(a), training=training) + x)
        h = self.output_dense(self.act(self.intermediate(a)))
        return self.output_norm(self.dropout(h, training=training) + a)


class DebertaV2Encoder(keras.layers.Layer):
    """transformers' ``DebertaV2Embeddings`` + ``DebertaV2Encoder``: the inputs dict -> the last hidden
    state [batch, length, hidden]."""

    def __init__(self, opts: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.opts = opts
        hidden, init, eps, emb = opts["hidden"], opts["init"], opts["eps"], opts["embedding_size"]
        normal = keras.initializers.RandomNormal(stddev=init)
        self.word_embeddings = keras.layers.Embedding(opts["vocab"], emb, embeddings_initializer=normal,
                                                      name="word_embeddings")
        self.position_embeddings = self.token_type_embeddings = self.embed_proj = None
        if opts["position_biased_input"]:
            self.position_embeddings = keras.layers.Embedding(opts["max_positions"], emb,
                                                              embeddings_initializer=normal,
                                                              name="position_embeddings")
        if opts["type_vocab"] > 0:
            self.token_type_embeddings = keras.layers.Embedding(opts["type_vocab"], emb,
                                                                embeddings_initializer=normal,
                                                                name="token_type_embeddings")
        if emb != hidden:
            self.embed_proj = _dense(hidden, init, "embed_proj", use_bias=False)
        self.embeddings_norm = _layer_norm(eps, "embeddings_LayerNorm")
        self.dropout = keras.layers.Dropout(opts["hidden_dropout"])
        self.blocks = [DebertaV2Layer(opts, name=f"layer_{i}") for i in range(opts["layers"])]
        self.rel_embeddings = None
        if opts["relative_attention"]:
            self.rel_embeddings = self.add_weight(shape=(2 * opts["att_span"], hidden), initializer=normal,
                                                  name="rel_embeddings")
        self.rel_norm = _layer_norm(eps, "rel_LayerNorm") if opts["norm_rel_ebd"] else None
        self.conv_kernel = None
        if opts["conv_kernel_size"] > 0:  # torch Conv1d layout [out, in / groups, kernel]
            self.conv_kernel = self.add_weight(
                shape=(hidden, hidden // opts["conv_groups"], opts["conv_kernel_size"]),
                initializer=keras.initializers.HeUniform(), name="conv_kernel")
            self.conv_bias = self.add_weight(shape=(hidden,), initializer="zeros", name="conv_bias")
            self.conv_norm = _layer_norm(eps, "conv_LayerNorm")
            self.conv_act = opts["conv_act"]
        if self.rel_norm is not None and self.rel_embeddings is None:
            self.rel_norm.build((None, hidden))  # transformers has it (unused): loaded and saved

    def embed(self, token_ids, segment_ids, mask, training):
        x = self.word_embeddings(token_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(tf.range(tf.shape(token_ids)[1]))[None]
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(segment_ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        x = self.embeddings_norm(x) * tf.cast(mask, x.dtype)[:, :, None]
        return self.dropout(x, training=training)

    def conv(self, x, residual, mask, training):
        """transformers' ``ConvLayer`` on the embeddings ``x``, added to the first layer's output."""
        kernel = tf.cast(tf.transpose(self.conv_kernel, [2, 1, 0]), x.dtype)  # [kernel, in / groups, out]
        groups = self.opts["conv_groups"]
        if groups == 1:
            out = tf.nn.conv1d(x, kernel, 1, "SAME")
        else:
            pairs = zip(tf.split(x, groups, axis=-1), tf.split(kernel, groups, axis=-1), strict=True)
            out = tf.concat([tf.nn.conv1d(xi, ki, 1, "SAME") for xi, ki in pairs], axis=-1)
        keep = tf.cast(mask, x.dtype)[:, :, None]
        out = (out + tf.cast(self.conv_bias, x.dtype)) * keep
        out = self.conv_act(self.dropout(out, training=training))
        return self.conv_norm(residual + out) * keep

    def call(self, inputs, training=False):
        mask = inputs["padding_mask"]
        x = self.embed(inputs["token_ids"], inputs["segment_ids"], mask, training)
        valid = tf.cast(mask, tf.bool)
        pair_mask = (valid[:, None, :, None] & valid[:, None, None, :])  # [batch, 1, query, key]
        relative_pos = rel = None
        if self.rel_embeddings is not None:
            relative_pos = relative_positions(tf.shape(x)[1], self.opts["position_buckets"],
                                              self.opts["max_relative_positions"])
            rel = tf.cast(self.rel_embeddings, x.dtype)
            if self.rel_norm is not None:
                rel = self.rel_norm(rel)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h, pair_mask, relative_pos, rel, training=training)
            if i == 0 and self.conv_kernel is not None:
                h = self.conv(x, h, mask, training)
        return h


class DebertaV2Head(keras.layers.Layer):
    """The sequence head (``pooler`` given: the ContextPooler on the first token, then dropout ->
    classifier) or the token head (dropout -> classifier on every token)."""

    def __init__(self, num_labels: int, dropout: float, init: float, pooler: dict | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.pooler = None
        if pooler is not None:
            self.pooler_dropout = keras.layers.Dropout(pooler["dropout"])
            self.pooler = _dense(pooler["size"], init, "pooler_dense")
            self.pooler_act = pooler["act"]
        self.dropout = keras.layers.Dropout(dropout)
        self.classifier = keras.layers.Dense(num_labels, kernel_initializer=keras.initializers.RandomNormal(
            stddev=init), bias_initializer="zeros", dtype="float32", name="classifier")

    def call(self, x, training=False):
        if self.pooler is not None:
            x = self.pooler_act(self.pooler(self.pooler_dropout(x[:, 0], training=training)))
        return self.classifier(self.dropout(x, training=training))


def _fail(source: Path, message: str) -> UsageError:
    return UsageError(f"{source}/{CONFIG_NAME}: {message}")


def _activation(config: dict, source: Path, key: str, default: str):
    """``activation`` with tanh too (the ConvLayer's default ``conv_act``, a possible pooler activation)."""
    if config.get(key, default) == "tanh":
        return keras.activations.tanh
    return activation({key: config.get(key, default)}, source, key)


def _options(config: dict, source: Path) -> dict:
    """The config values transformers' DeBERTa-v2 classes read, with their defaults."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads or int(config.get("attention_head_size") or hidden // heads) * heads != hidden:
        raise _fail(source, "hidden_size must equal num_attention_heads * attention_head_size")
    if int(config.get("pooler_hidden_size", hidden)) != hidden:
        raise _fail(source, "pooler_hidden_size must equal hidden_size (the classifier reads hidden_size)")
    types = config.get("pos_att_type") or []
    if isinstance(types, str):
        types = [t.strip() for t in types.lower().split("|")]
    max_positions = int(config.get("max_position_embeddings", 512))
    max_relative = int(config.get("max_relative_positions", -1))
    max_relative = max_positions if max_relative < 1 else max_relative
    buckets = int(config.get("position_buckets", -1))
    conv_kernel = int(config.get("conv_kernel_size", 0) or 0)
    groups = int(config.get("conv_groups", 1))
    if conv_kernel > 0 and (conv_kernel % 2 == 0 or hidden % groups):
        raise _fail(source, "conv_kernel_size must be odd and conv_groups divide hidden_size")
    norm_rel = [x.strip() for x in str(config.get("norm_rel_ebd", "none")).lower().split("|")]
    return dict(
        hidden=hidden, heads=heads, layers=int(config["num_hidden_layers"]),
        intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
        embedding_size=int(config.get("embedding_size") or hidden), max_positions=max_positions,
        type_vocab=int(config.get("type_vocab_size", 0)), eps=float(config.get("layer_norm_eps", 1e-7)),
        init=float(config.get("initializer_range", 0.02)), act=activation(config, source),
        hidden_dropout=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
        position_biased_input=bool(config.get("position_biased_input", True)),
        relative_attention=bool(config.get("relative_attention", False)), pos_att_type=types,
        share_att_key=bool(config.get("share_att_key", False)), position_buckets=buckets,
        max_relative_positions=max_relative, att_span=buckets if buckets > 0 else max_relative,
        norm_rel_ebd="layer_norm" in norm_rel, conv_kernel_size=conv_kernel, conv_groups=groups,
        conv_act=_activation(config, source, "conv_act", "tanh") if conv_kernel > 0 else None,
    )


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    opts = _options(config, source)
    encoder = DebertaV2Encoder(opts, name="deberta")
    init = opts["init"]
    if head_kind == HEAD_SEQUENCE_CLASSIFICATION:
        cls_dropout = config.get("cls_dropout")
        pooler = dict(size=opts["hidden"], dropout=float(config.get("pooler_dropout", 0.0)),
                      act=_activation(config, source, "pooler_hidden_act", "gelu"))
        dropout = opts["hidden_dropout"] if cls_dropout is None else float(cls_dropout)
        head = DebertaV2Head(num_labels, dropout, init, pooler, name="head")
    else:
        head = DebertaV2Head(num_labels, opts["hidden_dropout"], init, name="head")
    return Classifier(encoder, head, family=family, config=config, num_layers=opts["layers"],
                      head_kind=head_kind, name="deberta_v2_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    enc = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", enc.word_embeddings.embeddings)
    if enc.position_embeddings is not None:
        w.embedding("embeddings.position_embeddings.weight", enc.position_embeddings.embeddings)
    if enc.token_type_embeddings is not None:
        w.embedding("embeddings.token_type_embeddings.weight", enc.token_type_embeddings.embeddings)
    if enc.embed_proj is not None:
        w.dense("embeddings.embed_proj", enc.embed_proj, bias=False)
    w.layer_norm("embeddings.LayerNorm", enc.embeddings_norm)
    for i, block in enumerate(enc.blocks):
        prefix = f"encoder.layer.{i}"
        attention = block.attention
        for name in ("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj"):
            if hasattr(attention, name):
                w.dense(f"{prefix}.attention.self.{name}", getattr(attention, name))
        w.dense(f"{prefix}.attention.output.dense", block.attention_dense)
        w.layer_norm(f"{prefix}.attention.output.LayerNorm", block.attention_norm)
        w.dense(f"{prefix}.intermediate.dense", block.intermediate)
        w.dense(f"{prefix}.output.dense", block.output_dense)
        w.layer_norm(f"{prefix}.output.LayerNorm", block.output_norm)
    if enc.rel_embeddings is not None:
        w.embedding("encoder.rel_embeddings.weight", enc.rel_embeddings)
    if enc.rel_norm is not None:
        w.layer_norm("encoder.LayerNorm", enc.rel_norm)
    if enc.conv_kernel is not None:
        w.embedding("encoder.conv.conv.weight", enc.conv_kernel)  # kept in torch's layout: same shape
        w.add("encoder.conv.conv.bias", enc.conv_bias, "vector")
        w.layer_norm("encoder.conv.LayerNorm", enc.conv_norm)
    if net.head.pooler is not None:
        w.dense("pooler.dense", net.head.pooler)
    w.dense("classifier", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    out = {}
    for i, block in enumerate(net.encoder.blocks):
        out[f"encoder.layer.{i}.attention.self.query_proj"] = (block.attention, "query_proj")
        out[f"encoder.layer.{i}.attention.self.value_proj"] = (block.attention, "value_proj")
    return out
