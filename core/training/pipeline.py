"""One fine-tuning run: the stages of ``tl.training.stages`` in order over one ``RunContext``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl.plugins import Registry
from tl.plugins.events import call_hook
from tl.training.config import RunConfig
from tl.training.context import RunContext
from tl.training.rundir import remove_unstarted
from tl.training.stages import STAGES
from tl.training.status import outcome, write_status


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    #: The task's headline metrics (without ``eval_``), for the summary line.
    summary: tuple[str, ...] = ("accuracy", "macro_f1")
    #: False on the non-main processes of a multi-process run (they write nothing, report nothing).
    is_main: bool = True


def run(config: RunConfig, registry: Registry, pm: Any, *, overwrite: bool = False, quiet: bool = False,
        resume_dir: Path | None = None, on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> RunResult:
    """Train, evaluate and save. ``resume_dir``: continue that run from its newest good checkpoint.
    ``on_epoch(epoch, row)``: called after each epoch's evaluation; may raise ``RunPruned``."""
    ctx = RunContext(config, registry, pm, overwrite=overwrite, quiet=quiet, resume_dir=resume_dir,
                     on_epoch=on_epoch)
    try:
        for stage in STAGES:
            stage(ctx)
    except BaseException as exc:
        try:
            _ended(ctx, exc)
        finally:
            _release(ctx)
            remove_unstarted(ctx.made_dirs)  # a run that failed before training leaves no directory behind
        raise
    try:
        _ended(ctx, None)
    finally:
        _release(ctx)
    return RunResult(ctx.run_dir, ctx.metrics, ctx.task.summary_metrics, ctx.world.is_main)


def _ended(ctx: RunContext, exc: BaseException | None) -> None:
    """status.json and ``tl_on_run_end`` for a run that started training (main process only)."""
    if not ctx.started or not ctx.world.is_main:
        return
    status, error = outcome(exc)
    write_status(ctx.run_dir, status, error=error, step=ctx.step, total_steps=ctx.total_steps)
    try:
        call_hook(ctx.pm, "tl_on_run_end", run_dir=ctx.run_dir, status=status,
                  metrics=ctx.metrics if status == "finished" else {}, error=error)
    except Exception:
        if exc is None:  # --strict-plugins: fatal after a good run; after a failed one, the first error stands
            raise


def _release(ctx: RunContext) -> None:
    """Give up the run directory's lock (the process's exit would too; an in-process caller may run again)."""
    if ctx.run_lock is not None:
        ctx.run_lock.release()
    for path in ctx.scratch:
        shutil.rmtree(path, ignore_errors=True)
