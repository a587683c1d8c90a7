"""The run directories under a folder, read back for ``tl runs``: one summary row per run, one run in
full, and runs compared (the configuration keys that differ, the metrics side by side).

Everything here only reads, and reads what it can: a run whose config.json, metrics.json,
status.json or history.jsonl is missing or damaged is still listed, with the fields those files
would have given empty and the damage named in ``problems``. A run directory is a folder holding one
of a run's files (config.json first); runs are found down to ``DEPTH`` levels (``runs/<id>``,
``tune-dir/trials/<n>``, ``runs/<tune-dir>/trials/<n>``), never inside a run directory."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl.errors import UsageError

#: Files whose presence makes a folder a run directory.
MARKERS = ("config.json", "status.json", "metrics.json", "history.jsonl")
#: How deep below the listed folder run directories are looked for.
DEPTH = 3
#: The metrics ``compare`` puts side by side (then any other ``eval_*`` number the runs have).
COMPARED_METRICS = ("eval_accuracy", "eval_macro_f1", "eval_loss", "train_loss", "train_samples_per_second",
                    "train_runtime_s", "train_steps", "epochs", "num_train_samples", "num_eval_samples")
#: Keys of the plan that change what a run computes, compared as ``plan.<key>``.
COMPARED_PLAN = ("device", "precision", "per_device_batch", "grad_accum", "effective_batch", "world_size",
                 "distributed", "threads")
#: Configuration keys never compared: where the run was written (every run's own).
NOT_COMPARED = ("output",)
#: Numbers in metrics.json that describe how the evaluation ran, not how well.
NOT_METRICS = ("eval_shards",)


@dataclass
class RunRecord:
    """What one run directory's files say, each ``{}`` / ``[]`` where its file is missing or damaged."""

    path: Path
    #: the path below the listed folder (``<id>``, ``trials/3``), or the folder's name
    id: str
    resolved: dict[str, Any] = field(default_factory=dict)  # config.json
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json
    status: dict[str, Any] = field(default_factory=dict)  # tl.training.status.run_status
    history: list[dict[str, Any]] = field(default_factory=list)  # history.jsonl
    #: files that could not be read (``metrics.json: not valid JSON``); a missing metrics.json of a
    #: run that did not finish is not a problem
    problems: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        config = self.resolved.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def started(self) -> float | None:
        """When the run started (unix time): status.json's record, else its first step, else when its
        config.json was written."""
        for value in (self.status.get("started_unix"), self.metrics.get("first_step_unix")):
            if isinstance(value, (int, float)):
                return float(value)
        for name in MARKERS:
            try:
                return (self.path / name).stat().st_mtime
            except OSError:
                continue
        return None

    def value(self, key: str) -> Any:
        """A run's setting: config.json's, else metrics.json's (which repeats task, backend, model...)."""
        v = self.config.get(key)
        return self.metrics.get(key) if v is None else v

    def last_epoch(self) -> dict[str, Any]:
        rows = [r for r in self.history if r.get("event") == "epoch"]
        return rows[-1] if rows else {}

    def metric(self, key: str) -> Any:
        """A final metric from metrics.json; for a run without one (running, interrupted), the last
        epoch's evaluation in history.jsonl (``eval_*``, ``train_loss``) or last logged step's throughput."""
        if key in self.metrics:
            return self.metrics[key]
        if key == "train_samples_per_second":
            steps = [r for r in self.history if r.get("event") == "step"]
            return steps[-1].get("samples_per_second") if steps else None
        if key == "epochs":  # the epochs it got through
            return len([r for r in self.history if r.get("event") == "epoch"]) if self.history else None
        if key == "train_steps":
            return self.status.get("step")
        return self.last_epoch().get(key)


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in MARKERS)


