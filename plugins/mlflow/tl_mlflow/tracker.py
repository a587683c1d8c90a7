"""One tl run tracked as one MLflow run, through MLflow's client API with an explicit run id.

The MLflow run is set up when the tl run starts, before training, on tl's thread: importing MLflow,
opening the store (a cold SQLite store creates its tables first), creating the run, its params and tags
(measured: 1.5-2 s on a warm SQLite store). Done on another thread during training instead, that work
takes the GIL from the training loop (torch releases and re-takes it at every op): the same tiny-model
run trained 2x slower, and ended 3-5 s later rather than 1.5-2 s.

Everything after that runs on a worker thread of the tracker's own, in order: the metrics (batched: at
most every FLUSH_EVERY_S seconds, whatever the hooks queued since goes in one ``log_batch``), the
artifacts and the final status. The training thread only appends to a list; the run's end waits for
the worker (saying so after a few seconds; Ctrl-C skips the rest). MLflow's own asynchronous logging
(``log_batch(..., synchronous=False)``) would cover the metric writes only, not the uploads; the worker
calls MLflow synchronously, so its errors reach the worker, in order.

A failure anywhere (MLflow missing, a bad URI, a server that does not answer within REACH_TIMEOUT_S, a
store that refuses a write) turns tracking off for that run with one warning line, ``tl: warning: MLflow
tracking off for this run: <reason>``; the run itself never notices.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``TL_MLFLOW=0`` turns tracking off even when ``MLFLOW_TRACKING_URI`` is set.
SWITCH_ENV = "TL_MLFLOW"
DEFAULT_EXPERIMENT = "tl"
#: tl's run status -> MLflow's (an interrupted or pruned run was stopped on purpose: KILLED).
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
#: metrics.json keys logged at the end besides the ``eval_*`` numbers.
FINAL_METRICS = ("train_loss", "train_runtime_s", "train_samples_per_second", "eval_runtime_s")
#: seconds an HTTP tracking server has to answer before the run starts without it.
REACH_TIMEOUT_S = 5.0
#: seconds the run's end waits quietly for the worker before saying what it waits for.
QUIET_WAIT_S = 5.0
#: the worker writes the queued metrics at most this often (and at the end): a Python thread busy with
#: MLflow at every step would take the GIL from the training loop
FLUSH_EVERY_S = 5.0
MAX_REASON = 300
MAX_PARAM = 6000
BATCH = {"metrics": 1000, "params": 100}


class TrackingOff(Exception):
    """A reason to stop tracking this run, said as it is (no exception type in front)."""


@dataclass(frozen=True)
class Settings:
    """Where to track, from MLflow's own environment variables."""

    uri: str
    experiment_name: str | None = None
    experiment_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings | None:
        """The settings, or None when tracking is off: no ``MLFLOW_TRACKING_URI``, or ``TL_MLFLOW=0``."""
        if environ.get(SWITCH_ENV, "").strip().lower() in ("0", "false", "no", "off"):
            return None
        uri = environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            return None
        return cls(uri, environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or None,
                   environ.get("MLFLOW_EXPERIMENT_ID", "").strip() or None)


def warn(message: str) -> None:
    print(f"tl: warning: {message}", file=sys.stderr, flush=True)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(exc: BaseException) -> str:
    """One line, at most MAX_REASON characters."""
    text = str(exc) if isinstance(exc, TrackingOff) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys; values as MLflow params (strings; lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
            continue
        text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
        out[name] = text if len(text) <= MAX_PARAM else text[:MAX_PARAM - 3] + "..."
    return out


def run_params(config: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, str]:
    """The run's options as they are named in config.json, plus what tl resolved around them (the plan
    as ``plan.*``, labels, split, sizes, ``versions.*``); not the hardware inventory."""
    extra = {k: v for k, v in resolved.items() if k not in ("config", "hardware", "base_checkpoint")}
    return {**flatten(config), **flatten(extra)}


def run_tags(run_dir: Path, config: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, str]:
    import getpass

    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    tags = {f"tl.{key}": str(config.get(key)) for key in ("task", "backend", "model", "dataset")}
    tags.update({"tl.run_dir": str(run_dir.resolve()), "tl.version": str(resolved.get("versions", {}).get("tl", "")),
                 MLFLOW_SOURCE_NAME: "tl", MLFLOW_SOURCE_TYPE: "LOCAL"})
    with contextlib.suppress(Exception):  # no user name here (a container without an /etc/passwd entry)
        tags[MLFLOW_USER] = getpass.getuser()
    return tags


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """For an ``http(s)://`` tracking server: that it answers at all, within ``timeout`` seconds (MLflow's
    own client retries for minutes). Any HTTP answer will do; other URIs are not checked here."""
    import ssl
    import urllib.error
    import urllib.request

    if not uri.lower().startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, ssl.SSLError):
            return  # it answered; whether its certificate is acceptable is MLflow's to say (MLFLOW_TRACKING_INSECURE_TLS)
        raise TrackingOff(f"no MLflow tracking server answers at {uri} ({reason})") from None


def was_resumed(run_dir: Path) -> bool:
    """Whether tl is resuming this run (status.json, written just before ``tl_on_run_start``)."""
    try:
        return bool(json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("resumed"))
    except (OSError, ValueError, AttributeError):
        return False


