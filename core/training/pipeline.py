"""One fine-tuning run: the stages of ``tl.training.stages`` in order over one ``RunContext``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl.plugins import Registry
from tl.training.config import RunConfig
from tl.training.context import RunContext
from tl.training.rundir import remove_unstarted
from tl.training.stages import STAGES


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    #: The task's headline metrics (without ``eval_``), for the summary line.
    summary: tuple[str, ...] = ("accuracy", "macro_f1")
    #: False on the non-main processes of a multi-process run (they write nothing, report nothing).
    is_main: bool = True


def run(config: RunConfig, registry: Registry, pm: Any, *, overwrite: bool = False, quiet: bool = False,
        resume_dir: Path | None = None) -> RunResult:
    """Train, evaluate and save. ``resume_dir``: continue that run from its newest good checkpoint."""
    ctx = RunContext(config, registry, pm, overwrite=overwrite, quiet=quiet, resume_dir=resume_dir)
    try:
        for stage in STAGES:
            stage(ctx)
    except BaseException:
        _release(ctx)
        remove_unstarted(ctx.made_dirs)  # a run that failed before training leaves no directory behind
        raise
    _release(ctx)
    return RunResult(ctx.run_dir, ctx.metrics, ctx.task.summary_metrics, ctx.world.is_main)


def _release(ctx: RunContext) -> None:
    """Give up the run directory's lock (the process's exit would too; an in-process caller may run again)."""
    if ctx.run_lock is not None:
        ctx.run_lock.release()
