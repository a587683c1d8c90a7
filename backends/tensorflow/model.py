"""The tl Model of the TensorFlow backend: builds and loads the Keras classifier of the checkpoint's
family (``tl_tensorflow.network``) from transformers checkpoints, runs it, and saves it in the
transformers layout (``tl_tensorflow.weights``).

Import this module only after ``tl_tensorflow.runtime.activate()`` (``TensorflowBackend`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tl.data.batching import Batch, join_logits
from tl.data.tokenization import Tokenizer
from tl.interfaces import HeadSpec, Model
from tl.models.hf_checkpoint import (
    CONFIG_NAME,
    check_checkpoint_dir,
    checkpoint_family,
    classifier_config,
    load_state,
    read_config,
    save_state,
    write_json,
)
from tl_tensorflow.distributed import scope
from tl_tensorflow.network import INPUT_SIGNATURE, Classifier, build_network, to_inputs
from tl_tensorflow.weights import assign_state, read_state


class TensorflowModel(Model):
    backend = "tensorflow"

    def __init__(self, network: Classifier, config: dict, head: HeadSpec, tokenizer: Tokenizer,
                 info: dict) -> None:
        self.network = network
        self.config = config  # the checkpoint's config.json
        self.head = head
        self.tokenizer = tokenizer
        self.info = info
        self.precision = "fp32"
        self._predict = None

    def set_precision(self, precision: str) -> None:
        """``bf16``/``fp16``: Keras' mixed_bfloat16/mixed_float16 policy (float32 variables, 16-bit
        compute) everywhere but the head, which stays float32; ``fp32`` otherwise."""
        policy = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}.get(precision, "float32")
        for layer in self.network._flatten_layers(include_self=True, recursive=True):
            if layer is not self.network.classifier:
                layer.dtype_policy = policy
        self.precision = precision
        self._predict = None  # traced under the old policy

    def _predict_fn(self):
        if self._predict is None:
            network = self.network

            @tf.function(input_signature=[INPUT_SIGNATURE])
            def predict(inputs):
                return tf.cast(network(inputs, training=False), tf.float32)

            self._predict = predict
        return self._predict

    def logits(self, batches: Iterable[Batch]) -> np.ndarray | list[np.ndarray]:
        predict = self._predict_fn()
        return join_logits(((predict(to_inputs(b)).numpy(), b.attention_mask) for b in batches),
                           self.network.per_token, self.head.num_labels)

    def state(self, merged: bool = True) -> dict[str, np.ndarray]:
        """All weights in transformers names and layouts (without the family prefix); LoRA
        adapters folded in unless ``merged`` is False."""
        state = read_state(self.network)
        if merged:
            from tl_tensorflow.strategies import adapters, merged_state

            if adapters(self):
                state = merged_state(self, state)
        return state

    def load_state(self, state: dict[str, np.ndarray], source: str = "state", *, head_is_new: bool = False) -> None:
        assign_state(self.network, state, source, head_is_new=head_is_new)

    def save_weights(self, directory: Path) -> None:
        from tl_tensorflow.strategies import adapters, save_adapters

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        family = self.network.family
        write_json(directory / CONFIG_NAME, classifier_config(self.config, self.head, family))
        strategy = getattr(self, "strategy", None)
        if adapters(self) and strategy is not None and not strategy.merge_adapters:
            save_adapters(self, directory, strategy, self.info.get("base_model") or "")
            return
        save_state(self.state(), directory, family)


def build(checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int, info: dict,
          strategy: tf.distribute.Strategy | None = None) -> TensorflowModel:
    """A classifier for ``checkpoint`` (``init='pretrained'``: its weights; ``'scratch'``: random ones)
    with a fresh head, built under ``strategy`` (the backend's; None: one device)."""
    checkpoint = check_checkpoint_dir(checkpoint)
    config = read_config(checkpoint)
    family = checkpoint_family(checkpoint, config)
    keras.utils.set_random_seed(seed)  # the fresh head, scratch weights and dropout streams are seeded
    with scope(strategy):  # several replicas: mirrored variables, made identical on every worker at creation
        network = build_network(config, family, head.num_labels, checkpoint, head.kind)
        if init != "scratch":
            assign_state(network, load_state(checkpoint, family), f"{checkpoint}/model.safetensors",
                         head_is_new=True)
    return TensorflowModel(network, config, head, tokenizer, info)


def load(directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> TensorflowModel:
    """A fine-tuned model directory (weights include the head), on one device."""
    directory = check_checkpoint_dir(directory)
    config = read_config(directory)
    family = checkpoint_family(directory, config)
    keras.utils.set_random_seed(0)
    network = build_network(config, family, head.num_labels, directory, head.kind)
    assign_state(network, load_state(directory, family), f"{directory}/model.safetensors", head_is_new=False)
    return TensorflowModel(network, config, head, tokenizer, info)
