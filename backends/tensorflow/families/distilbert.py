"""DistilBERT on TensorFlow: KerasHub's ``DistilBertBackbone``, set to transformers' ``DistilBertModel``
(the config's ``activation``; ``attention_dropout`` on the attention probabilities; no dropout on
the attention output, which transformers lacks and KerasHub's encoder block has), with transformers'
heads: first token -> ``pre_classifier`` -> ReLU -> dropout (``seq_classif_dropout``) -> classifier
for ``DistilBertForSequenceClassification``; every token -> dropout (``dropout``) -> classifier for
``DistilBertForTokenClassification``. Layer norms use eps 1e-12, as transformers hard-codes.
``sinusoidal_pos_embds`` needs nothing of its own: transformers stores the (trainable) sinusoidal
table as ``embeddings.position_embeddings.weight``, loaded like a learned one."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.families.bert import FirstTokenHead, classifier_dense, encoder_block
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs

#: DistilBERT's names for a layer's weights (``tl_tensorflow.families.bert.BERT_BLOCK``'s order).
DISTILBERT_BLOCK = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                    "ffn.lin1", "ffn.lin2", "output_layer_norm")


class DistilBertEncoder(keras.layers.Layer):
    """The backbone on tl's inputs (``segment_ids`` dropped: DistilBERT has no token types) ->
    ``{"sequence_output": [batch, length, dim]}``."""

    def __init__(self, backbone: keras_hub.models.DistilBertBackbone, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_layers = backbone.num_layers

    def call(self, inputs, training=False):
        features = {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}
        return {"sequence_output": self.backbone(features, training=training)}


class PreClassifierHead(keras.layers.Layer):
    """``DistilBertForSequenceClassification``'s head: first token -> ``pre_classifier`` (dim -> dim)
    -> ReLU -> dropout -> ``classifier``."""

    def __init__(self, dim: int, num_labels: int, dropout: float, initializer_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pre_classifier = keras.layers.Dense(
            dim, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
            bias_initializer="zeros", name="pre_classifier")
        self.dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.classifier = classifier_dense(num_labels, initializer_range)

    def call(self, features, training=False):
        first = features["sequence_output"][:, 0, :]
        return self.classifier(self.dropout(self.pre_classifier(first), training=training))


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    dim, heads = int(config.get("dim", 768)), int(config.get("n_heads", 12))
    if dim % heads:
        raise UsageError(f"{source}/{CONFIG_NAME}: dim is not a multiple of n_heads")
    act = activation(config, source, key="activation")
    dropout = float(config.get("dropout", 0.1))
    attention_dropout = float(config.get("attention_dropout", 0.1))
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=int(config.get("vocab_size", 30522)),
        num_layers=int(config.get("n_layers", 6)),
        num_heads=heads,
        hidden_dim=dim,
        intermediate_dim=int(config.get("hidden_dim", 4 * 768)),
        dropout=dropout,
        max_sequence_length=int(config.get("max_position_embeddings", 512)),
        dtype="float32",
    )
    # The backbone's encoder blocks take one dropout rate for everything; transformers' DistilBERT
    # drops attention probabilities at attention_dropout and has no dropout after the attention.
    for block in backbone.transformer_layers:
        block.activation = act
        block._feedforward_intermediate_dense.activation = act
        attention = block._self_attention_layer
        attention._dropout = attention_dropout
        attention._dropout_layer.rate = attention_dropout
        block._self_attention_dropout.rate = 0.0
    initializer_range = float(config.get("initializer_range", 0.02))
    if head_kind == HEAD_SEQUENCE_CLASSIFICATION:
        head = PreClassifierHead(dim, num_labels, float(config.get("seq_classif_dropout", 0.2)), initializer_range,
                                 name="head")
    else:
        head = FirstTokenHead(num_labels, dropout, initializer_range, "sequence_output", name="head")
    return Classifier(DistilBertEncoder(backbone, name="distilbert"), head, family=family, config=config,
                      num_layers=backbone.num_layers, head_kind=head_kind, name="distilbert_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    backbone = net.encoder.backbone
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", backbone.embeddings.token_embedding.embeddings)
    w.embedding("embeddings.position_embeddings.weight", backbone.embeddings.position_embedding.position_embeddings)
    w.layer_norm("embeddings.LayerNorm", backbone.embeddings_layer_norm)
    for i, block in enumerate(backbone.transformer_layers):
        encoder_block(w, f"transformer.layer.{i}", block, DISTILBERT_BLOCK)
    if not net.per_token:
        w.dense("pre_classifier", net.head.pre_classifier)
    w.dense("classifier", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    out = {}
    for i, block in enumerate(net.encoder.backbone.transformer_layers):
        attention = block._self_attention_layer
        out[f"transformer.layer.{i}.attention.q_lin"] = (attention, "_query_dense")
        out[f"transformer.layer.{i}.attention.v_lin"] = (attention, "_value_dense")
    return out
