"""Run configuration: one dataclass, resolved CLI option > recipe file > task default > tl default."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tl.data.truncation import TRUNCATIONS
from tl.errors import UsageError
from tl.training.small_data import DEFAULT_MIN_STEPS
from tl.training.strategies import STRATEGIES, Strategy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLASS_WEIGHTS = ("none", "balanced")
INITS = ("pretrained", "scratch")


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` means "not set here"; see ``resolve``."""

    task: str | None = None
    backend: str | None = None
    model: str | None = None
    dataset: str | None = None
    eval_dataset: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    #: ``--batch-size auto``: keep the effective batch, search the largest per-device batch that fits.
    auto_batch: bool | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    max_length: int | None = None
    seed: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    precision: str | None = None
    precision_strict: bool | None = None
    grad_accum: int | None = None
    init: str | None = None
    allow_pickle: bool | None = None
    threads: int | None = None
    save_every: int | None = None
    keep_checkpoints: int | None = None
    #: transfer strategy (tl.training.strategies): finetune | freeze | gradual-unfreeze | lora
    strategy: str | None = None
    layer_lr_decay: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    merge_adapters: bool | None = None
    #: texts longer than max_length (tl.data.truncation): head | tail | head+tail | chunks
    truncation: str | None = None
    #: loss weights per class: none | balanced (n / (classes x count), mean 1 over the training rows)
    class_weights: str | None = None
    #: evaluate on this share of the training data (held out by a salted hash of the text) instead of
    #: the evaluation split: model selection without looking at the evaluation split (``tl tune``)
    validation_split: float | None = None
    #: small datasets train at least this many optimizer steps (more epochs), see ``tl.training.small_data``;
    #: ``resolve`` sets ``DEFAULT_MIN_STEPS`` when neither the CLI nor the recipe gives epochs
    min_steps: int | None = None
    #: train exactly this many optimizer steps, overriding epochs and min_steps (``tl.training.max_steps``)
    max_steps: int | None = None
    #: history, TensorBoard and the step hook every N optimizer steps
    log_every: int | None = None
    output: str | None = None


#: tl's own defaults, below the task's.
DEFAULTS: dict[str, Any] = {
    "task": "sentiment",
    "backend": "torch",
    "text_column": "text",
    "label_column": "label",
    "epochs": 3,
    "batch_size": 32,
    "lr": 5e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_length": 128,
    "seed": 0,
    "precision": "auto",
    "init": "pretrained",
    "keep_checkpoints": 2,
    "strategy": "finetune",
    "layer_lr_decay": 1.0,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    # Texts longer than max_length keep their start and their end (tl.data.truncation; measured in README)
    "truncation": "head+tail",
    "class_weights": "none",
    "log_every": 10,
}

