"""A run's status (``status.json`` in its directory): running, finished, interrupted, pruned or failed.

Written when training starts and again when the run ends; ``run_status`` reads it back and tells a
run that is still going from one whose process died (a ``running`` status whose run lock nobody
holds: killed, resumable from its checkpoints like an interrupted one)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tl.errors import RunPruned, TLError, TrainingInterrupted

STATUS_NAME = "status.json"
STATUSES = ("running", "finished", "interrupted", "pruned", "failed")


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Record ``status`` (and ``fields``) in ``run_dir/status.json``, keeping what an earlier write of
    this run recorded (``started_unix``); never raises (a status is not worth a run)."""
    from tl.training.rundir import write_json_atomic

    path = Path(run_dir) / STATUS_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if status != "running" else {}
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    now = time.time()
    if status == "running":
        data.update(started_unix=now, pid=os.getpid(), host=socket.gethostname())
    else:
        data["ended_unix"] = now
    data.update(status=status, **fields)
    with contextlib.suppress(OSError):
        write_json_atomic(path, data)


def outcome(exc: BaseException | None) -> tuple[str, str | None]:
    """(status, one-line error) of a run that ended with ``exc`` (None: it finished)."""
    if exc is None:
        return "finished", None
    if isinstance(exc, RunPruned):
        return "pruned", str(exc)
    if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
        return "interrupted", str(exc) or "interrupted"
    text = str(exc) if isinstance(exc, TLError) else f"{type(exc).__name__}: {exc}"
    return "failed", " ".join(text.split()) or type(exc).__name__


def run_status(run_dir: Path) -> dict[str, Any]:
    """The run's status record (``status`` always set). A run without status.json (written before
    tl recorded one) is ``finished`` with a metrics.json, else ``interrupted`` with a checkpoint, else
    ``failed``; ``running`` whose lock no live process holds is reported ``interrupted`` (killed)."""
    from tl.training.rundir import run_holder

    run_dir = Path(run_dir)
    try:
        data = json.loads((run_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        if (run_dir / "metrics.json").is_file():
            status = "finished"
        elif any(run_dir.glob("checkpoints/*")):
            status = "interrupted"
        else:
            status = "failed"
        return {"status": status}
    if data["status"] == "running" and run_holder(run_dir) is None:
        data = {**data, "status": "interrupted", "error": "the process ended without finishing (killed?)"}
    return data
