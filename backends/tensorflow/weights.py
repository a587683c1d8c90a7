"""The one two-way table between transformers' BERT weight names and the Keras variables of
``tl_tensorflow.network.BertClassifier``: loading (``assign_state``) and saving (``read_state``) go
through ``weight_map``, so they are exact inverses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tl.errors import TLError, UsageError

if TYPE_CHECKING:
    import keras

    from tl_tensorflow.network import BertClassifier

#: Checkpoint entries that are not weights of BertForSequenceClassification (buffers, pre-training heads).
IGNORED_KEYS = ("embeddings.position_ids",)
IGNORED_PREFIXES = ("cls.",)


@dataclass(frozen=True)
class WeightSpec:
    """One transformers tensor and the Keras variable holding it.

    ``kind``: ``embedding`` (same shape), ``vector`` (a bias or LayerNorm parameter, flat in
    transformers, possibly [heads, head_dim] in Keras) or ``linear`` (the weight [out, in] of a torch
    ``Linear``; the Keras kernel is its transpose with ``in`` or ``out`` split into [heads, head_dim],
    ``inputs`` being how many leading kernel axes make up ``in``)."""

    key: str
    variable: keras.Variable
    kind: str
    inputs: int = 1

    @property
    def hf_shape(self) -> tuple[int, ...]:
        shape = tuple(int(d) for d in self.variable.shape)
        if self.kind == "embedding":
            return shape
        if self.kind == "vector":
            return (int(np.prod(shape)),)
        return int(np.prod(shape[self.inputs:])), int(np.prod(shape[: self.inputs]))

    def to_keras(self, value: np.ndarray) -> np.ndarray:
        value = value.T if self.kind == "linear" else value
        return np.reshape(value, tuple(self.variable.shape))

    def to_hf(self, value: np.ndarray) -> np.ndarray:
        if self.kind == "linear":
            return np.reshape(value, self.hf_shape[::-1]).T
        return np.reshape(value, self.hf_shape)

    @property
    def decays(self) -> bool:
        """Whether AdamW decays it: not biases nor LayerNorm weights, as on the torch side."""
        return self.kind != "vector" and "LayerNorm" not in self.key


def weight_map(net: BertClassifier) -> list[WeightSpec]:
    """Every weight of ``net`` under its transformers name (encoder keys without ``bert.``)."""
    backbone = net.backbone
    specs: list[WeightSpec] = []

    def add(key: str, variable, kind: str, inputs: int = 1) -> None:
        specs.append(WeightSpec(key, variable, kind, inputs))

    def layer_norm(prefix: str, layer) -> None:
        add(f"{prefix}.weight", layer.gamma, "vector")
        add(f"{prefix}.bias", layer.beta, "vector")

    def dense(prefix: str, layer, inputs: int = 1) -> None:
        add(f"{prefix}.weight", layer.kernel, "linear", inputs)
        add(f"{prefix}.bias", layer.bias, "vector")

    add("embeddings.word_embeddings.weight", backbone.get_layer("token_embedding").embeddings, "embedding")
    add("embeddings.position_embeddings.weight", backbone.get_layer("position_embedding").position_embeddings,
        "embedding")
    add("embeddings.token_type_embeddings.weight", backbone.get_layer("segment_embedding").embeddings,
        "embedding")
    layer_norm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = block._self_attention_layer
        prefix = f"encoder.layer.{i}"
        # kernel [hidden, heads, head_dim]; under --strategy lora, the projection a LoraAdapter wraps
        dense(f"{prefix}.attention.self.query", getattr(attention.query_dense, "wrapped", attention.query_dense))
        dense(f"{prefix}.attention.self.key", attention.key_dense)
        dense(f"{prefix}.attention.self.value", getattr(attention.value_dense, "wrapped", attention.value_dense))
        dense(f"{prefix}.attention.output.dense", attention.output_dense, inputs=2)  # [heads, head_dim, hidden]
        layer_norm(f"{prefix}.attention.output.LayerNorm", block._self_attention_layer_norm)
        dense(f"{prefix}.intermediate.dense", block._feedforward_intermediate_dense)
        dense(f"{prefix}.output.dense", block._feedforward_output_dense)
        layer_norm(f"{prefix}.output.LayerNorm", block._feedforward_layer_norm)
    if not net.per_token:
        dense("pooler.dense", backbone.get_layer("pooled_dense"))
    dense("classifier", net.classifier)

    mapped = {id(s.variable) for s in specs}
    unused = {id(v) for v in backbone.get_layer("pooled_dense").weights} if net.per_token else set()
    unused |= {id(v) for v in net.weights if "lora_" in v.path}  # LoRA matrices: tl_tensorflow.strategies
    unmapped = [v.path for v in net.weights if id(v) not in mapped and id(v) not in unused]
    if unmapped or len(mapped) != len(specs):
        import keras_hub

        raise TLError(
            f"keras-hub {keras_hub.__version__} has a BertBackbone that tl_tensorflow cannot map to "
            f"transformers weights (unmapped variables: {', '.join(unmapped[:5]) or 'none'}); "
            "install a keras-hub release tl supports"
        )
    return specs


def _normalize_key(key: str) -> str:
    """Old BERT checkpoints name LayerNorm parameters gamma/beta."""
    if ".LayerNorm." in key:
        if key.endswith(".gamma"):
            return key[: -len("gamma")] + "weight"
        if key.endswith(".beta"):
            return key[: -len("beta")] + "bias"
    return key


def _ignored(key: str, head_is_new: bool, per_token: bool = False) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or (
        head_is_new and key.startswith("classifier.")
    ) or (per_token and key.startswith("pooler."))


def assign_state(net: BertClassifier, state: dict[str, np.ndarray], source: str, *, head_is_new: bool) -> None:
    """Set every weight of ``net`` from ``state`` (transformers names); a fresh head keeps its init."""
    state = {_normalize_key(k): v for k, v in state.items()}
    specs = [s for s in weight_map(net) if not (head_is_new and s.key.startswith("classifier."))]
    missing = [s.key for s in specs if s.key not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise UsageError(
            f"{source} lacks {len(missing)} BERT weights ({shown}); is it a BERT checkpoint?"
        )
    mismatched = [
        f"{s.key} {tuple(state[s.key].shape)} (expected {s.hf_shape})"
        for s in specs
        if tuple(state[s.key].shape) != s.hf_shape
    ]
    if mismatched:
        raise UsageError(f"{source}: weights with unexpected shapes: {'; '.join(mismatched[:3])}")
    known = {s.key for s in specs}
    unused = sorted(k for k in state if k not in known and not _ignored(k, head_is_new, net.per_token))
    if unused:
        shown = ", ".join(unused[:5]) + (f", ... ({len(unused) - 5} more)" if len(unused) > 5 else "")
        raise UsageError(
            f"{source} has {len(unused)} weights that a BERT classifier does not use ({shown}); "
            "tl supports the plain BERT architecture"
        )
    for s in specs:
        s.variable.assign(s.to_keras(np.asarray(state[s.key], dtype=np.float32)))


def read_state(net: BertClassifier) -> dict[str, np.ndarray]:
    """Every weight of ``net`` in transformers names and layouts (encoder keys without ``bert.``)."""
    return {
        s.key: np.ascontiguousarray(s.to_hf(np.asarray(s.variable.numpy(), dtype=np.float32)))
        for s in weight_map(net)
    }
