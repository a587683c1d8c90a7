"""Stage 3: probe the hardware, plan precision, batch and threads, record the configuration, and
build the model the plan runs."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

from tl import __version__
from tl.errors import UsageError
from tl.interfaces import HeadSpec
from tl.models.base_model import base_reference
from tl.training.config import TrainSettings, strategy_of, to_dict
from tl.training.context import RunContext
from tl.training.max_steps import max_steps_epochs, steps_in_epoch
from tl.training.plan import PlanRequest, TrainingPlan, apply_plan, busy_cores, make_plan
from tl.training.rundir import write_json_atomic
from tl.training.small_data import balanced_weights, min_steps_epochs, steps_per_epoch


def plan(ctx: RunContext) -> None:
    config, backend, world = ctx.config, ctx.backend, ctx.world
    ctx.probe = backend.probe()
    ctx.request = PlanRequest(
        precision=config.precision, strict=bool(config.precision_strict), batch_size=config.batch_size,
        grad_accum=config.grad_accum, threads=config.threads, world_size=world.size,
        local_world_size=world.local_size, distributed=world.mode,
        mirrored="mirrored" in backend.capabilities.distributed, busy_cores=busy_cores(),
    )
    ctx.plan = make_plan(ctx.probe, ctx.request)
    apply_plan(backend, ctx.plan)
    small = min_steps(ctx)  # may raise config.epochs
    max_steps(ctx)  # may set config.epochs (--min-steps does not count then)
    config = ctx.config
    weights = class_weights(ctx)
    ctx.settings = TrainSettings(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio, seed=config.seed, precision=ctx.plan.precision,
        threads=ctx.plan.threads, grad_accum=ctx.plan.grad_accum, loss_scaling=ctx.plan.loss_scaling,
        world_size=world.size, rank=world.rank, replicas=ctx.plan.replicas, strategy=strategy_of(config),
        class_weights=weights, max_steps=config.max_steps,
    )
    ctx.versions = {"tl": __version__, "python": platform.python_version(), **backend.versions()}
    ctx.resolved = {
        "config": to_dict(config),
        "labels": list(ctx.labels),
        "split": ctx.splits.split,
        "num_train_samples": len(ctx.splits.train),
        "num_eval_samples": len(ctx.splits.eval),
        "plan": ctx.plan.to_dict(),
        "hardware": ctx.probe.to_dict(),
        "model_source": ctx.model_source,
        # where the base's weights are on this machine (tl.json in model/ names the base portably)
        "base_checkpoint": str(Path(ctx.checkpoint).resolve()),
        "versions": ctx.versions,
        # --min-steps: {min_steps, steps_per_epoch, epochs_asked, epochs} (None without it)
        "min_steps": small,
        # --class-weights balanced: the loss weight of each label (None: unweighted)
        "class_weights": None if weights is None else dict(zip(ctx.labels, (round(w, 6) for w in weights), strict=True)),
    }
    write_json_atomic(ctx.run_dir / "config.json", ctx.resolved)
    ctx.say(f"tl: {ctx.task.name} on {backend.name} | model {config.model} | {len(ctx.splits.train)} train / "
            f"{len(ctx.splits.eval)} eval examples | labels {', '.join(ctx.labels)}")
    announce(ctx, ctx.plan)
    if weights is not None:
        ctx.say("tl: class weights (balanced): " + ", ".join(f"{k} {w:.3g}" for k, w in
                                                             zip(ctx.labels, weights, strict=True)))
    ctx.say(f"tl: run directory {ctx.run_dir}")
    info = {**base_reference(ctx.model_source, config.model), "model_source": ctx.model_source,
            "base_checkpoint": str(ctx.checkpoint)}
    ctx.model = backend.build_model(ctx.checkpoint, HeadSpec(ctx.task.head_kind, ctx.labels), ctx.tokenizer,
                                    init=config.init, seed=config.seed, info=info)
    if config.auto_batch:
        fit_batch_to_memory(ctx)


def fit_batch_to_memory(ctx: RunContext) -> None:
    """``--batch-size auto``: the largest per-device batch that fits, the effective batch kept
    through accumulation; the new plan replaces the old one in config.json."""
    config, world = ctx.config, ctx.world
    upper = config.batch_size // (world.size * ctx.plan.replicas)
    fitted = ctx.backend.max_device_batch(ctx.model, config.max_length, upper)
    ctx.plan = make_plan(ctx.probe, dataclasses.replace(ctx.request, max_device_batch=fitted, grad_accum=None))
    if fitted is None:
        ctx.plan.notes.append(f"--batch-size auto: no memory search on {ctx.plan.device}; "
                              f"using batch {config.batch_size}")
    if ctx.resolved.get("min_steps"):  # the accumulation changed: the last short batch may count as a step or not
        ctx.resolved["min_steps"] = min_steps(ctx, ctx.resolved["min_steps"]["epochs_asked"])
        ctx.resolved["config"] = to_dict(ctx.config)
    if ctx.config.max_steps:  # so may the steps per epoch, and the epochs that hold --max-steps
        max_steps(ctx)
        ctx.resolved["config"] = to_dict(ctx.config)
    ctx.settings = dataclasses.replace(ctx.settings, grad_accum=ctx.plan.grad_accum, epochs=ctx.config.epochs)
    ctx.resolved["plan"] = ctx.plan.to_dict()
    write_json_atomic(ctx.run_dir / "config.json", ctx.resolved)
    announce(ctx, ctx.plan, "plan (batch-size auto)")


def min_steps(ctx: RunContext, asked: int | None = None) -> dict | None:
    """``--min-steps``: when the asked epochs (``asked``; else the resumed run's, else the config's) make
    fewer optimizer steps, ``ctx.config`` gets the epochs that make at least that many, with a note in
    the plan (``tl.training.small_data``). The record for config.json and metrics.json, or None without it."""
    config, plan = ctx.config, ctx.plan
    if not config.min_steps or config.max_steps:  # --max-steps sets the steps itself
        return None
    per_epoch = steps_per_epoch(len(ctx.train_enc), config.batch_size, plan.grad_accum, ctx.world.size * plan.replicas)
    asked = asked or _resumed_ask(ctx) or config.epochs
    epochs = min_steps_epochs(asked, config.min_steps, per_epoch)
    if epochs != config.epochs:
        ctx.config = dataclasses.replace(config, epochs=epochs)
    if epochs > asked:  # shown with the plan, kept in config.json's plan notes
        plan.notes.append(f"--min-steps {config.min_steps}: {per_epoch} optimizer steps per epoch, so {epochs} "
                          f"epochs instead of {asked} ({epochs * per_epoch} steps); --epochs N alone trains exactly N")
    return {"min_steps": config.min_steps, "steps_per_epoch": per_epoch, "epochs_asked": asked, "epochs": epochs}


def max_steps(ctx: RunContext) -> None:
    """``--max-steps N``: ``ctx.config`` gets the epochs that hold N optimizer steps, the last one cut short
    (``tl.training.max_steps``), with a note in the plan. Unchanged without a step per epoch."""
    config, plan = ctx.config, ctx.plan
    if not config.max_steps:
        return
    per_epoch = steps_per_epoch(len(ctx.train_enc), config.batch_size, plan.grad_accum, ctx.world.size * plan.replicas)
    epochs = max_steps_epochs(config.max_steps, per_epoch)
    if not epochs:
        return
    if epochs != config.epochs:
        ctx.config = dataclasses.replace(config, epochs=epochs)
    last = steps_in_epoch(epochs - 1, per_epoch, config.max_steps)
    cut = f", the last cut short after {last} of its {per_epoch}" if last < per_epoch else ""
    ignored = f"; --min-steps {config.min_steps} ignored" if config.min_steps else ""
    plan.notes.append(f"--max-steps {config.max_steps}: {per_epoch} optimizer steps per epoch, so {epochs} "
                      f"epoch{'s' if epochs > 1 else ''}{cut}{ignored}")


def _resumed_ask(ctx: RunContext) -> int | None:
    """The epochs the resumed run asked for before ``--min-steps`` raised them (its config.json)."""
    if ctx.resume_dir is None:
        return None
    try:
        record = json.loads((ctx.run_dir / "config.json").read_text(encoding="utf-8")).get("min_steps")
        return int(record["epochs_asked"]) if record else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def class_weights(ctx: RunContext) -> tuple[float, ...] | None:
    """``--class-weights balanced``: the loss weight of each label from the training targets."""
    if ctx.config.class_weights != "balanced":
        return None
    if not ctx.backend.capabilities.class_weights:
        raise UsageError(f"backend {ctx.backend.name!r} cannot weight the loss by class; drop --class-weights "
                         "or train with --backend torch or tensorflow")
    return balanced_weights(ctx.train_enc.labels, len(ctx.labels))


def announce(ctx: RunContext, plan: TrainingPlan, title: str = "plan") -> None:
    ctx.say(f"tl: {title}: {plan.summary()}")
    for note in plan.notes:
        ctx.say(f"tl: note: {note}")