class RunTracker:
    """The MLflow run of one tl run. Methods are called on tl's thread; after ``start`` they return at
    once and the MLflow calls happen, in order, on the tracker's worker thread."""

    def __init__(self, run_dir: Path, settings: Settings, say: Callable[[str], None] = warn) -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.say = say
        #: why tracking is off for this run, once it is
        self.off: str | None = None
        self.last_step = 0
        self.client: Any = None
        self.run_id: str | None = None
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float, int, int]] = []
        self._flush_queued = False
        self._next_flush = 0.0
        self._thread = threading.Thread(target=self._work, name=f"tl-mlflow {run_dir.name}", daemon=True)

    # --- called by the hooks, on tl's thread ----------------------------------------------------

    def start(self, config: Mapping[str, Any], resolved: Mapping[str, Any]) -> None:
        """Create (or, for ``tl run --resume``, reopen) the MLflow run, then start the worker."""
        try:
            self._open(dict(config), dict(resolved), was_resumed(self.run_dir))
        except Exception as exc:
            self._turn_off(describe(exc))
        self._thread.start()

    def log_metrics(self, values: Mapping[str, Any], step: int) -> None:
        """Queue ``values`` (numbers only) at optimizer step ``step``."""
        self.last_step = max(self.last_step, int(step))
        if self.off is not None:
            return
        now = int(time.time() * 1000)
        with self._lock:
            self._pending.extend((k, float(v), now, int(step)) for k, v in values.items() if is_number(v))
            due = not self._flush_queued and time.monotonic() >= self._next_flush
            if due:
                self._flush_queued, self._next_flush = True, time.monotonic() + FLUSH_EVERY_S
        if due:
            self._submit(self._flush)

    def log_artifacts(self, path: Path) -> None:
        """Upload the directory ``path``, under its path inside the run directory (``model``)."""
        try:
            where = path.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            where = path.name
        self._submit(self._upload, path, None if where == "." else where)

    def end(self, status: str, error: str | None) -> None:
        """Upload the run's files, set the final status, and wait for the worker to finish."""
        self._submit(self._close, status, error)
        self._tasks.put(None)
        self._thread.join(QUIET_WAIT_S if self.off is None else 1.0)
        if not self._thread.is_alive() or self.off is not None:
            return
        print(f"tl: waiting for MLflow to finish logging {self.run_dir.name} (Ctrl-C skips it)",
              file=sys.stderr, flush=True)
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self._turn_off("logging skipped (Ctrl-C)", mark_failed=False)

    # --- the worker thread ------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._tasks.put((fn, args))

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            fn, args = task
            if self.off is not None:
                continue
            try:
                fn(*args)
            except Exception as exc:  # MLflow failed: this run goes on untracked
                self._turn_off(describe(exc))

    def _turn_off(self, reason: str, mark_failed: bool = True) -> None:
        with self._lock:
            if self.off is not None:
                return
            self.off = reason
            self._pending = []
        self.say(f"MLflow tracking off for this run: {reason}")
        if mark_failed and self.client is not None and self.run_id is not None:
            with contextlib.suppress(Exception):  # best effort: not a run that looks alive forever
                self.client.set_terminated(self.run_id, "FAILED")

    def _open(self, config: dict, resolved: dict, resumed: bool) -> None:
        check_reachable(self.settings.uri)
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise TrackingOff(f"MLflow is not installed ({exc}); pip install mlflow-skinny") from None
        client = MlflowClient(tracking_uri=self.settings.uri)
        experiment_id = self._experiment(client)
        tags = run_tags(self.run_dir, config, resolved)
        params = run_params(config, resolved)
        run = self._resumed_run(client, experiment_id) if resumed else None
        if run is None:
            run = client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags)
            self.client, self.run_id = client, run.info.run_id
        else:  # the same MLflow run goes on; params already there stay as they were (MLflow's rule)
            self.client, self.run_id = client, run.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            params = {k: v for k, v in params.items() if k not in run.data.params}
            tags["tl.resumed"] = "true"
            self._log_batch(tags=tags)
        self._log_batch(params=params)

    def _experiment(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        settings = self.settings
        if settings.experiment_id and not settings.experiment_name:
            return client.get_experiment(settings.experiment_id).experiment_id
        name = settings.experiment_name or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name)
            except MlflowException:  # created meanwhile by another process
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise TrackingOff(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) "
                              "or choose another with MLFLOW_EXPERIMENT_NAME")
        return experiment.experiment_id

    def _resumed_run(self, client: Any, experiment_id: str) -> Any:
        """The MLflow run an earlier, interrupted part of this tl run logged to, or None."""
        run_dir = str(self.run_dir.resolve())
        if "'" in run_dir:
            return None
        found = client.search_runs([experiment_id], filter_string=f"tags.`tl.run_dir` = '{run_dir}'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        return found[0] if found and found[0].info.status != "FINISHED" else None

    def _log_batch(self, metrics: list | None = None, params: Mapping[str, str] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(*m) for m in metrics or ()]
        params_ = [Param(k, v) for k, v in (params or {}).items()]
        tags_ = [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, len(metrics), BATCH["metrics"]):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH["metrics"]], synchronous=True)
        for i in range(0, len(params_), BATCH["params"]):
            self.client.log_batch(self.run_id, params=params_[i:i + BATCH["params"]], synchronous=True)
        if tags_:
            self.client.log_batch(self.run_id, tags=tags_, synchronous=True)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending, self._flush_queued = self._pending, [], False
        if pending:
            self._log_batch(metrics=pending)

    def _upload(self, path: Path, where: str | None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), where)

    def _close(self, status: str, error: str | None) -> None:
        self._flush()
        for name in ("config.json", "metrics.json"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        for plot in sorted((self.run_dir / "plots").glob("*.png")):
            self.client.log_artifact(self.run_id, str(plot), "plots")
        tags = {"tl.status": status}
        if error:
            tags["tl.error"] = error[:MAX_PARAM]
        self._log_batch(tags=tags)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))
