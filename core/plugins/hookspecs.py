"""Hook specifications. Implementations may accept any subset of the arguments (pluggy opt-in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tl import hookspec


@hookspec
def tl_register_backends(register: Callable[[Any], None]) -> None:
    """Register Backend instances by calling ``register(backend)``."""


@hookspec
def tl_register_tasks(register: Callable[[Any], None]) -> None:
    """Register Task instances by calling ``register(task)``."""


@hookspec
def tl_register_datasets(register: Callable[[Any], None]) -> None:
    """Register DatasetSpec entries (named datasets) by calling ``register(spec)``."""


@hookspec
def tl_register_models(register: Callable[[Any], None]) -> None:
    """Register ModelSpec entries (checkpoint aliases) by calling ``register(spec)``."""


@hookspec
def tl_register_families(register: Callable[[Any], None]) -> None:
    """Register model families (``tl.interfaces.Family`` entries) by calling ``register(family)``."""


@hookspec
def tl_register_commands(cli: Any) -> None:
    """Add click commands to the ``tl`` command group ``cli``."""


@hookspec
def tl_on_epoch_end(run_dir: Any, epoch: int, logs: dict) -> None:
    """Called after each training epoch with that epoch's train and eval numbers."""


@hookspec
def tl_on_evaluate(run_dir: Any, metrics: dict) -> None:
    """Called with the final evaluation metrics of a run or of ``tl evaluate``."""


@hookspec
def tl_on_checkpoint_saved(run_dir: Any, path: Any) -> None:
    """Called after a model or checkpoint directory has been written."""


@hookspec
def tl_on_run_start(run_dir: Any, config: dict, resolved: dict) -> None:
    """Called once per ``tl run`` (also ``--resume``), on the main process, after config.json is
    written and before the model trains. ``config``: the run's options (config.json's ``config``);
    ``resolved``: all of config.json (labels, split, plan, hardware, versions); the run's id is
    ``run_dir.name``."""


@hookspec
def tl_on_step_end(run_dir: Any, step: int, logs: dict) -> None:
    """Called every ``--log-every`` optimizer steps (default 10) and after the last, on the main
    process, with ``logs``: ``loss`` (that step's mean loss), ``learning_rate`` (the peak group's),
    ``samples_per_second`` (since training started), ``epoch`` (fractional)."""


@hookspec
def tl_on_run_end(run_dir: Any, status: str, metrics: dict, error: str | None) -> None:
    """Called once when a run that called ``tl_on_run_start`` ends, on the main process. ``status``:
    ``finished`` (``metrics`` is metrics.json), ``interrupted`` (SIGINT/SIGTERM; a checkpoint was
    written), ``pruned`` (stopped early by ``tl tune``) or ``failed`` (``error``: the one-line
    reason). ``metrics`` is empty unless finished. A killed process (SIGKILL) calls nothing."""
