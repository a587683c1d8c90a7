"""Resumable training checkpoints: ``runs/<id>/checkpoints/step-<N>/``, written atomically.

A checkpoint is written into a temporary directory, every file fsync'ed and hashed, ``state.json``
(with the size and sha256 of every file) written last, then renamed into place and the parent
directory fsync'ed: a crash at any instant leaves the previous checkpoints intact. A write that fails
(disk full, read-only) removes its temporary directory, keeps every earlier checkpoint and stops the
run with a one-line ``TLError`` naming the last good checkpoint. ``latest()`` skips any checkpoint
whose files do not match its ``state.json`` (truncated, bit-flipped; an unreadable ``state.json``),
with one warning line, falling back to the previous good one; checkpoints written before hashes were
recorded are checked by size only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl import faults
from tl.errors import TLError, UsageError
from tl.files import replace_dir, sha256_file

STATE = "state.json"
#: What a failed write's error tells the user to do first, by errno (else: "Fix that").
REMEDY = {errno.ENOSPC: "Free space", errno.EDQUOT: "Free space (disk quota exceeded)",
          errno.EROFS: "Make {where} writable", errno.EACCES: "Make {where} writable",
          errno.EPERM: "Make {where} writable"}


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
        """Write the checkpoint of ``step`` (``write(directory)``: the backend's files) atomically; a
        failed write (no space, read-only, ...) leaves no trace and raises a one-line ``TLError``."""
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            write(tmp)
            faults.hit("checkpoint", step, tmp)  # the fault suite's switch (TL_INJECT_FAULT); nothing otherwise
            files, hashes = {}, {}
            for f in sorted(tmp.iterdir()):
                hashes[f.name] = sha256_file(f, fsync=True)
                files[f.name] = f.stat().st_size
            state = {"step": step, "epoch": epoch, "micro": micro, "files": files, "sha256": hashes,
                     "extra": extra or {}}
            with open(tmp / STATE, "w", encoding="utf-8") as fh:
                json.dump(state, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            replace_dir(tmp, final)
            _fsync_dir(self.root)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            error = write_error(exc)
            if error is None:
                raise
            raise TLError(self._write_failed(final.name, error)) from None
        self._rotate()
        return final

    def _write_failed(self, name: str, error: OSError) -> str:
        run_dir = self.root.parent
        good, _ = self.scan()
        remedy = REMEDY.get(error.errno, "Fix that").format(where=run_dir)
        if good is None:
            return (f"cannot write checkpoint {name}: {describe_os_error(error)}; the run has no earlier "
                    f"checkpoint to resume from. {remedy}, then start it over: tl run (a new --output, or "
                    f"--output {run_dir} --overwrite)")
        return (f"cannot write checkpoint {name}: {describe_os_error(error)}; the last good checkpoint is "
                f"{good.path.name}. {remedy}, then: tl run --resume {run_dir}")

    def _rotate(self) -> None:
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in (*self.root.glob(".tmp-step-*"), *self.root.glob(".old-step-*")):
            shutil.rmtree(stale, ignore_errors=True)

    def latest(self, warn: Callable[[str], None] | None = None) -> Resume | None:
        """The newest good checkpoint (None: none). Damaged newer ones are skipped with one warning
        line (``warn``; default: printed to stderr as ``tl: warning: ...``)."""
        resume, damaged = self.scan()
        if resume is not None and damaged:
            (warn or _print_warning)(f"{describe_damage(damaged)}; resuming from {resume.path.name}")
        return resume

    def scan(self) -> tuple[Resume | None, list[tuple[str, str]]]:
        """The newest good checkpoint (None: none), and the damaged ones newer than it as
        ``(name, what is wrong)``, newest first."""
        damaged: list[tuple[str, str]] = []
        if not self.root.is_dir():
            return None, damaged
        for path in sorted((p for p in self.root.glob("step-*") if p.is_dir()), reverse=True):
            state, problem = check_checkpoint(path)
            if state is not None:
                return Resume(path, int(state["step"]), int(state["epoch"]), int(state["micro"]),
                              state.get("extra", {})), damaged
            damaged.append((path.name, problem))
        return None, damaged


def resume_point(run_dir: Path, epochs: int, say: Callable[[str], None],
                 warn: Callable[[str], None] | None = None) -> Resume:
    """Where ``tl run --resume run_dir`` continues: the newest good checkpoint. Damaged newer ones are
    skipped with one warning line (``warn``, default: printed on stderr, also with --quiet). A run whose
    training finished (its final checkpoint) but whose model or metrics.json were not saved resumes
    there: the finish stage (evaluate, save) runs again. A one-line ``UsageError`` when there is
    nothing to resume."""
    resume, damaged = Checkpointer(run_dir).scan()
    over = f"start the run over with tl run without --resume (a new --output, or --output {run_dir} --overwrite)"
    if resume is None:
        if damaged:
            raise UsageError(f"{run_dir}: {describe_damage(damaged)} and there is no older good one; nothing to "
                             f"resume from: {over}")
        raise UsageError(f"{run_dir} has no usable checkpoint to resume from; {over}")
    if damaged:
        warning = f"{describe_damage(damaged)}; resuming from {resume.path.name}"
        (warn or _print_warning)(warning)
    if resume.epoch >= epochs:
        if finish_done(run_dir, resume):
            raise UsageError(f"{run_dir} already finished all {epochs} epochs; nothing to resume")
        say(f"tl: training finished at {resume.path.name} but the run's model or metrics were not saved: "
            "evaluating and saving them from that checkpoint")
    return resume


def finish_done(run_dir: Path, final: Resume) -> bool:
    """Whether the finish stage completed after the checkpoint ``final``: the model and metrics.json
    were written (after it: not left over from an earlier run in an --overwrite'n directory)."""
    from tl.models.hf_checkpoint import META_NAME

    metrics, meta = run_dir / "metrics.json", run_dir / "model" / META_NAME
    try:
        return meta.is_file() and metrics.stat().st_mtime >= (final.path / STATE).stat().st_mtime
    except OSError:
        return False


def describe_damage(damaged: list[tuple[str, str]]) -> str:
    """``checkpoint step-00000140 is damaged (model.safetensors: sha256 mismatch)``, or the same of
    several checkpoints."""
    if len(damaged) == 1:
        name, problem = damaged[0]
        return f"checkpoint {name} is damaged ({problem})"
    return "checkpoints " + ", ".join(f"{name} ({problem})" for name, problem in damaged) + " are damaged"


def write_error(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind a failed write: ``exc`` itself, its cause, or (frameworks wrap them, e.g.
    safetensors' "IoError(Os { code: 28 ... })") one named in its message; None for other errors."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__
    if isinstance(exc, Exception):
        text = str(exc)
        for code in REMEDY:
            if os.strerror(code) in text or f"os error {code})" in text:
                return OSError(code, os.strerror(code))
    return None


def describe_os_error(error: OSError) -> str:
    """``No space left on device (/path/being/written)``."""
    what = error.strerror or os.strerror(error.errno or 0)
    return f"{what} ({error.filename})" if error.filename else what


@contextlib.contextmanager
def finish_write_errors(run_dir: Path, target: Path, epochs: int) -> Iterator[None]:
    """A failed write of a finished run's ``target`` (its model, metrics.json) as one ``TLError`` line
    that says how to get it back: ``tl run --resume`` redoes the finish stage from the final
    checkpoint; without one (a backend that writes no checkpoints) the training is lost."""
    try:
        yield
    except Exception as exc:
        error = write_error(exc)
        if error is None:
            raise
        remedy = REMEDY.get(error.errno, "Fix that").format(where=run_dir)
        final, _ = Checkpointer(run_dir).scan()
        if final is not None and final.epoch >= epochs:
            raise TLError(f"cannot write {target}: {describe_os_error(error)}; training finished and its final "
                          f"checkpoint {final.path.name} is kept. {remedy}, then: tl run --resume {run_dir} "
                          f"(evaluates and saves the model from it)") from None
        raise TLError(f"cannot write {target}: {describe_os_error(error)}; this run wrote no checkpoint, so its "
                      f"training is lost. {remedy}, then run it again; to keep finished training through a failed "
                      "save next time, train on a backend that writes checkpoints (torch or tensorflow)") from None


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


def check_checkpoint(path: Path) -> tuple[dict | None, str]:
    """``(state, "")`` when every file of the checkpoint at ``path`` has the size and sha256 its
    ``state.json`` records (older checkpoints without hashes: the size), else ``(None, what is wrong)``."""
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        files, hashes = dict(state["files"]), dict(state.get("sha256", {}))
        int(state["step"]), int(state["epoch"]), int(state["micro"])
    except FileNotFoundError:
        return None, f"{STATE} missing"
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{STATE} unreadable"
    try:
        for name, size in files.items():
            actual = (path / name).stat().st_size
            if actual != size:
                cut = f"truncated ({actual} of {size} bytes)" if actual < size else f"{actual} bytes, {size} expected"
                return None, f"{name}: {cut}"
        for name, digest in hashes.items():
            if sha256_file(path / name) != digest:
                return None, f"{name}: sha256 mismatch"
    except FileNotFoundError as exc:
        return None, f"{Path(exc.filename or '?').name} missing"
    except (OSError, TypeError) as exc:
        return None, f"unreadable ({exc})"
    return state, ""


def _print_warning(message: str) -> None:
    print(f"tl: warning: {message}", file=sys.stderr, flush=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
