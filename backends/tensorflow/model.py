"""Building, loading, running and saving a Keras 3 BERT sequence classifier on TensorFlow.

The encoder is KerasHub's ``BertBackbone``; its ``pooled_output`` (BERT's pooler, dense + tanh) feeds
dropout and a ``Dense(num_labels)`` head, as in transformers' ``BertForSequenceClassification``; for a
token head its ``sequence_output`` does (``BertForTokenClassification``, which has no pooler: the
backbone's pooler is then frozen and neither loaded nor saved).
Weights are read and written in the transformers layout through ``tl.checkpoint``: ``WEIGHT_MAP``
below is the one table both directions use, so loading and saving are exact inverses.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tl.batching import IGNORE_INDEX, Batch, unpad
from tl.checkpoint import (
    CONFIG_NAME,
    check_checkpoint_dir,
    classifier_config,
    load_state,
    read_config,
    save_state,
    write_json,
)
from tl.errors import TLError, UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION, HeadSpec, Model
from tl.tokenization import Tokenizer


def _select_keras_backend() -> None:
    """Make Keras run on TensorFlow; Keras picks its backend once, when it is first imported."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return
    try:
        current = loaded.backend.backend()
    except AttributeError:  # Keras 2, or a half-imported module
        current = getattr(loaded, "__version__", "unknown")
    if current != "tensorflow":
        raise TLError(
            f"Keras was already imported in this process with the {current!r} backend; the tensorflow "
            "backend of tl needs Keras on TensorFlow. Set KERAS_BACKEND=tensorflow (or run tl in a fresh "
            "process) before anything imports keras."
        )


@contextlib.contextmanager
def _native_stderr_captured():
    """TensorFlow's C++ start-up notices (oneDNN, "no CUDA drivers") ignore TF_CPP_MIN_LOG_LEVEL in
    recent releases; keep them off the user's terminal, but show them if the import itself fails."""
    if os.environ.get("TL_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_select_keras_backend()

with _native_stderr_captured():
    import keras  # noqa: E402
    import keras_hub  # noqa: E402
    import tensorflow as tf  # noqa: E402

    _GPUS = tf.config.list_physical_devices("GPU")

#: transformers' ``hidden_act`` -> the Keras activation of the feed-forward block.
ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: keras.activations.gelu(x, approximate=False),
    "gelu_new": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: keras.activations.gelu(x, approximate=True),
    "gelu_fast": lambda x: keras.activations.gelu(x, approximate=True),
    "relu": keras.activations.relu,
    "silu": keras.activations.silu,
    "swish": keras.activations.silu,
}
#: Checkpoint entries that are not weights of BertForSequenceClassification (buffers, pre-training heads).
IGNORED_KEYS = ("embeddings.position_ids",)
IGNORED_PREFIXES = ("cls.",)
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
#: Head kind -> the BertBackbone output the head reads. A new head kind is a new entry here (and in
#: ``Capabilities.heads``); ``BertClassifier.summed_loss`` scores either shape of labels.
HEAD_INPUTS = {HEAD_SEQUENCE_CLASSIFICATION: "pooled_output", HEAD_TOKEN_CLASSIFICATION: "sequence_output"}


def gpu_devices() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, compute capability) of each visible GPU; listing does not allocate GPU memory."""
    out = []
    for gpu in _GPUS:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        out.append((details.get("device_name", gpu.name), tuple(capability) if capability else None))
    return out


@contextlib.contextmanager
def _tape(variables):
    """A gradient tape that watches ``variables`` alone. A plain tape watches every trainable
    ``tf.Variable`` the forward pass reads, and Keras' ``trainable = False`` leaves the underlying
    variable trainable: under ``--strategy freeze`` it recorded the frozen encoder and built its
    whole backward pass into the step (about 2,000 of the step graph's 3,400 ops for MiniLM; never
    run, but traced and optimized with every new step function)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([v.value for v in variables])  # Keras variables wrap the tf.Variable the tape reads
        yield tape


