"""Stage 1: what the run trains, on what, from what, and where it writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tl.assets.resolve import resolve_model
from tl.assets.wheels import tl_home
from tl.data.loading import label_space, load_splits
from tl.data.streaming import streamable
from tl.data.tokenization import Tokenizer
from tl.errors import UsageError
from tl.models.hf_checkpoint import checkpoint_family, convert_pickled, validate_checkpoint
from tl.models.legacy_tf import convert_tf_h5
from tl.plugins.registry import get_backend
from tl.training.context import RunContext
from tl.training.resume import resume_point
from tl.training.rundir import RunLock, prepare_run_dir


def resolve(ctx: RunContext) -> None:
    config = ctx.config
    ctx.task = task = ctx.registry.get("task", config.task)
    ctx.backend = backend = get_backend(ctx.registry, config.backend)
    if not backend.capabilities.trains:
        trainers = [n for n in ctx.registry.names("backend") if ctx.registry.get("backend", n).capabilities.trains]
        raise UsageError(f"backend {backend.name!r} runs exported models only and cannot train; "
                         f"pass --backend {' or '.join(trainers) or 'torch'}")
    ctx.world = world = backend.process_group()
    if world.size > 1 and world.mode not in backend.capabilities.distributed:
        raise UsageError(f"backend {backend.name!r} cannot train in a {world.size}-process group "
                         f"({world.mode}); see README: distributed training")
    if not world.is_main:
        ctx.quiet = True
    checkpoint, ctx.model_source = resolve_model(config.model, ctx.registry)
    checkpoint = convert_tf_h5(checkpoint, tl_home())  # transformers 4's TF weights: HDF5 runs no code
    if config.allow_pickle:
        checkpoint = convert_pickled(checkpoint, tl_home())
    checkpoint_config = validate_checkpoint(checkpoint)
    ctx.family = family = checkpoint_family(checkpoint, checkpoint_config)
    ctx.checkpoint = checkpoint
    ctx.max_tokens = family.max_tokens(checkpoint_config)
    if task.head_kind not in backend.capabilities.heads:
        raise UsageError(f"task {task.name!r} needs a {task.head_kind} head, which backend {backend.name!r} "
                         f"cannot build (heads: {', '.join(backend.capabilities.heads)})")
    if task.head_kind not in family.architectures:
        raise UsageError(f"task {task.name!r} needs a {task.head_kind} head, which model family {family.name!r} "
                         f"does not have (heads: {', '.join(family.heads)})")
    ctx.streamed = streamable(task, config.dataset, config.eval_dataset, ctx.registry)
    if not ctx.streamed:  # a streamed file is read, checked, split and labelled as it is encoded (stage 2)
        ctx.splits = load_splits(config, ctx.registry, task)
        ctx.labels = label_space(task, ctx.splits)
    ctx.tokenizer = Tokenizer.from_dir(checkpoint)
    ctx.tokenizer.truncation = config.truncation or "head"
    ctx.run_dir = run_directory(ctx)


def run_directory(ctx: RunContext) -> Path:
    """The resumed run's directory (and its newest good checkpoint in ``ctx.resume``), a new run
    directory on the main process, or a private scratch directory on the others."""
    config, backend, world = ctx.config, ctx.backend, ctx.world
    if ctx.resume_dir is not None:
        if not backend.capabilities.checkpoints:
            raise UsageError(f"backend {backend.name!r} does not write resumable checkpoints yet")
        if world.size > 1:
            raise UsageError("--resume of a multi-process run is not supported yet; resume it in one process")
        ctx.run_lock = RunLock.acquire(Path(ctx.resume_dir), "--resume")  # before anything in it is read or changed
        # the newest good checkpoint (damaged ones skipped with a warning); a run whose training finished
        # but whose model was not saved resumes at its final checkpoint: evaluated and saved again
        ctx.resume = resume_point(Path(ctx.resume_dir), config.epochs, ctx.say, ctx.warn)
        return Path(ctx.resume_dir)
    if world.is_main:  # only the main process locks the user's directory; the others write a scratch one
        path, ctx.run_lock = prepare_run_dir(config.output, ctx.task.name, backend.name, overwrite=ctx.overwrite,
                                             made=ctx.made_dirs)
        return path
    return Path(tempfile.mkdtemp(prefix=f"tl-rank{world.rank}-"))
