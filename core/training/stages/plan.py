"""Stage 3: probe the hardware, plan precision, batch and threads, record the configuration, and
build the model the plan runs."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

from tl import __version__
from tl.interfaces import HeadSpec
from tl.models.base_model import base_reference
from tl.training.config import TrainSettings, strategy_of, to_dict
from tl.training.context import RunContext
from tl.training.plan import PlanRequest, TrainingPlan, apply_plan, busy_cores, make_plan
from tl.training.rundir import write_json_atomic


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
    ctx.settings = TrainSettings(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio, seed=config.seed, precision=ctx.plan.precision,
        threads=ctx.plan.threads, grad_accum=ctx.plan.grad_accum, loss_scaling=ctx.plan.loss_scaling,
        world_size=world.size, rank=world.rank, replicas=ctx.plan.replicas, strategy=strategy_of(config),
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
    }
    write_json_atomic(ctx.run_dir / "config.json", ctx.resolved)
    ctx.say(f"tl: {ctx.task.name} on {backend.name} | model {config.model} | {len(ctx.splits.train)} train / "
            f"{len(ctx.splits.eval)} eval examples | labels {', '.join(ctx.labels)}")
    announce(ctx, ctx.plan)
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
    ctx.settings = dataclasses.replace(ctx.settings, grad_accum=ctx.plan.grad_accum)
    ctx.resolved["plan"] = ctx.plan.to_dict()
    write_json_atomic(ctx.run_dir / "config.json", ctx.resolved)
    announce(ctx, ctx.plan, "plan (batch-size auto)")


def announce(ctx: RunContext, plan: TrainingPlan, title: str = "plan") -> None:
    ctx.say(f"tl: {title}: {plan.summary()}")
    for note in plan.notes:
        ctx.say(f"tl: note: {note}")