FIELD_NAMES = tuple(f.name for f in fields(RunConfig))


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe. Keys may use dashes or underscores; unknown keys are an error."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"recipe {p} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read recipe {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {p} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELD_NAMES:
            raise UsageError(f"recipe {p}: unknown key {key!r}; valid keys: {', '.join(FIELD_NAMES)}")
        out[name] = value
    return out


def resolve(cli: dict[str, Any], recipe: dict[str, Any], task_defaults: dict[str, Any]) -> RunConfig:
    """Merge the layers; CLI options that are ``None`` were not given."""
    merged: dict[str, Any] = {}
    cli, recipe = dict(cli), dict(recipe)
    for layer in (cli, recipe):
        if layer.get("batch_size") == "auto":
            layer["batch_size"] = None
            layer["auto_batch"] = True
    for name in FIELD_NAMES:
        for layer in (cli, recipe, task_defaults, DEFAULTS):
            if layer.get(name) is not None:
                merged[name] = layer[name]
                break
    config = RunConfig(**merged)
    if config.min_steps is None and config.max_steps is None and cli.get("epochs") is None \
            and recipe.get("epochs") is None:
        # the epochs are a default, not the user's: a small training set trains at least this many steps
        # (not with --max-steps, which sets the steps itself)
        config.min_steps = DEFAULT_MIN_STEPS
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    def positive(name: str, allow_zero: bool = False) -> None:
        value = getattr(config, name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name.replace('_', '-')} must be a number, got {value!r}")
        if value < 0 or (value == 0 and not allow_zero):
            raise UsageError(f"{name.replace('_', '-')} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    for name in ("epochs", "batch_size", "lr", "max_length", "max_train_samples", "max_eval_samples", "threads",
                 "grad_accum", "save_every", "keep_checkpoints", "layer_lr_decay", "lora_rank", "lora_alpha",
                 "validation_split", "min_steps", "max_steps", "log_every"):
        positive(name)
    for name in ("weight_decay", "warmup_ratio", "seed"):
        positive(name, allow_zero=True)
    for name in ("epochs", "batch_size", "max_length", "seed", "max_train_samples", "max_eval_samples", "threads",
                 "grad_accum", "lora_rank", "min_steps", "max_steps", "log_every"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, int):
            raise UsageError(f"{name.replace('_', '-')} must be an integer, got {value!r}")
    if config.warmup_ratio is not None and config.warmup_ratio > 1:
        raise UsageError(f"warmup-ratio must be between 0 and 1, got {config.warmup_ratio}")
    if config.max_length is not None and config.max_length < 8:
        raise UsageError(f"max-length must be at least 8, got {config.max_length}")
    if config.precision is not None and config.precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    if config.init is not None and config.init not in INITS:
        raise UsageError(f"init must be one of {', '.join(INITS)}, got {config.init!r}")
    if config.strategy is not None and config.strategy not in STRATEGIES:
        raise UsageError(f"strategy must be one of {', '.join(STRATEGIES)}, got {config.strategy!r}")
    if config.layer_lr_decay is not None and config.layer_lr_decay > 1:
        raise UsageError(f"layer-lr-decay must be in (0, 1], got {config.layer_lr_decay}")
    if config.truncation is not None and config.truncation not in TRUNCATIONS:
        raise UsageError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {config.truncation!r}")
    if config.class_weights is not None and config.class_weights not in CLASS_WEIGHTS:
        raise UsageError(f"class-weights must be one of {', '.join(CLASS_WEIGHTS)}, got {config.class_weights!r}")
    if config.validation_split is not None and not 0 < config.validation_split < 1:
        raise UsageError(f"validation-split must be between 0 and 1 (exclusive), got {config.validation_split}")
    if config.merge_adapters and config.strategy not in (None, "lora"):
        raise UsageError("--merge-adapters applies to --strategy lora only")


def strategy_of(config: RunConfig) -> Strategy:
    return Strategy(name=config.strategy or "finetune", layer_lr_decay=float(config.layer_lr_decay or 1.0),
                    lora_rank=int(config.lora_rank or 8), lora_alpha=float(config.lora_alpha or 16.0),
                    merge_adapters=bool(config.merge_adapters))


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class TrainSettings:
    """What a backend's training loop needs, fully resolved."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    seed: int
    precision: str  # "fp32" | "bf16" | "fp16" after resolution
    threads: int | None = None
    #: Micro-batches per optimizer step; the core yields them in groups of this size.
    grad_accum: int = 1
    loss_scaling: bool = False
    #: Processes training together (torchrun); each gets its shard of every micro-batch.
    world_size: int = 1
    rank: int = 0
    replicas: int = 1  # local devices this process drives (tf.distribute.MirroredStrategy)
    strategy: Strategy = field(default_factory=Strategy)
    #: Loss weight per label id (``tl.training.small_data.balanced_weights``; mean 1 over the training
    #: targets): each target's cross-entropy times its label's weight, summed and divided by the step's
    #: targets as without weights. None: unweighted.
    class_weights: tuple[float, ...] | None = None
    #: ``--max-steps``: the run's optimizer steps (the last epoch cut short after the step that reaches
    #: it; ``tl.training.max_steps``); None: every step of ``epochs`` epochs.
    max_steps: int | None = None
