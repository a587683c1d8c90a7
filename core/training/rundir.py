"""Run directories: runs/<id>/{config.json, metrics.json, history.jsonl, model/, plots/}."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from tl.errors import UsageError


def new_run_id(task: str, backend: str) -> str:
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{task}-{backend}"


def prepare_run_dir(output: str | None, task: str, backend: str, overwrite: bool = False) -> Path:
    """Create the run directory. An existing non-empty directory is refused unless ``overwrite``;
    even then only tl's own files in it are replaced, nothing else is deleted."""
    if output:
        path = Path(output)
    else:
        base, run_id = Path("runs"), new_run_id(task, backend)
        path, n = base / run_id, 1
        while path.exists():
            n += 1
            path = base / f"{run_id}-{n}"
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"--output {path} already exists and is not empty; pass --overwrite or choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run directory {path}: {exc.strerror}") from None
    return path


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class History:
    """history.jsonl: one JSON object per logging step or epoch, flushed as it is written."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        """A new history, or (``keep_until_step``) the existing one cut after that step, for a resume."""
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if keep_until_step is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the crash
                if row.get("step", 0) <= keep_until_step:
                    self.rows.append(row)
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        for row in self.rows:
            self._f.write(json.dumps(row, default=float) + "\n")
        self._f.flush()

    def log(self, **row: Any) -> None:
        self.rows.append(row)
        self._f.write(json.dumps(row, default=float) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