def find_runs(root: Path, depth: int = DEPTH) -> list[Path]:
    """The run directories at or below ``root`` (not below a run directory, not in hidden folders),
    down to ``depth`` levels."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    if depth <= 0:
        return found
    try:
        children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return found
    for child in children:
        try:
            if child.is_dir():
                found.extend(find_runs(child, depth - 1))
        except OSError:
            continue
    return found


def _read_json(path: Path, problems: list[str], *, required: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            problems.append(f"{path.name}: missing")
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({getattr(exc, 'strerror', None) or exc})")
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        problems.append(f"{path.name}: not valid JSON")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name}: not a JSON object")
        return {}
    return data


def _read_history(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({getattr(exc, 'strerror', None) or exc})")
        return []
    rows, bad = [], 0
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name}: {bad} damaged line(s) skipped")
    return rows


def load_run(path: Path, run_id: str | None = None) -> RunRecord:
    """Everything ``path``'s files say; never raises for damaged or missing files."""
    from tl.training.rundir import run_holder
    from tl.training.status import run_status

    path = Path(path)
    record = RunRecord(path=path, id=run_id or path.name)
    record.resolved = _read_json(path / "config.json", record.problems, required=True)
    try:
        record.status = dict(run_status(path))
    except Exception as exc:  # a status.json of another shape: what it says is lost, not the listing
        record.problems.append(f"status.json: unreadable ({type(exc).__name__})")
        record.status = {"status": "failed"}
    if record.status.get("status") != "running" and run_holder(path) is not None:
        record.status = {**record.status, "status": "running"}  # a live run before training started
    record.metrics = _read_json(path / "metrics.json", record.problems,
                                required=record.status.get("status") == "finished")
    record.history = _read_history(path / "history.jsonl", record.problems)
    return record


def list_runs(root: Path) -> list[RunRecord]:
    """The runs under ``root``, oldest first (ties by id). UsageError when ``root`` is not a folder."""
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root} does not exist; pass the folder that holds your run directories (default runs/)")
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory; pass the folder that holds your run directories")
    records = [load_run(p, p.relative_to(root).as_posix() if p != root else root.resolve().name)
               for p in find_runs(root)]
    return sorted(records, key=lambda r: (r.started or 0.0, r.id))


def _short(value: Any) -> Any:
    """A model or dataset as the table shows it: a path's last part, a name as it is."""
    if isinstance(value, str) and (os.path.isabs(value) or Path(value).exists()):
        return Path(value).name
    return value


def _iso(unix: float | None) -> str | None:
    try:
        return _dt.datetime.fromtimestamp(unix).isoformat(timespec="seconds") if unix is not None else None
    except (OverflowError, OSError, ValueError):  # a damaged time stamp
        return None


def summary(record: RunRecord) -> dict[str, Any]:
    """One row of ``tl runs``."""
    planned = record.value("epochs")
    done = len([r for r in record.history if r.get("event") == "epoch"])
    if record.metrics.get("epochs") is not None and record.status.get("status") == "finished":
        done = record.metrics["epochs"]
    return {
        "id": record.id,
        "task": record.value("task"),
        "backend": record.value("backend"),
        "model": record.value("model"),
        "dataset": record.value("dataset"),
        "epochs": planned,
        "epochs_done": done,
        "accuracy": record.metric("eval_accuracy"),
        "macro_f1": record.metric("eval_macro_f1"),
        "samples_per_second": record.metric("train_samples_per_second"),
        "status": record.status.get("status"),
        "error": record.status.get("error") if record.status.get("status") != "finished" else None,
        "started": _iso(record.started),
        "path": str(record.path),
        "problems": list(record.problems),
    }


def table_row(row: dict[str, Any]) -> dict[str, str]:
    """A summary row as the table prints it."""

    def num(v: Any, digits: int) -> str:
        return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"

    epochs = row["epochs"]
    shown_epochs = "-" if epochs is None else str(epochs)
    if row["status"] != "finished" and epochs is not None:
        shown_epochs = f"{row['epochs_done']}/{epochs}"
    started = row["started"]
    return {
        "id": row["id"], "task": row["task"] or "-", "backend": row["backend"] or "-",
        "model": str(_short(row["model"]) or "-"), "dataset": str(_short(row["dataset"]) or "-"),
        "epochs": shown_epochs, "accuracy": num(row["accuracy"], 4), "macro-F1": num(row["macro_f1"], 4),
        "samples/s": num(row["samples_per_second"], 1), "status": row["status"] or "-",
        "started": started.replace("T", " ")[:16] if started else "-",
    }


