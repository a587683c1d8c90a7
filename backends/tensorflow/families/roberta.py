"""RoBERTa and XLM-RoBERTa on TensorFlow: transformers' ``RobertaForSequenceClassification`` /
``RobertaForTokenClassification`` and the ``XLMRoberta`` equivalents (the same network).

KerasHub's ``RobertaBackbone`` / ``XLMRobertaBackbone`` are not used: they number positions 0, 1, ...
(their converter drops the first ``pad_token_id + 1`` position rows) and have no token type
embeddings, so neither the checkpoint's tensors nor a pad id inside a row would round-trip. The
embeddings here are transformers' (``RobertaEmbeddings``): word + token type (always type 0, as
transformers fills ``token_type_ids`` when tl's torch backend passes none) + position, position ids
``pad_token_id + cumsum(token_ids != pad_token_id)`` for real tokens and ``pad_token_id`` for pads,
then LayerNorm and dropout. The blocks are KerasHub's ``TransformerEncoder`` (post-LayerNorm, as
``BertBackbone`` has them) with the config's activation, layer-norm epsilon and dropouts (attention
dropout ``attention_probs_dropout_prob``, the rest ``hidden_dropout_prob``).

Heads: ``RobertaClassificationHead`` (first token -> dropout -> ``classifier.dense`` -> tanh -> dropout
-> ``classifier.out_proj``; no pooler) for sequence classification; sequence output -> dropout ->
``classifier`` for token classification. Dropout: ``classifier_dropout``, else ``hidden_dropout_prob``.
Not supported (one-line ``UsageError``): ``is_decoder`` configs (causal attention) and
``position_embedding_type`` other than ``absolute``.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras_hub.layers import TransformerEncoder

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.families.bert import (
    FirstTokenHead,
    block_projections,
    classifier_dense,
    classifier_dropout,
    encoder_block,
)
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs


class RobertaEncoder(keras.layers.Layer):
    """transformers' ``RobertaModel`` without pooler: the inputs dict -> ``{"sequence_output": [B, L, H]}``."""

    def __init__(self, config: dict, source: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        hidden = int(config["hidden_size"])
        self.hidden_dim = hidden
        self.num_layers = int(config["num_hidden_layers"])
        self.pad_token_id = int(config.get("pad_token_id", 1))  # transformers' default
        self.hidden_dropout = float(config.get("hidden_dropout_prob", 0.1))
        self.attention_dropout = float(config.get("attention_probs_dropout_prob", 0.1))
        epsilon = float(config.get("layer_norm_eps", 1e-12))
        act = activation(config, source)
        init = keras.initializers.RandomNormal(stddev=float(config.get("initializer_range", 0.02)))
        dtype = self.dtype_policy

        def embedding(rows: int, name: str) -> keras.layers.Embedding:
            return keras.layers.Embedding(rows, hidden, embeddings_initializer=init, dtype=dtype, name=name)

        self.word_embeddings = embedding(int(config["vocab_size"]), "word_embeddings")
        self.position_embeddings = embedding(int(config.get("max_position_embeddings", 512)), "position_embeddings")
        self.token_type_embeddings = embedding(int(config.get("type_vocab_size", 2)), "token_type_embeddings")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(epsilon=epsilon, dtype=dtype,
                                                                     name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(self.hidden_dropout, dtype=dtype, name="embeddings_dropout")
        # Built with the larger rate, so that every dropout layer has its seed generator; ``build`` then
        # sets each rate (a plain attribute) to the config's.
        self.blocks = [
            TransformerEncoder(int(config["intermediate_size"]), int(config["num_attention_heads"]),
                               dropout=max(self.hidden_dropout, self.attention_dropout), activation=act,
                               layer_norm_epsilon=epsilon, kernel_initializer=init, dtype=dtype,
                               name=f"transformer_layer_{i}")
            for i in range(self.num_layers)
        ]

    def build(self, input_shape=None) -> None:
        shape = (None, None, self.hidden_dim)
        for layer in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            layer.build((None, None))
        self.embeddings_layer_norm.build(shape)
        for block in self.blocks:
            block.build(shape)
            block._self_attention_dropout.rate = self.hidden_dropout
            block._feedforward_dropout.rate = self.hidden_dropout
            attention = block._self_attention_layer
            attention._dropout = self.attention_dropout  # 0: MultiHeadAttention skips its dropout layer
            attention._dropout_layer.rate = self.attention_dropout
        self.built = True

    def call(self, inputs, training=False):
        token_ids = inputs["token_ids"]
        # create_position_ids_from_input_ids: pads keep position pad_token_id, real tokens count from it
        real = keras.ops.cast(keras.ops.not_equal(token_ids, self.pad_token_id), "int32")
        positions = keras.ops.cumsum(real, axis=1) * real + self.pad_token_id
        x = self.word_embeddings(token_ids) + self.token_type_embeddings(keras.ops.zeros_like(token_ids))
        x = x + self.position_embeddings(positions)
        x = self.embeddings_dropout(self.embeddings_layer_norm(x), training=training)
        for block in self.blocks:
            x = block(x, padding_mask=inputs["padding_mask"], training=training)
        return {"sequence_output": x}


class ClassificationHead(keras.layers.Layer):
    """``RobertaClassificationHead``: first token -> dropout -> dense -> tanh -> dropout -> out_proj
    (``classifier``, float32)."""

    def __init__(self, hidden_dim: int, num_labels: int, dropout: float, initializer_range: float,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.dense = keras.layers.Dense(hidden_dim, activation="tanh",
                                        kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
                                        name="dense")
        self.classifier = classifier_dense(num_labels, initializer_range, name="out_proj")

    def call(self, features, training=False):
        x = self.dropout(features["sequence_output"][:, 0, :], training=training)
        return self.classifier(self.dropout(self.dense(x), training=training))


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    where = f"{source}/{CONFIG_NAME}"
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UsageError(f"{where}: position_embedding_type {config['position_embedding_type']!r} is not "
                         "supported by the tensorflow backend (only 'absolute')")
    if config.get("is_decoder", False):
        raise UsageError(f"{where}: is_decoder (causal attention) is not supported by the tensorflow backend")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UsageError(f"{where}: hidden_size is not a multiple of num_attention_heads")
    if config.get("pad_token_id", 1) is None:
        raise UsageError(f"{where}: pad_token_id is null; {family.name} numbers positions from it")
    if int(config.get("type_vocab_size", 2)) < 1:
        raise UsageError(f"{where}: type_vocab_size must be at least 1")
    encoder = RobertaEncoder(config, source, dtype="float32", name="roberta")
    dropout = classifier_dropout(config)
    initializer_range = float(config.get("initializer_range", 0.02))
    if head_kind == HEAD_SEQUENCE_CLASSIFICATION:
        head = ClassificationHead(encoder.hidden_dim, num_labels, dropout, initializer_range, name="head")
    else:
        head = FirstTokenHead(num_labels, dropout, initializer_range, "sequence_output", name="head")
    return Classifier(encoder, head, family=family, config=config, num_layers=encoder.num_layers,
                      head_kind=head_kind, name=f"{family.name.replace('-', '_')}_classifier")


def weight_map(net: Classifier) -> list[WeightSpec]:
    encoder = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", encoder.word_embeddings.embeddings)
    w.embedding("embeddings.position_embeddings.weight", encoder.position_embeddings.embeddings)
    w.embedding("embeddings.token_type_embeddings.weight", encoder.token_type_embeddings.embeddings)
    w.layer_norm("embeddings.LayerNorm", encoder.embeddings_layer_norm)
    for i, block in enumerate(encoder.blocks):
        encoder_block(w, f"encoder.layer.{i}", block)
    if net.per_token:
        w.dense("classifier", net.classifier)
    else:
        w.dense("classifier.dense", net.head.dense)
        w.dense("classifier.out_proj", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    return block_projections(net.encoder.blocks)
