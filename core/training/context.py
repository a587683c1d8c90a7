"""The state one ``tl run`` carries from stage to stage (``tl.training.stages``).

Each stage reads what earlier stages set and sets its own fields; a field is None until its stage
has run. Nothing here does work: the stages do."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl.data.batching import Encoded
from tl.data.examples import Splits
from tl.data.tokenization import Tokenizer
from tl.interfaces import Backend, Family, Model, Task
from tl.plugins import Registry
from tl.training.config import RunConfig, TrainSettings
from tl.training.distributed import World
from tl.training.plan import PlanRequest, Probe, TrainingPlan
from tl.training.resume import Resume


@dataclass
class RunContext:
    # what the caller asked for
    config: RunConfig
    registry: Registry
    pm: Any
    overwrite: bool = False
    quiet: bool = False
    resume_dir: Path | None = None
    #: Called (unguarded, unlike plugin hooks) after each epoch's evaluation with (epoch, that epoch's
    #: history row); may raise ``tl.errors.RunPruned`` to stop the run there (``tl tune``'s pruner).
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None
    # resolve
    task: Task | None = None
    backend: Backend | None = None
    world: World = field(default_factory=World)
    checkpoint: Path | None = None
    family: Family | None = None
    #: How many tokens the checkpoint's position table reads (None: unknown).
    max_tokens: int | None = None
    model_source: str = ""
    #: The data goes through the encoded store (``tl.data.streaming``): ``splits`` and ``labels`` are set
    #: by the encode stage, not here.
    streamed: bool = False
    splits: Splits | None = None
    labels: tuple[str, ...] = ()
    tokenizer: Tokenizer | None = None
    resume: Resume | None = None
    run_dir: Path | None = None
    #: Directories this run created for run_dir, deepest first (removed if the run fails before training).
    made_dirs: list[Path] = field(default_factory=list)
    #: This run's claim on run_dir (``tl.training.rundir.RunLock``; main process only), released when the run ends.
    run_lock: Any = None
    # encode
    train_enc: Encoded | None = None
    eval_enc: Encoded | None = None
    tokenize_s: float = 0.0
    tokenize_cached: bool = False
    #: This process's peak RSS (MiB) when its data was ready.
    data_peak_rss_mib: float | None = None
    #: Private directories this run made (a store built with TL_NO_ENCODE_CACHE), removed when it ends.
    scratch: list[Path] = field(default_factory=list)
    # plan
    probe: Probe | None = None
    request: PlanRequest | None = None
    plan: TrainingPlan | None = None
    settings: TrainSettings | None = None
    versions: dict[str, str] = field(default_factory=dict)
    #: what config.json holds (rewritten when the plan changes)
    resolved: dict[str, Any] = field(default_factory=dict)
    model: Model | None = None
    # train
    #: True once training started (status.json says running, ``tl_on_run_start`` was called).
    started: bool = False
    epoch_metrics: dict[str, Any] = field(default_factory=dict)
    train_info: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 0
    step: int = 0  # optimizer steps done
    samples: int = 0
    eval_s: float = 0.0
    train_s: float = 0.0
    first_step_unix: float | None = None
    history_rows: list[dict[str, Any]] = field(default_factory=list)
    # finish
    metrics: dict[str, Any] = field(default_factory=dict)

    def say(self, message: str) -> None:
        """A progress line on stderr (none with --quiet, or on a non-main process)."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str, write: Callable[[str], None] | None = None) -> None:
        """One warning line for the user, shown with --quiet too (it changes what the run did), and kept
        in metrics.json's ``warnings``. ``write``: where the line goes (the progress bar's ``write`` while
        it is shown), else stderr."""
        line = f"tl: warning: {message}"
        if write is not None:
            write(line)
        else:
            print(line, file=sys.stderr, flush=True)
        self.train_info.setdefault("warnings", []).append(message)