def plan_summary(plan: dict[str, Any]) -> str | None:
    """config.json's plan as ``tl run`` printed it (``cpu | fp32 (requested) | batch 16 = ...``)."""
    if not plan:
        return None
    from dataclasses import fields

    from tl.training.plan import TrainingPlan

    try:
        known = {f.name for f in fields(TrainingPlan)}
        return TrainingPlan(**{k: v for k, v in plan.items() if k in known}).summary()
    except Exception:  # a plan of another tl version: its keys as they are
        return ", ".join(f"{k} {v}" for k, v in plan.items() if not isinstance(v, (list, dict)))


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's numbers about the training and the evaluation (``eval_*``, ``train_*``)."""
    return {k: v for k, v in metrics.items() if k.startswith(("eval_", "train_")) and k not in NOT_METRICS
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def details(record: RunRecord) -> dict[str, Any]:
    """``tl runs show``: status, configuration, plan, final metrics, warnings and where things are."""
    metrics = headline(record.metrics)
    if not record.metrics:  # not finished: the last evaluation it logged
        metrics = {k: v for k, v in record.last_epoch().items() if k not in ("event", "step", "epoch")}
    paths = {}
    for name in ("model", "tensorboard", "checkpoints", "history.jsonl", "metrics.json", "config.json"):
        if (record.path / name).exists():
            paths[name] = str(record.path / name)
    plots = sorted(str(p) for p in (record.path / "plots").glob("*.png")) if (record.path / "plots").is_dir() else []
    status = {k: record.status.get(k) for k in ("status", "error", "step", "total_steps", "resumed")
              if record.status.get(k) is not None}
    return {
        "id": record.id,
        "path": str(record.path),
        **status,
        "started": _iso(record.started),
        "ended": _iso(record.status["ended_unix"]) if isinstance(record.status.get("ended_unix"), (int, float)) else None,
        "epochs_done": len([r for r in record.history if r.get("event") == "epoch"]),
        "config": record.config,
        "labels": record.resolved.get("labels") or record.metrics.get("labels"),
        "plan": plan_summary(record.resolved.get("plan") if isinstance(record.resolved.get("plan"), dict) else {}),
        "metrics": metrics,
        "per_class": record.metrics.get("eval_per_class") if isinstance(record.metrics.get("eval_per_class"), dict)
        else {},
        "warnings": list(record.metrics.get("warnings") or []),
        "paths": {**paths, "plots": plots},
        "problems": list(record.problems),
    }


def _settings(record: RunRecord) -> dict[str, Any]:
    settings = {k: v for k, v in record.config.items() if k not in NOT_COMPARED}
    if not settings:  # config.json lost: what metrics.json repeats of it
        settings = {k: record.metrics[k] for k in ("task", "backend", "model", "dataset", "seed", "precision",
                                                   "strategy", "epochs") if k in record.metrics}
    plan = record.resolved.get("plan")
    if isinstance(plan, dict):
        settings.update({f"plan.{k}": plan[k] for k in COMPARED_PLAN if k in plan})
    return settings


def compare(records: list[RunRecord]) -> dict[str, Any]:
    """The configuration keys whose values differ between ``records`` (only those; a key one run lacks
    counts as None there), and the metrics side by side, in the runs' order."""
    settings = [_settings(r) for r in records]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    differing = {k: [s.get(k) for s in settings] for k in keys
                 if any(json.dumps(s.get(k), sort_keys=True, default=str)
                        != json.dumps(settings[0].get(k), sort_keys=True, default=str) for s in settings)}
    extra = sorted({k for r in records for k in headline(r.metrics)
                    if k.startswith("eval_") and not k.endswith("_s")} - set(COMPARED_METRICS))
    metrics = {k: [r.metric(k) for r in records] for k in (*COMPARED_METRICS, *extra)}
    metrics = {k: v for k, v in metrics.items() if any(x is not None for x in v)}
    return {
        "runs": [r.id for r in records],
        "paths": [str(r.path) for r in records],
        "status": [r.status.get("status") for r in records],
        "config": differing,
        "metrics": metrics,
    }


def resolve_run(ident: str, root: Path) -> RunRecord:
    """The run ``ident`` names: a run directory's path, an id under ``root`` (``tl runs`` shows them),
    or the start of one id there. UsageError naming how to see the ids when there is none or several."""
    path = Path(ident)
    if path.is_dir() and is_run_dir(path):
        return load_run(path, path.resolve().name)
    root = Path(root)
    listing = f"`tl runs {root}` lists them"
    if (root / ident).is_dir() and is_run_dir(root / ident):
        return load_run(root / ident, ident)
    if not root.is_dir():
        raise UsageError(f"no run {ident!r}: not a run directory, and {root} does not exist; "
                         "pass a run directory's path or --dir with the folder that holds your runs")
    runs = find_runs(root)
    ids = {p.relative_to(root).as_posix(): p for p in runs if p != root}
    matches = [i for i in ids if i.startswith(ident) or i.split("/")[-1] == ident]
    if len(matches) == 1:
        return load_run(ids[matches[0]], matches[0])
    if matches:
        shown = ", ".join(sorted(matches)[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(f"{ident!r} matches {len(matches)} runs under {root} ({shown}); give more of the id")
    raise UsageError(f"no run {ident!r} under {root}; {listing} (or pass a run directory's path)")
