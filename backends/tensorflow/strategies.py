"""Transfer strategies on TensorFlow (semantics in ``tl.training.strategies``): which weights train in each
epoch, discriminative learning rates, and LoRA as a Keras layer equivalent to PEFT's.

Freezing for ``freeze`` and ``lora`` sets ``Variable.trainable`` before ``compile`` (no gradients
are computed for the encoder). ``gradual-unfreeze`` changes the trainable set every epoch inside one
``fit``, so there every weight stays in the graph and the optimizer's per-variable rate factor
(``TLAdamW``) is 0 for frozen groups: no update, no weight decay, and their gradients are left out
of the global-norm clip, as torch leaves out parameters without gradients.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from tl.models.adapters import write_adapters
from tl.training.strategies import Strategy, depth, encoder_inference_mode, lr_scale, trainable_depth
from tl_tensorflow.model import TensorflowModel
from tl_tensorflow.weights import weight_map


class LoraAdapter(keras.layers.Layer):
    """``base(x) + scale * dropout(x) A B`` for an attention projection (an ``EinsumDense`` with
    kernel [hidden, heads, head_dim]). A [hidden, rank] and B [rank, heads * head_dim] are PEFT's
    ``lora_A.weight`` [rank, in] and ``lora_B.weight`` [out, rank] transposed; A starts as PEFT's
    (Kaiming-uniform, bound 1/sqrt(in)), B at zero, so training starts from the base model."""

    def __init__(self, wrapped, rank: int, alpha: float, dropout: float, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wrapped = wrapped
        self.rank = rank
        self.scale = alpha / rank
        kernel_shape = tuple(int(d) for d in wrapped.kernel.shape)
        self.in_dim, self.out_shape = kernel_shape[0], kernel_shape[1:]
        self.lora_dropout = keras.layers.Dropout(dropout, seed=seed)
        bound = 1.0 / math.sqrt(self.in_dim)
        self.lora_a = self.add_weight(name="lora_a", shape=(self.in_dim, rank), dtype="float32",
                                      initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed))
        self.lora_b = self.add_weight(name="lora_b", shape=(rank, int(np.prod(self.out_shape))), dtype="float32",
                                      initializer="zeros")

    def call(self, x, training=False):
        y = self.wrapped(x)
        h = self.lora_dropout(x, training=training)
        a = keras.ops.cast(self.lora_a, h.dtype)
        b = keras.ops.cast(self.lora_b, h.dtype)
        delta = keras.ops.matmul(keras.ops.matmul(h, a), b) * self.scale
        return y + keras.ops.cast(keras.ops.reshape(delta, keras.ops.shape(y)), y.dtype)

    def delta_kernel(self) -> np.ndarray:
        """The merged kernel's increment, shaped like the wrapped kernel."""
        d = self.scale * (np.asarray(self.lora_a.numpy()) @ np.asarray(self.lora_b.numpy()))
        return d.reshape((self.in_dim, *self.out_shape))


def _projections(model: TensorflowModel) -> dict[str, tuple[keras.layers.Layer, str]]:
    from tl_tensorflow.network import family_module

    return family_module(model.network.family).attention_projections(model.network)


def adapters(model: TensorflowModel) -> dict[str, LoraAdapter]:
    """transformers projection name (``encoder.layer.0.attention.self.query``) -> its adapter."""
    out = {}
    for name, (owner, attribute) in _projections(model).items():
        layer = getattr(owner, attribute)
        if isinstance(layer, LoraAdapter):
            out[name] = layer
    return out


def add_lora(model: TensorflowModel, strategy: Strategy, seed: int) -> None:
    """Wrap every attention projection the family names for LoRA (query and value) in a ``LoraAdapter``."""
    for n, (owner, attribute) in enumerate(_projections(model).values()):
        base = getattr(owner, attribute)
        if isinstance(base, LoraAdapter):
            continue
        adapter = LoraAdapter(base, strategy.lora_rank, strategy.lora_alpha, strategy.lora_dropout,
                              seed=seed + n, name=f"{base.name}_lora")
        tracker = getattr(owner, "_tracker", None)
        if tracker is not None:
            tracker.unlock()
        try:
            setattr(owner, attribute, adapter)
        finally:
            if tracker is not None:
                tracker.lock()


def prepare(model: TensorflowModel, strategy: Strategy, seed: int) -> None:
    """Before ``compile``: adapters for ``lora``, trainable flags for ``freeze`` and ``lora``,
    inference-mode encoder for ``freeze``."""
    net = model.network
    if strategy.lora:
        add_lora(model, strategy, seed)
    layers = net.num_layers
    fixed = strategy.name in ("freeze", "lora")
    for spec in weight_map(net):
        spec.variable.trainable = not fixed or depth(spec.key, layers, net.family) == 0
    for adapter in adapters(model).values():
        adapter.lora_a.trainable = adapter.lora_b.trainable = True
    net.encoder_inference = encoder_inference_mode(strategy)


def lr_factors(model: TensorflowModel, variables: list, strategy: Strategy, epoch: int) -> list[float]:
    """Per trainable variable: its rate factor (``layer_lr_decay ** depth``), 0 while frozen."""
    layers, family = model.network.num_layers, model.network.family
    keys = {id(s.variable): s.key for s in weight_map(model.network)}
    limit = trainable_depth(strategy, epoch, layers) if strategy.name == "gradual-unfreeze" else layers + 1
    out = []
    for v in variables:
        key = keys.get(id(v))
        if key is None:  # a LoRA matrix: trains at the head's rate
            out.append(1.0)
        else:
            out.append(lr_scale(key, layers, strategy, family) if depth(key, layers, family) <= limit else 0.0)
    return out


def parameter_counts(model: TensorflowModel, factors: list[float] | None = None) -> dict[str, int]:
    """Trainable (now) and total weights; LoRA matrices count in both, as on torch."""
    net = model.network
    variables = net.trainable_variables
    if factors is None:
        factors = [1.0] * len(variables)
    trainable = sum(int(np.prod(v.shape)) for v, f in zip(variables, factors, strict=True) if f > 0)
    counted = [s.variable for s in weight_map(net)]
    counted += [w for a in adapters(model).values() for w in (a.lora_a, a.lora_b)]
    return {"trainable_parameters": int(trainable), "total_parameters": int(sum(int(np.prod(v.shape)) for v in counted))}


def merged_state(model: TensorflowModel, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` (transformers names) with each adapter folded into its projection's weight."""
    out = dict(state)
    for name, adapter in adapters(model).items():
        # transformers weight [out, in] = kernel [in, heads, head_dim] reshaped and transposed
        delta = adapter.delta_kernel().reshape(adapter.in_dim, -1).T
        out[f"{name}.weight"] = (out[f"{name}.weight"] + delta).astype(np.float32)
    return out


def save_adapters(model: TensorflowModel, directory: Path, strategy: Strategy, base: str) -> None:
    """The adapters and the head alone, in PEFT's format (``tl.models.adapters``)."""
    layers, family = model.network.num_layers, model.network.family
    tensors = {k: v for k, v in model.state(merged=False).items() if depth(k, layers, family) == 0}
    for name, adapter in adapters(model).items():
        tensors[f"{name}.lora_A.weight"] = np.asarray(adapter.lora_a.numpy()).T  # [rank, in]
        tensors[f"{name}.lora_B.weight"] = np.asarray(adapter.lora_b.numpy()).T  # [out, rank]
    write_adapters(directory, tensors, strategy, base, family)


__all__ = ["LoraAdapter", "add_lora", "adapters", "lr_factors", "merged_state", "parameter_counts", "prepare",
           "save_adapters"]
