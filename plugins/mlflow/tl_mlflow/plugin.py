"""Entry point ``tl = mlflow`` (``tl_mlflow.plugin:tracking``): MLflow tracking on tl's run-event hooks.

The entry point names an object, not this module: ``tracking`` is a new ``MlflowTracking`` each time
tl loads the entry point (one per plugin manager, through the module ``__getattr__`` below), and that
object keeps the tracker of each run it is tracking, by run directory. So the module holds no state,
and runs in one process (``tl tune``'s trials) each get their own MLflow run.

Importing this module imports neither MLflow nor anything heavy: ``tl --help`` and ``tl plugins``
load it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tl import hookimpl
from tl_mlflow.tracker import RunTracker, Settings, describe, is_number, warn

#: The commands that get ``--mlflow-uri`` and ``--mlflow-experiment`` (those that exist).
COMMANDS = ("run", "tune")


class MlflowTracking:
    """The hook implementations; holds the ``RunTracker`` of each run being tracked, by run directory."""

    def __init__(self) -> None:
        self.runs: dict[Path, RunTracker] = {}

    @hookimpl
    def tl_register_commands(self, cli: click.Group) -> None:
        add_options(cli)

    @hookimpl
    def tl_on_run_start(self, run_dir: Any, config: dict, resolved: dict) -> None:
        run_dir = Path(run_dir)
        self.runs.pop(run_dir, None)
        settings = Settings.from_env(os.environ)
        if settings is None:
            return
        tracker = self.runs[run_dir] = RunTracker(run_dir, settings)
        self._safely(tracker, tracker.start, config, resolved)

    @hookimpl
    def tl_on_step_end(self, run_dir: Any, step: int, logs: dict) -> None:
        values = {f"train/{k}": v for k, v in logs.items() if k != "epoch"}
        self._for(run_dir, lambda t: t.log_metrics(values, step))

    @hookimpl
    def tl_on_epoch_end(self, run_dir: Any, epoch: int, logs: dict) -> None:
        values = {"epoch": epoch, "train/epoch_loss": logs.get("train_loss"),
                  **{f"eval/{k[len('eval_'):]}": v for k, v in logs.items() if k.startswith("eval_")}}
        self._for(run_dir, lambda t: t.log_metrics(values, logs.get("step", t.last_step)))

    @hookimpl
    def tl_on_evaluate(self, run_dir: Any, metrics: dict) -> None:
        from tl_mlflow.tracker import FINAL_METRICS

        values = {k: v for k, v in metrics.items()
                  if is_number(v) and (k.startswith("eval_") or k in FINAL_METRICS) and k != "eval_shards"}
        self._for(run_dir, lambda t: t.log_metrics(values, t.last_step))

    @hookimpl
    def tl_on_checkpoint_saved(self, run_dir: Any, path: Any) -> None:
        self._for(run_dir, lambda t: t.log_artifacts(Path(path)))

    @hookimpl
    def tl_on_run_end(self, run_dir: Any, status: str, metrics: dict, error: str | None) -> None:
        tracker = self.runs.pop(Path(run_dir), None)
        if tracker is not None:
            self._safely(tracker, tracker.end, status, error)

    def _for(self, run_dir: Any, action: Callable[[RunTracker], None]) -> None:
        tracker = self.runs.get(Path(run_dir))
        if tracker is not None and tracker.off is None:
            self._safely(tracker, action, tracker)

    @staticmethod
    def _safely(tracker: RunTracker, fn: Callable[..., None], *args: Any) -> None:
        """A tracking hook never raises into tl: a failure turns tracking off for the run, in one line."""
        try:
            fn(*args)
        except Exception as exc:
            if tracker.off is None:
                tracker.off = describe(exc)
                warn(f"MLflow tracking off for this run: {tracker.off}")


def __getattr__(name: str) -> Any:
    """``tracking``: the entry point's object, made anew for each plugin manager that loads it."""
    if name == "tracking":
        return MlflowTracking()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_options(cli: click.Group) -> None:
    """``--mlflow-uri`` and ``--mlflow-experiment`` on ``tl run`` (and ``tl tune``, where it exists): they
    set MLflow's own environment variables for the process, so tl itself never hears of MLflow. The
    commands get copies with the options added, in this group only."""
    context = click.Context(cli)
    for name in COMMANDS:
        try:
            command = cli.get_command(context, name)
        except Exception:  # a command that fails to load is tl's to report when it is used, not ours
            continue
        if command is None or any("--mlflow-uri" in p.opts for p in command.params):
            continue
        command = copy.copy(command)
        command.params = [*command.params, *options("each trial" if name == "tune" else "the run")]
        cli.add_command(command, name)


def options(what: str) -> list[click.Option]:
    def setting(variable: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
        def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
            if value is not None and not ctx.resilient_parsing:
                os.environ[variable] = value

        return callback

    return [
        click.Option(["--mlflow-uri"], metavar="URI", expose_value=False, callback=setting("MLFLOW_TRACKING_URI"),
                     help=f"Track {what} in MLflow at URI (a server http://..., or sqlite:///mlflow.db); "
                          "sets MLFLOW_TRACKING_URI. [tl-mlflow]"),
        click.Option(["--mlflow-experiment"], metavar="NAME", expose_value=False,
                     callback=setting("MLFLOW_EXPERIMENT_NAME"),
                     help="MLflow experiment to log to (default: $MLFLOW_EXPERIMENT_NAME, else 'tl'). [tl-mlflow]"),
    ]
