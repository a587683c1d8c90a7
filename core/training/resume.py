"""Resumable training checkpoints: ``runs/<id>/checkpoints/step-<N>/``, written atomically.

A checkpoint is written into a temporary directory, every file fsync'ed, ``state.json`` (with the
size of every file) written last, then renamed into place and the parent directory fsync'ed: a crash
at any instant leaves the previous checkpoints intact. ``latest()`` skips any checkpoint whose files
do not match its ``state.json`` (e.g. truncated), falling back to the previous good one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl import faults

STATE = "state.json"


@dataclass
class Resume:
    path: Path
    step: int  # optimizer steps done
    epoch: int  # epoch in progress (0-based)
    micro: int  # micro-batches of that epoch already consumed
    extra: dict[str, Any]


class Checkpointer:
    def __init__(self, run_dir: Path, every: int | None = None, keep: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.every = every
        self.keep = max(1, keep)

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def save(self, step: int, epoch: int, micro: int, write: Callable[[Path], None],
             extra: dict[str, Any] | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write(tmp)
        faults.hit("checkpoint", step, tmp)  # the fault suite's switch (TL_INJECT_FAULT); nothing otherwise
        files = {}
        for f in sorted(tmp.iterdir()):
            _fsync_file(f)
            files[f.name] = f.stat().st_size
        state = {"step": step, "epoch": epoch, "micro": micro, "files": files, "extra": extra or {}}
        with open(tmp / STATE, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():  # the same step saved again (e.g. epoch end right after a periodic save)
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_dir(self.root)
        self._rotate()
        return final

    def _rotate(self) -> None:
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def latest(self) -> Resume | None:
        if not self.root.is_dir():
            return None
        for path in sorted((p for p in self.root.glob("step-*") if p.is_dir()), reverse=True):
            state = _valid_state(path)
            if state is not None:
                return Resume(path, int(state["step"]), int(state["epoch"]), int(state["micro"]),
                              state.get("extra", {}))
        return None


def host_rng_state() -> dict[str, Any]:
    """Python's and NumPy's global RNG states as plain lists and numbers (JSON, or torch's
    ``weights_only`` loader), for a checkpoint."""
    import random

    import numpy as np

    name, keys, *rest = np.random.get_state()
    return {"numpy": [name, keys.tolist(), *rest], "python": _to_lists(random.getstate())}


def set_host_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def _valid_state(path: Path) -> dict | None:
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        for name, size in state["files"].items():
            if (path / name).stat().st_size != size:
                return None
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
