"""The two-way table between transformers' weight names and the Keras variables of a
``tl_tensorflow.network.Classifier``: each family's module lists it (``weight_map``); loading
(``assign_state``) and saving (``read_state``) both go through it, so they are exact inverses.
Names are transformers' without the family's base-model prefix (``tl.models.hf_checkpoint``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tl.errors import TLError, UsageError

if TYPE_CHECKING:
    import keras

    from tl_tensorflow.network import Classifier


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


class WeightSpecs:
    """Collects a family's ``WeightSpec`` list: ``dense`` (kernel + bias; a LoRA-wrapped projection
    maps its wrapped layer), ``layer_norm`` (gamma + beta), ``embedding``."""

    def __init__(self) -> None:
        self.specs: list[WeightSpec] = []

    def add(self, key: str, variable, kind: str, inputs: int = 1) -> None:
        self.specs.append(WeightSpec(key, variable, kind, inputs))

    def embedding(self, key: str, variable) -> None:
        self.add(key, variable, "embedding")

    def layer_norm(self, prefix: str, layer) -> None:
        self.add(f"{prefix}.weight", layer.gamma, "vector")
        self.add(f"{prefix}.bias", layer.beta, "vector")

    def dense(self, prefix: str, layer, inputs: int = 1, bias: bool = True) -> None:
        layer = getattr(layer, "wrapped", layer)  # under --strategy lora: the projection a LoraAdapter wraps
        self.add(f"{prefix}.weight", layer.kernel, "linear", inputs)
        if bias:
            self.add(f"{prefix}.bias", layer.bias, "vector")


def weight_map(net: Classifier) -> list[WeightSpec]:
    """Every weight of ``net`` under its transformers name (without the family's prefix)."""
    from tl_tensorflow.network import family_module

    module = family_module(net.family)
    specs = module.weight_map(net)
    mapped = {id(s.variable) for s in specs}
    unused = {id(v) for v in getattr(module, "unused_variables", lambda _: [])(net)}
    unused |= {id(v) for v in net.weights if "lora_" in v.path}  # LoRA matrices: tl_tensorflow.strategies
    unmapped = [v.path for v in net.weights if id(v) not in mapped and id(v) not in unused]
    if unmapped or len(mapped) != len(specs):
        import keras_hub

        raise TLError(
            f"tl_tensorflow cannot map every variable of its {net.family.name} network to transformers weights "
            f"(keras-hub {keras_hub.__version__}; unmapped: {', '.join(unmapped[:5]) or 'none'}, "
            f"{len(specs) - len(mapped)} mapped twice); install a keras-hub release tl supports"
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


def _ignored(key: str, family, head_is_new: bool, per_token: bool) -> bool:
    return key.endswith(family.buffers) or key.startswith(family.ignored_prefixes) or (
        head_is_new and family.is_head(key)
    ) or (per_token and key.startswith(family.sequence_only))


def assign_state(net: Classifier, state: dict[str, np.ndarray], source: str, *, head_is_new: bool) -> None:
    """Set every weight of ``net`` from ``state`` (transformers names without the family prefix); a
    fresh head keeps its initialisation. A mismatch names the first missing, misshapen or unexpected
    tensor."""
    family = net.family
    state = {_normalize_key(k): v for k, v in state.items()}
    specs = [s for s in weight_map(net) if not (head_is_new and family.is_head(s.key))]
    missing = [s.key for s in specs if s.key not in state]
    if missing:
        raise UsageError(
            f"{source} lacks {len(missing)} of the {len(specs)} weights a {family.name} model of this config.json "
            f"has, the first being {family.full_name(missing[0])}; is it a {family.name} checkpoint?"
        )
    mismatched = [
        f"{family.full_name(s.key)} {tuple(state[s.key].shape)} (config.json implies {s.hf_shape})"
        for s in specs
        if tuple(state[s.key].shape) != s.hf_shape
    ]
    if mismatched:
        raise UsageError(f"{source}: {len(mismatched)} weights do not match config.json, the first being {mismatched[0]}")
    known = {s.key for s in specs}
    unused = sorted(k for k in state if k not in known and not _ignored(k, family, head_is_new, net.per_token))
    if unused:
        raise UsageError(
            f"{source} has {len(unused)} weights that a {family.name} classifier does not use, the first being "
            f"{family.full_name(unused[0])}; does config.json describe these weights?"
        )
    for s in specs:
        s.variable.assign(s.to_keras(np.asarray(state[s.key], dtype=np.float32)))


def read_state(net: Classifier) -> dict[str, np.ndarray]:
    """Every weight of ``net`` in transformers names and layouts (without the family prefix)."""
    return {
        s.key: np.ascontiguousarray(s.to_hf(np.asarray(s.variable.numpy(), dtype=np.float32)))
        for s in weight_map(net)
    }
