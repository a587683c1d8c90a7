"""BERT (and MiniLM, which is a BERT) on TensorFlow: KerasHub's ``BertBackbone``, set to the
checkpoint's activation and layer-norm epsilon, with transformers' heads: pooler (dense + tanh on
the first token) -> dropout -> classifier for ``BertForSequenceClassification``; sequence output ->
dropout -> classifier for ``BertForTokenClassification`` (no pooler: the backbone's is frozen and
neither loaded nor saved)."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs


class FirstTokenHead(keras.layers.Layer):
    """Dropout -> ``Dense(num_labels)`` on the backbone output ``feature`` (``pooled_output``: BERT's
    pooler already applied; ``sequence_output``: every token)."""

    def __init__(self, num_labels: int, dropout: float, initializer_range: float, feature: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feature = feature
        self.dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.classifier = classifier_dense(num_labels, initializer_range)

    def call(self, features, training=False):
        return self.classifier(self.dropout(features[self.feature], training=training))


def classifier_dense(num_labels: int, initializer_range: float, name: str = "classifier") -> keras.layers.Dense:
    """The output layer of every head: float32 even under mixed precision, initialised as transformers does."""
    return keras.layers.Dense(
        num_labels,
        kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
        bias_initializer="zeros",
        dtype="float32",
        name=name,
    )


def classifier_dropout(config: dict, fallback: str = "hidden_dropout_prob") -> float:
    """transformers' ``classifier_dropout`` (None: the hidden dropout)."""
    value = config.get("classifier_dropout")
    return float(config.get(fallback, 0.1)) if value is None else float(value)


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UsageError(f"{source}/{CONFIG_NAME}: position_embedding_type "
                         f"{config['position_embedding_type']!r} is not supported by the tensorflow backend "
                         "(only 'absolute')")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")
    act = activation(config, source)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=int(config["vocab_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        hidden_dim=int(config["hidden_size"]),
        intermediate_dim=int(config["intermediate_size"]),
        dropout=float(config.get("hidden_dropout_prob", 0.1)),
        max_sequence_length=int(config.get("max_position_embeddings", 512)),
        num_segments=int(config.get("type_vocab_size", 2)),
        dtype="float32",
    )
    # BertBackbone hard-codes the tanh-approximated GELU and eps 1e-12; follow the checkpoint's config
    # (BERT uses the exact GELU), so logits match transformers.
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    backbone.get_layer("embeddings_layer_norm").epsilon = epsilon
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        block.activation = act
        block._feedforward_intermediate_dense.activation = act
        block.layer_norm_epsilon = epsilon
        block._self_attention_layer_norm.epsilon = epsilon
        block._feedforward_layer_norm.epsilon = epsilon
    per_token = head_kind != HEAD_SEQUENCE_CLASSIFICATION
    if per_token:  # BertForTokenClassification has no pooler: unused, never trained or saved
        backbone.get_layer("pooled_dense").trainable = False
    head = FirstTokenHead(num_labels, classifier_dropout(config), float(config.get("initializer_range", 0.02)),
                          "sequence_output" if per_token else "pooled_output", name="head")
    return Classifier(backbone, head, family=family, config=config,
                      num_layers=backbone.num_layers, head_kind=head_kind, name="bert_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    backbone = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", backbone.get_layer("token_embedding").embeddings)
    w.embedding("embeddings.position_embeddings.weight",
                backbone.get_layer("position_embedding").position_embeddings)
    w.embedding("embeddings.token_type_embeddings.weight", backbone.get_layer("segment_embedding").embeddings)
    w.layer_norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    for i in range(backbone.num_layers):
        encoder_block(w, f"encoder.layer.{i}", backbone.get_layer(f"transformer_layer_{i}"))
    if not net.per_token:
        w.dense("pooler.dense", backbone.get_layer("pooled_dense"))
    w.dense("classifier", net.classifier)
    return w.specs


#: transformers' names (under a layer's prefix) of a KerasHub ``TransformerEncoder`` block's weights, in
#: the order query, key, value, attention output, attention LayerNorm, feed-forward in, out, LayerNorm:
#: BERT's layer, as BERT, ELECTRA and RoBERTa name it.
BERT_BLOCK = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


def encoder_block(w: WeightSpecs, prefix: str, block: keras.layers.Layer, names: tuple[str, ...] = BERT_BLOCK) -> None:
    """The weights of a KerasHub ``TransformerEncoder`` under transformers' ``names`` (``BERT_BLOCK``'s
    order) below ``prefix`` (``encoder.layer.{i}``)."""
    query, key, value, out, attention_norm, ffn_in, ffn_out, ffn_norm = (f"{prefix}.{n}" for n in names)
    attention = block._self_attention_layer
    # kernel [hidden, heads, head_dim]; under --strategy lora, the projection a LoraAdapter wraps
    w.dense(query, attention._query_dense)
    w.dense(key, attention._key_dense)
    w.dense(value, attention._value_dense)
    w.dense(out, attention._output_dense, inputs=2)  # [heads, head_dim, hidden]
    w.layer_norm(attention_norm, block._self_attention_layer_norm)
    w.dense(ffn_in, block._feedforward_intermediate_dense)
    w.dense(ffn_out, block._feedforward_output_dense)
    w.layer_norm(ffn_norm, block._feedforward_layer_norm)


def block_projections(blocks: list[keras.layers.Layer]) -> dict[str, tuple[keras.layers.Layer, str]]:
    """LoRA's query and value projections of KerasHub ``TransformerEncoder`` blocks, under BERT-layer names."""
    out = {}
    for i, block in enumerate(blocks):
        attention = block._self_attention_layer
        out[f"encoder.layer.{i}.attention.self.query"] = (attention, "_query_dense")
        out[f"encoder.layer.{i}.attention.self.value"] = (attention, "_value_dense")
    return out


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    return block_projections([net.encoder.get_layer(f"transformer_layer_{i}") for i in range(net.num_layers)])


def unused_variables(net: Classifier) -> list:
    return list(net.encoder.get_layer("pooled_dense").weights) if net.per_token else []
