"""ALBERT on TensorFlow: KerasHub's ``AlbertBackbone`` (factorized embeddings, then
``embedding_hidden_mapping_in``; ``num_hidden_groups`` groups of ``inner_group_num`` layers, each group
run ``num_hidden_layers / num_hidden_groups`` times in turn), set to the checkpoint's activation
(transformers' default ``gelu_new``), layer-norm epsilon and dropouts, with transformers' heads:
``AlbertForSequenceClassification`` (pooler dense + tanh on the first token -> dropout
``classifier_dropout_prob`` -> classifier) and ``AlbertForTokenClassification`` (sequence output ->
dropout -> classifier; transformers builds it without the pooler: the backbone's is frozen and neither
loaded nor saved).

Deviation: transformers also accepts ``num_hidden_layers`` not a multiple of ``num_hidden_groups``
(groups then run unequal numbers of times); KerasHub does not, and such a config is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import keras_hub

from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Family
from tl.models.hf_checkpoint import CONFIG_NAME
from tl_tensorflow.families.bert import FirstTokenHead, encoder_block
from tl_tensorflow.network import Classifier, activation
from tl_tensorflow.weights import WeightSpec, WeightSpecs

#: ALBERT's names for a shared layer's weights (``tl_tensorflow.families.bert.BERT_BLOCK``'s order).
ALBERT_BLOCK = ("attention.query", "attention.key", "attention.value", "attention.dense", "attention.LayerNorm",
                "ffn", "ffn_output", "full_layer_layer_norm")

#: AlbertConfig's defaults for the keys this module reads.
DEFAULTS = {
    "embedding_size": 128, "num_hidden_groups": 1, "inner_group_num": 1, "hidden_act": "gelu_new",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "classifier_dropout_prob": 0.1,
}


def tune_encoder_block(block: keras.layers.Layer, act: Callable, epsilon: float, attention_dropout: float,
                       hidden_dropout: float, feedforward_dropout: float) -> None:
    """Set a built KerasHub ``TransformerEncoder`` (post-norm) to a transformers config: the feed-forward
    activation (KerasHub hard-codes the tanh-approximated GELU), the layer-norm epsilon, the dropout of
    the attention probabilities, after the attention output projection and after the feed-forward output
    (KerasHub uses one rate for all three)."""
    block.activation = act
    block._feedforward_intermediate_dense.activation = act
    block.layer_norm_epsilon = epsilon
    block._self_attention_layer_norm.epsilon = epsilon
    block._feedforward_layer_norm.epsilon = epsilon
    attention = block._self_attention_layer
    attention._dropout = attention_dropout  # 0: Keras takes its fused dot-product attention path
    attention._dropout_layer.rate = attention_dropout
    block._self_attention_dropout.rate = hidden_dropout
    block._feedforward_dropout.rate = feedforward_dropout


def build(config: dict, family: Family, num_labels: int, head_kind: str, source: Path) -> Classifier:
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    layers, groups = int(cfg["num_hidden_layers"]), int(cfg["num_hidden_groups"])
    if groups < 1 or layers % groups:
        raise UsageError(f"{source}/{CONFIG_NAME}: num_hidden_layers ({layers}) is not a multiple of "
                         f"num_hidden_groups ({groups}), which the tensorflow backend does not support")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")
    act = activation(cfg, source)
    hidden_dropout = float(cfg["hidden_dropout_prob"])
    backbone = keras_hub.models.AlbertBackbone(
        vocabulary_size=int(cfg["vocab_size"]),
        num_layers=layers,
        num_heads=int(cfg["num_attention_heads"]),
        embedding_dim=int(cfg["embedding_size"]),
        hidden_dim=int(cfg["hidden_size"]),
        intermediate_dim=int(cfg["intermediate_size"]),
        num_groups=groups,
        num_inner_repetitions=int(cfg["inner_group_num"]),
        dropout=hidden_dropout,
        max_sequence_length=int(cfg["max_position_embeddings"]),
        num_segments=int(cfg["type_vocab_size"]),
        dtype="float32",
    )
    epsilon = float(cfg["layer_norm_eps"])
    backbone.get_layer("embeddings_layer_norm").epsilon = epsilon
    for _, block in _named_blocks(backbone):  # AlbertLayer has no dropout after its feed-forward output
        tune_encoder_block(block, act, epsilon, float(cfg["attention_probs_dropout_prob"]), hidden_dropout, 0.0)
    per_token = head_kind != HEAD_SEQUENCE_CLASSIFICATION
    if per_token:  # AlbertForTokenClassification has no pooler: unused, never trained or saved
        backbone.get_layer("pooled_dense").trainable = False
    # AlbertForSequenceClassification takes classifier_dropout_prob as it is; the token head falls back
    # to the hidden dropout when it is None
    dropout = config.get("classifier_dropout_prob", DEFAULTS["classifier_dropout_prob"])
    dropout = hidden_dropout if dropout is None else float(dropout)
    head = FirstTokenHead(num_labels, dropout, float(cfg["initializer_range"]),
                          "sequence_output" if per_token else "pooled_output", name="head")
    # layer-wise strategies count the shared layer groups (Family.depth_key), not their repetitions
    return Classifier(backbone, head, family=family, config=config,
                      num_layers=groups, head_kind=head_kind, name="albert_classifier")


def _named_blocks(backbone) -> list[tuple[str, keras.layers.Layer]]:
    """Each shared layer of ``backbone``: (its transformers module name, the KerasHub block)."""
    return [(f"encoder.albert_layer_groups.{g}.albert_layers.{j}", backbone.get_layer(f"group_{g}_inner_layer_{j}"))
            for g in range(backbone.num_groups) for j in range(backbone.num_inner_repetitions)]


def weight_map(net: Classifier) -> list[WeightSpec]:
    backbone = net.encoder
    w = WeightSpecs()
    w.embedding("embeddings.word_embeddings.weight", backbone.get_layer("token_embedding").embeddings)
    w.embedding("embeddings.position_embeddings.weight",
                backbone.get_layer("position_embedding").position_embeddings)
    w.embedding("embeddings.token_type_embeddings.weight", backbone.get_layer("segment_embedding").embeddings)
    w.layer_norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    w.dense("encoder.embedding_hidden_mapping_in", backbone.get_layer("embedding_projection"))
    for prefix, block in _named_blocks(backbone):
        encoder_block(w, prefix, block, ALBERT_BLOCK)
    if not net.per_token:
        w.dense("pooler", backbone.get_layer("pooled_dense"))
    w.dense("classifier", net.classifier)
    return w.specs


def attention_projections(net: Classifier) -> dict[str, tuple[keras.layers.Layer, str]]:
    """One entry per shared layer (not per depth): its projections serve every pass through it."""
    out = {}
    for prefix, block in _named_blocks(net.encoder):
        out[f"{prefix}.attention.query"] = (block._self_attention_layer, "_query_dense")
        out[f"{prefix}.attention.value"] = (block._self_attention_layer, "_value_dense")
    return out


def unused_variables(net: Classifier) -> list:
    return list(net.encoder.get_layer("pooled_dense").weights) if net.per_token else []
