"""``tl run``: fine-tune a model and write a run directory."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tl.data.truncation import TRUNCATIONS
from tl.errors import UsageError
from tl.training.config import CLASS_WEIGHTS, INITS, PRECISIONS, RunConfig, load_recipe, resolve
from tl.training.small_data import DEFAULT_MIN_STEPS
from tl.training.strategies import STRATEGIES

if TYPE_CHECKING:
    from tl.plugins.registry import Registry


class BatchSize(click.ParamType):
    name = "batch-size"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        if number < 1:
            self.fail(f"{value} is not >= 1", param, ctx)
        return number


BATCH = BatchSize()


#: ``tl run``'s options for what a run is (RunConfig fields), in ``tl run --help``'s order; ``tl tune``
#: takes them too, for what it does not search.
RUN_OPTIONS = (
    click.option("--task", help="Task name (see `tl plugins`). Default: sentiment."),
    click.option("--backend", help="Backend: torch or tensorflow (see `tl plugins`). Default: torch."),
    click.option("--model", help="Model alias, local Hugging Face checkpoint directory, or hub id (org/name, hf:name)."),
    click.option("--dataset", help="Dataset name or a local .csv/.tsv/.jsonl/.parquet file (20% held out by hash)."),
    click.option("--eval-dataset", help="Separate evaluation file or dataset; then all of --dataset trains."),
    click.option("--text-column", help="Text column of local data files. Default: text."),
    click.option("--text-pair-column", help="Second text column, for sentence-pair inputs."),
    click.option("--label-column", help="Label column of local data files. Default: label."),
    click.option("--epochs", type=click.IntRange(min=1), help="Training epochs."),
    click.option("--batch-size", type=BATCH, metavar="N|auto",
                 help="Examples per optimizer step; auto: keep the recipe's, fit the per-device batch to memory."),
    click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate (AdamW)."),
    click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay. Default: 0.01."),
    click.option("--warmup-ratio", type=click.FloatRange(0, 1), help="Share of steps for linear warm-up. Default: 0.1."),
    click.option("--max-length", type=click.IntRange(min=8), help="Maximum tokens per example (truncation)."),
    click.option("--seed", type=click.IntRange(min=0), help="Random seed (initialisation, data order, dropout)."),
    click.option("--max-train-samples", type=click.IntRange(min=1), help="Train on a fixed random subset of this size."),
    click.option("--max-eval-samples", type=click.IntRange(min=1), help="Evaluate on a fixed random subset of this size."),
    click.option("--precision", type=click.Choice(PRECISIONS),
                 help="auto: bf16 where the hardware computes it natively, fp16 on GPUs without bf16, else fp32."),
    click.option("--precision-strict", is_flag=True, default=None,
                 help="Fail instead of falling back to fp32 when --precision cannot be honoured here."),
    click.option("--grad-accum", type=click.IntRange(min=1),
                 help="Micro-batches per optimizer step (the effective batch stays --batch-size)."),
    click.option("--init", type=click.Choice(INITS), help="pretrained weights, or scratch (same architecture, random)."),
    click.option("--allow-pickle", is_flag=True, default=None,
                 help="Convert a trusted pickle checkpoint (pytorch_model.bin) to safetensors and use it."),
    click.option("--strategy", type=click.Choice(STRATEGIES),
                 help="finetune (all weights), freeze (head only), gradual-unfreeze (top down, a group per epoch), "
                      "lora (low-rank adapters). Default: finetune."),
    click.option("--layer-lr-decay", type=click.FloatRange(0, 1, min_open=True),
                 help="Discriminative rates: each lower layer's rate is the one above times this. Default: 1."),
    click.option("--lora-rank", type=click.IntRange(min=1), help="LoRA rank. Default: 8."),
    click.option("--lora-alpha", type=click.FloatRange(min=0, min_open=True), help="LoRA alpha (scale alpha/rank). Default: 16."),
    click.option("--merge-adapters", is_flag=True, default=None,
                 help="lora: save a standard checkpoint with the adapters merged (default: the adapters alone)."),
    click.option("--truncation", type=click.Choice(TRUNCATIONS),
                 help="Texts longer than --max-length: keep the head, the tail, head+tail, or all of it in "
                      "overlapping chunks (logits averaged per text). Default: head+tail."),
    click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS),
                 help="balanced: weight each class's loss by n / (classes x its count), for imbalanced labels. "
                      "Default: none."),
    click.option("--validation-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="FRACTION",
                 help="Evaluate on this share of the training data (held out by hash) instead of the evaluation "
                      "split, e.g. for model selection."),
    click.option("--min-steps", type=click.IntRange(min=1),
                 help="Train at least this many optimizer steps: small datasets get more epochs. Default: "
                      f"{DEFAULT_MIN_STEPS} unless --epochs (or the recipe's epochs) is given."),
    click.option("--max-steps", type=click.IntRange(min=1),
                 help="Train exactly this many optimizer steps (the last epoch cut short), overriding --epochs "
                      "and --min-steps; the learning-rate schedule spans them."),
    click.option("--log-every", type=click.IntRange(min=1),
                 help="Log loss and learning rate (history, TensorBoard, plugins) every N steps. Default: 10."),
    click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the framework."),
)


def run_options(func):
    """Decorate a click command with ``RUN_OPTIONS``."""
    for option in reversed(RUN_OPTIONS):
        func = option(func)
    return func


@click.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@run_options
@click.option("--output", "-o", help="Run directory. Default: runs/<timestamp>-<task>-<backend>.")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Train with N processes on this machine (torch: launches torchrun for you; DDP).")
@click.option("--save-every", type=click.IntRange(min=1),
              help="Also checkpoint every N optimizer steps (a checkpoint is always written at each epoch end).")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), help="Newest checkpoints to keep. Default: 2.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its newest good checkpoint.")
@click.option("--overwrite", is_flag=True, help="Allow --output to name an existing, non-empty directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; print only the final metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
def run(recipe: str | None, nproc: int | None, resume_dir: str | None, overwrite: bool, quiet: bool,
        as_json: bool, **options) -> None:
    """Fine-tune a model on labelled text and evaluate it.

    RECIPE is an optional TOML file of the same options (e.g. recipes/quickstart.toml);
    options given here override it, and the task's defaults fill in the rest.
    """
    from tl.cli.common import load_registry
    from tl.training.pipeline import run as execute

    registry, pm = load_registry()
    if nproc and nproc > 1 and "WORLD_SIZE" not in os.environ:
        name = options.get("backend") or (load_recipe(recipe).get("backend") if recipe else None) or "torch"
        registry.get("backend", name).launch(nproc, _without_nproc(sys.argv[1:]))
    if resume_dir:
        config = _resumed_config(resume_dir, recipe, options)
        result = execute(config, registry, pm, quiet=quiet, resume_dir=Path(resume_dir))
        _report(result, as_json)
        return
    config = configure(registry, load_recipe(recipe) if recipe else {}, options)
    result = execute(config, registry, pm, overwrite=overwrite, quiet=quiet)
    _report(result, as_json)


def configure(registry: Registry, recipe_values: dict, options: dict) -> RunConfig:
    """A run's configuration: ``options`` (None: not given) over the recipe's values over the task's
    defaults over tl's (``tl run``, and each of ``tl tune``'s trials)."""
    task_name = options.get("task") or recipe_values.get("task") or "sentiment"
    task = registry.get("task", task_name)
    task_defaults = dict(task.defaults, model=task.default_model, dataset=task.default_dataset or None)
    config = resolve(options, recipe_values, task_defaults)
    if not config.dataset:
        raise UsageError(f"task {task.name!r} has no default dataset; pass --dataset")
    return config


def _report(result, as_json: bool) -> None:
    if not result.is_main:
        return
    m = result.metrics
    if as_json:
        click.echo(json.dumps({k: v for k, v in m.items() if k not in ("eval_per_class",)}, default=str))
        return
    first, *rest = [f"eval_{k}" for k in result.summary]  # the task's headline metrics, loss second
    click.echo(" | ".join(f"{k} {m[k]:.4f}" for k in (first, "eval_loss", *rest))
               + f" | {m['train_samples_per_second']} samples/s | {m['train_runtime_s']:.1f}s")
    click.echo(f"run directory: {result.run_dir}  (predict: tl predict --model {result.run_dir / 'model'} \"some text\")")


def _resumed_config(resume_dir: str, recipe: str | None, options: dict):
    from tl.training.config import validate

    given = sorted(k.replace("_", "-") for k, v in options.items() if v is not None)
    if recipe or given:
        extra = ", ".join(["RECIPE"] * bool(recipe) + [f"--{g}" for g in given])
        raise UsageError(f"--resume continues a run exactly as it was configured; drop {extra}")
    path = Path(resume_dir) / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["config"]
        config = RunConfig(**{k: v for k, v in saved.items() if k in RunConfig.__dataclass_fields__})
    except FileNotFoundError:
        from tl.training.rundir import run_holder

        # a run that has not written its config.json yet holds the directory: say that, not "not a run"
        raise UsageError(run_holder(Path(resume_dir)) or f"{resume_dir} is not a tl run directory (no config.json)") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    validate(config)
    return config


def _without_nproc(args: list[str]) -> list[str]:
    """``args`` less ``--nproc N`` / ``--nproc=N`` (the launched processes are the group)."""
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            cleaned.append(a)
    return cleaned
