"""Run directories: runs/<id>/{config.json, metrics.json, history.jsonl, model/, plots/}."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tl.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: RunLock falls back to O_CREAT | O_EXCL and the holder's pid
    fcntl = None


def new_run_id(task: str, backend: str) -> str:
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{task}-{backend}"


def prepare_run_dir(output: str | None, task: str, backend: str, overwrite: bool = False,
                    made: list[Path] | None = None) -> tuple[Path, RunLock]:
    """Create the run directory and lock it for this run (``RunLock``; the caller releases it). An
    existing non-empty directory is refused unless ``overwrite``; even then only tl's own files in it
    are replaced, nothing else is deleted; one another live run holds is refused either way, before
    anything in it changes. ``made`` gets the directories this call created, deepest first (for
    ``remove_unstarted``)."""
    path = Path(output) if output else _claim_new(Path("runs"), new_run_id(task, backend), made)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {path} exists and is not a directory")
    not_empty = f"--output {path} already exists and is not empty; pass --overwrite or choose another path"
    # without a lock file no live run holds it: refuse before creating one (a run that holds it is named below)
    if path.is_dir() and not overwrite and not (path / LOCK_NAME).exists() and _holds_files(path):
        raise UsageError(not_empty)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run directory {path}: {exc.strerror}") from None
    lock = RunLock.acquire(path, "--output")
    if not overwrite and _holds_files(path):  # a run that took and left it since the check above
        lock.release()
        raise UsageError(not_empty)
    if made is not None:
        made.extend(missing)
    return path, lock


def _claim_new(base: Path, run_id: str, made: list[Path] | None) -> Path:
    """A fresh ``base/run_id[-N]`` made by this process: ``mkdir`` without ``exist_ok`` claims a name
    atomically, so two runs started in the same second get two directories."""
    if not base.exists():
        try:
            base.mkdir(parents=True)
            if made is not None:
                made.append(base)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(f"cannot create run directory {base}: {exc.strerror}") from None
    for n in range(1, 10_000):
        path = base / (run_id if n == 1 else f"{run_id}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot create run directory {path}: {exc.strerror}") from None
        if made is not None:
            made.insert(0, path)  # deepest first
        return path
    raise UsageError(f"cannot find a free run directory name under {base}; pass --output")


LOCK_NAME = ".tl-run.lock"


class RunLock:
    """One live ``tl run``'s exclusive claim on its run directory: the file ``.tl-run.lock`` in it,
    holding that run's pid, host and start time, for as long as the run lives.

    POSIX: ``flock(LOCK_EX | LOCK_NB)`` on the file; the kernel drops it when the process ends, however
    it ends (SIGKILL too), so a dead run's leftover file locks nothing. Without ``fcntl`` (Windows): the
    file is made with ``O_CREAT | O_EXCL``, and a leftover one whose pid is no longer alive here is taken
    over. ``release`` (idempotent) removes the file. Only the main process of a run takes it."""

    def __init__(self, path: Path, file: Any) -> None:
        self.path = path
        self._file = file

    @classmethod
    def acquire(cls, directory: Path, option: str = "--output", *, flock: bool | None = None) -> RunLock:
        """Claim ``directory`` (which exists) or raise UsageError naming the run that holds it; changes
        nothing in the directory when it is held. ``option``: the flag that named it, for the message;
        ``flock``: force the locking method (default: flock where ``fcntl`` exists)."""
        use_flock = fcntl is not None if flock is None else flock
        path = directory / LOCK_NAME
        for _ in range(20):  # a retry only when the file was removed or replaced between open and lock
            try:
                file = cls._flock(path) if use_flock else cls._exclusive(path)
            except OSError as exc:
                raise UsageError(f"cannot lock run directory {directory}: {exc.strerror or exc}") from None
            if file is None:
                continue
            if isinstance(file, dict):
                raise UsageError(_in_use(directory, option, file))
            file.seek(0)
            file.truncate()
            file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
            file.flush()
            return cls(path, file)
        raise UsageError(_in_use(directory, option, {}))

    @staticmethod
    def _flock(path: Path) -> Any:
        """The open, locked lock file; the holder's record (a dict) when another process holds it; None
        when ``path`` stopped being the file locked (removed by the run releasing it: try again)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        file = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _record(file.read())
            file.close()
            return holder
        except OSError:  # a file system without flock: no lock, as before there was one
            return file
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is None or not os.path.samestat(current, os.fstat(fd)):
            file.close()
            return None
        return file

    @staticmethod
    def _exclusive(path: Path) -> Any:
        """The lock file made with O_EXCL; the holder's record when a live process holds it; None after
        removing a dead one's file (try again)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                text = path.read_text(encoding="utf-8")
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return None
            holder = _record(text)
            pid, host = holder.get("pid"), holder.get("host")
            if not holder:
                alive = age < 10  # being written this moment, or a wreck
            else:
                alive = host != socket.gethostname() or (isinstance(pid, int) and _pid_alive(pid))
            if alive:
                return holder
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return os.fdopen(fd, "w", encoding="utf-8")

    def release(self) -> None:
        """Give the directory up (the lock file goes); safe to call more than once."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if os.path.samestat(os.stat(self.path), os.fstat(file.fileno())):
                self.path.unlink()
        except OSError:
            pass
        finally:
            file.close()


def run_holder(directory: Path) -> str | None:
    """The message for a live run holding ``directory``, or None; takes nothing and creates nothing."""
    path = directory / LOCK_NAME
    if fcntl is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return None
        holder = _record(text)
        pid = holder.get("pid")
        return _in_use(directory, "--resume", holder) if isinstance(pid, int) and _pid_alive(pid) else None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as file:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _in_use(directory, "--resume", _record(file.read()))
        except OSError:
            return None
    return None


def _record(text: str) -> dict[str, Any]:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _in_use(directory: Path, option: str, holder: dict[str, Any]) -> str:
    details = []
    if isinstance(holder.get("pid"), int):
        details.append(f"pid {holder['pid']}")
    if isinstance(holder.get("started"), (int, float)):
        started = _dt.datetime.fromtimestamp(holder["started"])
        today = started.date() == _dt.date.today()
        details.append(f"started {started.strftime('%H:%M:%S' if today else '%Y-%m-%d %H:%M:%S')}")
    if holder.get("host") and holder["host"] != socket.gethostname():
        details.append(f"on {holder['host']}")
    what = f"another tl run ({', '.join(details)})" if details else "another tl run"
    then = "choose another --output or wait for it to finish" if option != "--resume" else \
        "wait for it to finish (or stop it), then resume"
    return f"{option} {directory} is in use by {what}; {then}"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holds_files(path: Path) -> bool:
    """Whether ``path`` holds anything besides a lock file."""
    return any(entry.name != LOCK_NAME for entry in path.iterdir())


#: What a run directory holds before training starts: the plan stage's config.json (and its temp file).
BEFORE_TRAINING = ("config.json", ".config.json.tmp")


def remove_unstarted(made: list[Path]) -> None:
    """After a run failed before training started: remove the directories ``prepare_run_dir`` made
    for it (``made``, deepest first) if the run directory holds nothing but its config.json, so a run
    that never started leaves nothing behind. A directory holding anything else stays, as do its parents."""
    if not made:
        return
    run_dir = made[0]
    try:
        entries = list(run_dir.iterdir())
        if all(e.name in BEFORE_TRAINING and e.is_file() and not e.is_symlink() for e in entries):
            for e in entries:
                e.unlink()
        for d in made:
            d.rmdir()  # OSError when not empty: it and its parents stay
    except OSError:
        return


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
