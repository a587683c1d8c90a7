"""What a tuning leaves besides its runs: the trials' table (``trials.csv``), their plot
(``trials.png``: optimisation history and parameter importance) and the best configuration as a
recipe (``best.toml``) that ``tl run`` takes."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tl.training.config import FIELD_NAMES

TABLE_FILE = "trials.csv"
PLOT_FILE = "trials.png"
RECIPE_FILE = "best.toml"
#: Finished trials before the plot shows the parameters' importance.
MIN_FOR_IMPORTANCE = 4

#: Optuna's trial states in tl's words (a run's status).
STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def status_of(trial: Any) -> str:
    if trial.state.name == "FAIL" and trial.user_attrs.get("interrupted"):
        return "interrupted"
    return STATUS.get(trial.state.name, trial.state.name.lower())


def trial_rows(study: Any, params: Sequence[str], metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, its params, the metric (pruned: the last epoch's), status, duration."""
    rows = []
    retried = {t.user_attrs.get("tl_retry_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        value = t.value
        if value is None and t.state.name == "PRUNED" and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        killed = t.state.name == "FAIL" and t.number in retried and "error" not in t.user_attrs
        status = "interrupted" if killed else status_of(t)
        rows.append({"trial": t.number, **{p: t.params.get(p) for p in params}, metric: value,
                     "epochs_run": max(t.intermediate_values) if t.intermediate_values else 0,
                     "status": status, "duration_s": None if duration is None else round(duration, 1),
                     "run_dir": t.user_attrs.get("run_dir", ""), "error": t.user_attrs.get("error", "")})
    return rows


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """The trials as a text table (errors left out: each was printed when its trial failed)."""
    import pandas as pd

    if not rows:
        return "(no trials)"
    frame = pd.DataFrame(rows).drop(columns=["error", "run_dir"])
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def param_importances(study: Any) -> tuple[dict[str, float], str | None]:
    """The searched parameters' importance by Optuna's PED-ANOVA evaluator (it needs neither
    scikit-learn, as fANOVA does, nor SciPy), or ({}, why not)."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental; "equal importances" with few trials
            return dict(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())), None
    except Exception as exc:  # no parameter that varied, an Optuna without the evaluator, ...
        return {}, " ".join(f"{type(exc).__name__}: {exc}".split())[:120]


def write_plot(study: Any, path: Path, metric: str, direction: str) -> str | None:
    """``trials.png``: each trial's value and the best so far; the parameters' importance beside it
    (from MIN_FOR_IMPORTANCE finished trials on). Returns why the importance panel is empty, if it is."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    fig, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    best, best_x, best_y = None, [], []
    better = min if direction == "minimize" else max
    for t in trials:
        if t.state.name == "COMPLETE":
            best = t.value if best is None else better(best, t.value)
            best_x.append(t.number)
            best_y.append(best)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    history.scatter([t.number for t in done], [t.value for t in done], label="finished", zorder=3)
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    if pruned:
        history.scatter([t.number for t in pruned],
                        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                        marker="x", color="grey", label="pruned (last epoch)", zorder=3)
    if best_x:
        history.step(best_x, best_y, where="post", color="C3", label="best so far")
    history.xaxis.set_major_locator(MaxNLocator(integer=True))
    history.set_xlabel("trial")
    history.set_ylabel(f"validation {metric}")
    history.set_title("optimisation history")
    history.legend(loc="best", fontsize="small")
    note = importances = None
    if len(done) >= MIN_FOR_IMPORTANCE:
        importances, note = param_importances(study)
    if importances:
        names = list(importances)[::-1]
        importance.barh(names, [importances[n] for n in names])
        importance.set_xlabel("importance (PED-ANOVA)")
    else:
        note = note or f"fewer than {MIN_FOR_IMPORTANCE} finished trials"
        importance.text(0.5, 0.5, f"parameter importance:\n{note}", ha="center", va="center", wrap=True,
                        transform=importance.transAxes)
        importance.set_xticks([])
        importance.set_yticks([])
    importance.set_title("parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return note


def write_recipe(path: Path, values: dict[str, Any], header: Sequence[str] = ()) -> None:
    """``values`` (RunConfig fields) as a TOML recipe, in RunConfig's order, with ``header`` as comments."""
    lines = [f"# {h}" for h in header]
    for name in FIELD_NAMES:
        value = values.get(name)
        if value is None:
            continue
        lines.append(f"{name} = {_toml(value)}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML recipe form")
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
