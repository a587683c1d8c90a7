"""The Optuna study of a tuning, stored in ``DIR/study.db`` (SQLite): one trial is one normal run in
``DIR/trials/<number>``, evaluated on the validation split after each epoch (reported to the trial,
which the pruner may stop), and scored by its last evaluation.

Resuming: trials a killed ``tl tune`` left running are marked failed and their parameters enqueued
again (tagged ``tl_retry_of``), so they are tried again and the total of finished trials (complete,
pruned, or failed by an error) reaches the number asked for."""

from __future__ import annotations

import gc
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl.errors import RunPruned, TLError, TrainingInterrupted, UsageError
from tl.training.config import RunConfig
from tl.tuning.space import Param

STUDY_NAME = "tl-tune"
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
#: user attribute of a trial that retries one a killed or interrupted ``tl tune`` left unfinished
RETRY_ATTR = "tl_retry_of"


def require_optuna() -> Any:
    """The ``optuna`` module (its logging quietened), or a one-line error naming the extra."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tl tune needs Optuna: pip install 'tl[tune]' (or: pip install 'optuna>=3.6')") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def direction_of(metric: str) -> str:
    """Loss is minimised; the tasks' summary metrics (accuracy, macro-F1, F1, ...) are maximised."""
    return "minimize" if metric == "loss" else "maximize"


def make_pruner(name: str, trials: int) -> Any:
    """``median``: stop a trial after an epoch whose validation score is worse than the median of the
    finished trials' at that epoch, once a few trials finished (a quarter of them, 1 to 5)."""
    optuna = require_optuna()
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, trials // 4)), n_warmup_steps=0)


def open_study(directory: Path, *, direction: str, seed: int, pruner: str, trials: int, create: bool) -> Any:
    """The study in ``directory/study.db`` (made when ``create``), sampled by TPE seeded with ``seed``
    plus the trials it holds (a resumed study does not replay the suggestions it started with)."""
    optuna = require_optuna()
    storage = f"sqlite:///{(Path(directory) / STUDY_FILE).resolve()}"
    if create:
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction)
    else:
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        except KeyError:
            raise UsageError(f"{directory}/{STUDY_FILE} holds no tl tune study") from None
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    study.pruner = make_pruner(pruner, trials)
    return study


def recover(study: Any) -> list[int]:
    """Trials left running (their process was killed): marked failed, their parameters enqueued again.
    Returns their numbers. Only call it while this process holds the tuning directory."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
    return [t.number for t in stale]


def finished(study: Any) -> list[Any]:
    """The trials that count towards --trials: complete, pruned, or failed by an error (not the ones
    killed or interrupted, which are tried again)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs}
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.number not in retried)]


@dataclass
class Outcome:
    """One trial as it ended."""

    number: int
    values: dict[str, Any]
    status: str  # finished | pruned | failed
    value: float | None
    seconds: float
    run_dir: Path
    detail: str = ""


def run_trial(study: Any, params: Sequence[Param], make_config: Callable[[dict[str, Any], Path], RunConfig],
              metric: str, directory: Path, execute: Callable[..., Any], *, debug: bool = False) -> Outcome:
    """Ask the study for a trial, run it (``execute``: ``tl.training.pipeline.run`` with the registry
    bound) and tell the study how it ended. A run that fails is a failed trial; a usage error (the
    same for every trial) and an interruption stop the tuning, and the trial is tried again on --resume."""
    from optuna.trial import TrialState

    trial = study.ask()
    values = {p.name: p.suggest(trial) for p in params}
    run_dir = Path(directory) / TRIALS_DIR / str(trial.number)
    trial.set_user_attr("run_dir", str(Path(TRIALS_DIR) / str(trial.number)))
    key = f"eval_{metric}"
    t0 = time.perf_counter()
    config = None

    def on_epoch(epoch: int, row: dict[str, Any]) -> None:
        value = row.get(key)
        if value is None:
            return
        trial.report(float(value), epoch)
        # the last epoch is never pruned: the trial is trained, its score informs the sampler
        # (with --max-steps the epochs are the plan's: the last is the one that reaches the steps)
        last = row.get("step", 0) >= config.max_steps if config.max_steps else epoch >= (config.epochs or 0)
        if not last and trial.should_prune():
            raise RunPruned(f"pruned after epoch {epoch}: validation {metric} {value:.4f}")

    try:
        config = make_config(values, run_dir)
        result = execute(config, quiet=True, on_epoch=on_epoch)
    except RunPruned as exc:
        study.tell(trial, state=TrialState.PRUNED)
        status, value, detail = "pruned", None, str(exc)
    except (TrainingInterrupted, KeyboardInterrupt):
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
        raise TrainingInterrupted(f"tl tune interrupted in trial {trial.number}; continue with: "
                                  f"tl tune --resume {directory}") from None
    except UsageError as exc:  # the same for every trial: tried again once the user fixed it and resumed
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = " ".join((str(exc) or type(exc).__name__).split())
        if not isinstance(exc, TLError):  # not one of tl's messages: name the exception
            detail = f"{type(exc).__name__}: {detail}"
        trial.set_user_attr("error", detail)
        study.tell(trial, state=TrialState.FAIL)
        status, value = "failed", None
    else:
        value = float(result.metrics[key])
        study.tell(trial, value)
        status, detail = "finished", ""
    finally:
        gc.collect()  # the trial's model (and its framework's memory) goes before the next is built
    seconds = time.perf_counter() - t0
    if status != "failed":  # the trial's model/ stays; its checkpoints (for resuming it) are not needed
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return Outcome(trial.number, values, status, value, seconds, run_dir, detail)
