"""ELECTRA (the discriminator) on TensorFlow: KerasHub's ``ElectraBackbone`` (embeddings of
``embedding_size``, projected by ``embeddings_project`` when it differs from ``hidden_size``, then BERT's
encoder), set to the checkpoint's activation, layer-norm epsilon and dropouts, with transformers' heads:
``ElectraForSequenceClassification`` (``ElectraClassificationHead``: first token -> dropout -> dense ->
exact GELU -> dropout -> out_proj) and ``ElectraForTokenClassification`` (sequence output -> dropout ->
classifier). The backbone's pooler, which ``ElectraModel`` lacks, is frozen and neither loaded nor saved.
"""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.families.albert import tune_encoder_block
from tl_tensorflow.families.bert import (
    FirstTokenHead,
    block_projections,
    classifier_dense,
    classifier_dropout,
    encoder_block,
)
from tl_tensorflow.network import ACTIVATIONS, Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs

#: ElectraConfig's defaults for the keys this module reads.
DEFAULTS = {
    "embedding_size": 128, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
}


class ElectraClassificationHead(keras.layers.Layer):
    """transformers' ``ElectraClassificationHead`` on the sequence output: the first token -> dropout ->
    ``dense`` -> GELU (exact, whatever ``hidden_act``) -> dropout -> ``classifier`` (``out_proj``)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, initializer_range: float,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.dense = keras.layers.Dense(
            hidden_size, activation=ACTIVATIONS["gelu"],
            kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range), name="dense")
        self.classifier = classifier_dense(num_labels, initializer_range, name="out_proj")

    def call(self, features, training=False):
        x = self.dropout(features["sequence_output"][:, 0, :], training=training)
        return self.classifier(self.dropout(self.dense(x), training=training))


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    if cfg.get("is_decoder"):
        raise UsageError(f"{source}/{CONFIG_NAME}: is_decoder (causal attention) is not supported by the "
                         "tensorflow backend")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")
    act = activation(cfg, source)
    hidden_dropout = float(cfg["hidden_dropout_prob"])
    backbone = keras_hub.models.ElectraBackbone(
        vocab_size=int(cfg["vocab_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]),
        hidden_dim=int(cfg["hidden_size"]),
        embedding_dim=int(cfg["embedding_size"]),
        intermediate_dim=int(cfg["intermediate_size"]),
        dropout=hidden_dropout,
        max_sequence_length=int(cfg["max_position_embeddings"]),
        num_segments=int(cfg["type_vocab_size"]),
        dtype="float32",
    )
    epsilon = float(cfg["layer_norm_eps"])
    backbone.get_layer("embeddings_layer_norm").epsilon = epsilon
    for i in range(backbone.num_layers):
        tune_encoder_block(backbone.get_layer(f"transformer_layer_{i}"), act, epsilon,
                           float(cfg["attention_probs_dropout_prob"]), hidden_dropout, hidden_dropout)
    backbone.get_layer("pooled_dense").trainable = False  # KerasHub's pooler: ElectraModel has none
    dropout, init = classifier_dropout(cfg), float(cfg["initializer_range"])
    if head_kind == HEAD_SEQUENCE_CLASSIFICATION:
        head = ElectraClassificationHead(int(cfg["hidden_size"]), num_labels, dropout, init, name="head")
    else:
        head = FirstTokenHead(num_labels, dropout, init, "sequence_output", name="head")
    return Classifier(backbone, head, family=family, config=config,
                      num_layers=backbone.num_layers, head_kind=head_kind, name="electra_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    backbone = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", backbone.get_layer("token_embedding").embeddings)
    w.embedding("embeddings.position_embeddings.weight",
                backbone.get_layer("position_embedding").position_embeddings)
    w.embedding("embeddings.token_type_embeddings.weight", backbone.get_layer("segment_embedding").embeddings)
    w.layer_norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    if backbone.embedding_dim != backbone.hidden_dim:
        w.dense("embeddings_project", backbone.get_layer("embeddings_projection"))
    for i in range(backbone.num_layers):
        encoder_block(w, f"encoder.layer.{i}", backbone.get_layer(f"transformer_layer_{i}"))
    if net.per_token:
        w.dense("classifier", net.classifier)
    else:
        w.dense("classifier.dense", net.head.dense)
        w.dense("classifier.out_proj", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    return block_projections([net.encoder.get_layer(f"transformer_layer_{i}") for i in range(net.num_layers)])


def unused_variables(net: Classifier) -> list:
    return list(net.encoder.get_layer("pooled_dense").weights)