class BertClassifier(keras.Model):
    """BertBackbone -> pooled output (sequence head) or sequence output (token head) -> dropout ->
    Dense(num_labels) (float32 even under bf16)."""

    def __init__(self, backbone: keras_hub.models.BertBackbone, num_labels: int, dropout: float,
                 initializer_range: float, head_kind: str = HEAD_SEQUENCE_CLASSIFICATION, **kwargs) -> None:
        super().__init__(**kwargs)
        if head_kind not in HEAD_INPUTS:
            raise UsageError(f"the tensorflow backend cannot build a {head_kind!r} head (heads: {', '.join(HEAD_INPUTS)})")
        self.head_kind = head_kind
        self.backbone = backbone
        if self.per_token:  # BertForTokenClassification has no pooler: unused, never trained or saved
            backbone.get_layer("pooled_dense").trainable = False
        self.classifier_dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.classifier = keras.layers.Dense(
            num_labels,
            kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
            bias_initializer="zeros",
            dtype="float32",
            name="classifier",
        )

    @property
    def per_token(self) -> bool:
        return self.head_kind == HEAD_TOKEN_CLASSIFICATION

    #: ``--strategy freeze``: the encoder runs in inference mode (no dropout) while the head trains.
    encoder_inference = False

    def call(self, inputs, training=False):
        encoder_training = bool(training) and not self.encoder_inference
        features = self.backbone(inputs, training=encoder_training)[HEAD_INPUTS[self.head_kind]]
        return self.classifier(self.classifier_dropout(features, training=training))

    def summed_loss(self, y, logits):
        """(cross-entropy summed over the scored labels, how many labels were scored): [rows] labels
        with [rows, labels] logits, or [rows, tokens] labels (-100: not scored) with per-token logits."""
        if not self.per_token:
            per_row = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            return tf.reduce_sum(tf.cast(per_row, tf.float32)), tf.cast(tf.shape(y)[0], tf.float32)
        scored = tf.not_equal(y, IGNORE_INDEX)
        per_token = keras.losses.sparse_categorical_crossentropy(tf.where(scored, y, tf.zeros_like(y)), logits,
                                                                 from_logits=True)
        total = tf.reduce_sum(tf.where(scored, tf.cast(per_token, tf.float32), 0.0))
        return total, tf.reduce_sum(tf.cast(scored, tf.float32))

    #: Set by tl_tensorflow.train: each element is a tuple of (x, y) micro-batches making one
    #: optimizer step on this replica (gradient accumulation, or several replicas).
    grouped_steps = False

    def train_step(self, data):
        # fit()'s default step reports the running mean of the loss; tl's callbacks want each batch's.
        if self.grouped_steps:
            return self._grouped_train_step(data)
        x, y = data
        variables = self.trainable_variables
        with _tape(variables) as tape:
            logits = self(x, training=True)
            if self.per_token:  # the mean over labelled tokens
                total, scored = self.summed_loss(y, logits)
                loss = total / tf.maximum(scored, 1.0)
            else:
                loss = self.compute_loss(x=x, y=y, y_pred=logits, training=True)
            scaled = self.optimizer.scale_loss(loss)  # fp16 loss scaling; the identity otherwise
        # Embedding gradients come as IndexedSlices with a row per token; made dense (repeated token
        # ids summed) so that clipping by global norm sees the true norm, as in torch and in the grouped
        # step (Keras' clip_by_global_norm takes the norm of the slices' rows, smaller when ids repeat).
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in tape.gradient(scaled, variables)]
        self.optimizer.apply(grads, variables)
        return {"loss": loss, "samples": tf.shape(y)[0]}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Under a tf.distribute strategy, Keras 3's fit peeks at the first distributed batch and
        all-reduces it to get input shapes, which fails on dict inputs ("Attempt to convert a value
        ({'token_ids': PerReplica:...}) with an unsupported type") and would need equal shapes on
        every worker. The shapes are known: build from a one-row stand-in batch instead."""
        if iterator is not None and self.distribute_strategy.num_replicas_in_sync > 1:
            stand_in = {name: np.zeros((1, 8), dtype=np.int32) for name in INPUT_NAMES}
            labels = np.zeros((1, 8) if self.per_token else (1,), dtype=np.int64)
            iterator, data_batch = None, (stand_in, labels)  # x, y
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _grouped_train_step(self, data):
        """One optimizer step whose rows are spread over micro-batches (gradient accumulation) and
        replicas (devices or workers). ``data`` is this replica's shards of the step's micro-batches,
        a tuple of (x, y). Each micro-batch's loss is CE_sum(its rows) / rows of the whole step (for a
        token head: over labelled tokens), so the losses and their gradients SUM to the single-process mean loss of the step and its
        gradient (Keras' own accumulation would average micro-batch means instead, weighting a short
        last micro-batch too much). The gradients are summed over the replicas here, once per step,
        before the optimizer, so that clipping by global norm sees the whole step's gradient as in
        one process; the optimizer (``TLAdamW``, presummed) does not reduce again."""
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # under a LossScaleOptimizer
        if not getattr(inner, "gradients_presummed", False):
            raise TLError("grouped train steps need tl_tensorflow.train's optimizer (gradients_presummed)")
        replica = tf.distribute.get_replica_context()
        total = tf.distribute.ReduceOp.SUM
        local_rows = tf.add_n([tf.shape(y)[0] for _, y in data])
        rows = tf.maximum(replica.all_reduce(total, tf.cast(local_rows, tf.float32)), 1.0)
        targets = rows  # token head: the labelled tokens of the whole step
        if self.per_token:
            local = tf.add_n([tf.reduce_sum(tf.cast(tf.not_equal(y, IGNORE_INDEX), tf.float32)) for _, y in data])
            targets = tf.maximum(replica.all_reduce(total, local), 1.0)
        variables = self.trainable_variables
        grads = [tf.zeros(v.shape, dtype=v.dtype) for v in variables]
        loss = tf.zeros((), tf.float32)
        for x, y in data:  # the step's micro-batches: gradients accumulate locally
            with _tape(variables) as tape:
                logits = self(x, training=True)
                micro_loss = self.summed_loss(y, logits)[0] / targets
                scaled = self.optimizer.scale_loss(micro_loss)  # fp16 loss scaling; the identity otherwise
            micro = tape.gradient(scaled, variables)
            grads = [a if g is None else a + tf.convert_to_tensor(g)  # embeddings: IndexedSlices -> dense
                     for a, g in zip(grads, micro, strict=True)]
            loss += micro_loss
        if replica.num_replicas_in_sync > 1:
            grads = replica.all_reduce(total, grads)
            loss = replica.all_reduce(total, loss)
        self.optimizer.apply(grads, variables)
        if replica.num_replicas_in_sync == 1:
            return {"loss": loss, "samples": tf.cast(rows, tf.int32)}
        # Shape [1], not scalars: under MultiWorkerMirroredStrategy Keras 3 reduces step outputs with
        # strategy.reduce(MEAN, v, axis=0), which fails on scalars ("Invalid reduction dimension 0 for
        # input with 0 dimensions", tensorflow/tensorflow#72388). Every replica holds the same values.
        return {"loss": tf.reshape(loss, [1]), "samples": tf.reshape(tf.cast(rows, tf.int32), [1])}


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


def _check_architecture(config: dict, source: Path) -> None:
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise UsageError(
            f"{source}/{CONFIG_NAME}: hidden_act {act!r} is not supported by the tensorflow backend "
            f"(supported: {', '.join(ACTIVATIONS)})"
        )
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise UsageError(
            f"{source}/{CONFIG_NAME}: position_embedding_type {kind!r} is not supported by the tensorflow "
            "backend (only 'absolute')"
        )
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UsageError(f"{source}/{CONFIG_NAME}: hidden_size is not a multiple of num_attention_heads")


def build_network(config: dict, num_labels: int, source: Path,
                  head_kind: str = HEAD_SEQUENCE_CLASSIFICATION) -> BertClassifier:
    """The Keras classifier for a transformers BERT config, randomly initialized and built."""
    hidden_dropout = float(config.get("hidden_dropout_prob", 0.1))
    try:
        _check_architecture(config, source)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=int(config["vocab_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            hidden_dim=int(config["hidden_size"]),
            intermediate_dim=int(config["intermediate_size"]),
            dropout=hidden_dropout,
            max_sequence_length=int(config.get("max_position_embeddings", 512)),
            num_segments=int(config.get("type_vocab_size", 2)),
            dtype="float32",
        )
    except KeyError as exc:
        raise UsageError(f"{source}/{CONFIG_NAME} lacks {exc.args[0]!r}") from None
    # BertBackbone hard-codes the tanh-approximated GELU and eps 1e-12; follow the checkpoint's config
    # (BERT uses the exact GELU), so logits match transformers.
    activation = ACTIVATIONS[config.get("hidden_act", "gelu")]
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    backbone.get_layer("embeddings_layer_norm").epsilon = epsilon
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        block.activation = activation
        block._feedforward_intermediate_dense.activation = activation
        block.layer_norm_epsilon = epsilon
        block._self_attention_layer_norm.epsilon = epsilon
        block._feedforward_layer_norm.epsilon = epsilon
    classifier_dropout = config.get("classifier_dropout")
    net = BertClassifier(
        backbone,
        num_labels,
        dropout=hidden_dropout if classifier_dropout is None else float(classifier_dropout),
        initializer_range=float(config.get("initializer_range", 0.02)),
        head_kind=head_kind,
        name="bert_classifier",
    )
    dummy = {name: np.zeros((1, 2), dtype=np.int32) for name in INPUT_NAMES}
    net(dummy, training=False)  # creates the head's variables
    return net


def to_inputs(b: Batch) -> dict[str, np.ndarray]:
    return {
        "token_ids": np.asarray(b.input_ids, dtype=np.int32),
        "segment_ids": np.asarray(b.token_type_ids, dtype=np.int32),
        "padding_mask": np.asarray(b.attention_mask, dtype=np.int32),
    }


INPUT_SIGNATURE = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}


class TensorflowModel(Model):
    backend = "tensorflow"

    def __init__(self, network: BertClassifier, config: dict, head: HeadSpec, tokenizer: Tokenizer,
                 info: dict) -> None:
        self.network = network
        self.config = config  # the checkpoint's BERT config.json
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
        if self.network.per_token:
            return [row.astype(np.float32, copy=False) for b in batches
                    for row in unpad(predict(to_inputs(b)).numpy(), b.attention_mask)]
        outs = [predict(to_inputs(b)).numpy() for b in batches]
        if not outs:
            return np.zeros((0, self.head.num_labels), dtype=np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def state(self, merged: bool = True) -> dict[str, np.ndarray]:
        """All weights in transformers names and layouts (encoder keys without ``bert.``); LoRA
        adapters folded in unless ``merged`` is False."""
        state = {
            s.key: np.ascontiguousarray(s.to_hf(np.asarray(s.variable.numpy(), dtype=np.float32)))
            for s in weight_map(self.network)
        }
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
        write_json(directory / CONFIG_NAME, classifier_config(self.config, self.head))
        strategy = getattr(self, "strategy", None)
        if adapters(self) and strategy is not None and not strategy.merge_adapters:
            save_adapters(self, directory, strategy, self.info.get("base_checkpoint") or "")
            return
        save_state(self.state(), directory)


def build(checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
          info: dict) -> TensorflowModel:
    checkpoint = check_checkpoint_dir(checkpoint)
    config = read_config(checkpoint)
    keras.utils.set_random_seed(seed)  # the fresh head, scratch weights and dropout streams are seeded
    from tl_tensorflow.distributed import scope

    with scope():  # multi-worker: mirrored variables, made identical on every worker at creation
        network = build_network(config, head.num_labels, checkpoint, head.kind)
        if init != "scratch":
            assign_state(network, load_state(checkpoint), f"{checkpoint}/model.safetensors", head_is_new=True)
    return TensorflowModel(network, config, head, tokenizer, info)


def load(directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> TensorflowModel:
    directory = check_checkpoint_dir(directory)
    config = read_config(directory)
    keras.utils.set_random_seed(0)
    network = build_network(config, head.num_labels, directory, head.kind)
    assign_state(network, load_state(directory), f"{directory}/model.safetensors", head_is_new=False)
    return TensorflowModel(network, config, head, tokenizer, info)
