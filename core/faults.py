"""Fault injection for tl's fault suite (``tests/faults/``): one switch, off in normal runs.

A fault is injected only when the environment variable ``TL_INJECT_FAULT`` is set, to one or more
specs separated by ``;``::

    KIND@POINT[:N][,key=value...]

``POINT`` is a place in tl that calls ``hit(POINT, n)``, and ``N`` (1-based; default: every time)
the count it fires at there: the optimizer step for ``step`` and for ``checkpoint`` (the checkpoint of that
step). The kinds:

- ``sigkill`` / ``sigterm``: the process sends itself that signal (``step``: after optimizer step N).
- ``sigstop``: the process stops itself (SIGSTOP), alive and holding what it holds (its run directory's
  lock), until a test sends SIGCONT: a run caught in the middle, for as long as the test needs.
- ``enospc`` / ``erofs``: ``OSError`` "No space left on device" / "Read-only file system" while
  writing (``checkpoint``: the checkpoint of step N; ``model``: the final model directory).
- ``oom``: ``simulated_oom(step, rows)`` is true from optimizer step N on for every micro-batch of
  more than ``rows`` rows (default: half the run's per-device batch size; ``rows=`` to choose), and
  the backend raises its framework's own out-of-memory error, as a device without memory would.

Nothing here keeps state between calls: each call reads the variable (a dictionary lookup when it
is unset), so the switch costs nothing in a normal run.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass, field

ENV = "TL_INJECT_FAULT"
KINDS = ("sigkill", "sigterm", "sigstop", "enospc", "erofs", "oom")
_ERRNO = {"enospc": errno.ENOSPC, "erofs": errno.EROFS}


@dataclass(frozen=True)
class Fault:
    kind: str
    point: str
    #: the count at the point it fires at (0: every time)
    at: int = 0
    params: dict[str, str] = field(default_factory=dict)

    def matches(self, point: str, n: int) -> bool:
        return self.point == point and (self.at == 0 or self.at == n)


def parse(spec: str) -> list[Fault]:
    """The faults of a ``TL_INJECT_FAULT`` value; a malformed spec is an error (a test's typo must not
    pass silently as "no fault")."""
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        head, *pairs = part.split(",")
        kind, sep, where = head.partition("@")
        point, _, at = where.partition(":")
        if not sep or kind not in KINDS or not point or (at and not at.isdigit()):
            raise ValueError(f"{ENV}: bad fault {part!r}; expected KIND@POINT[:N][,key=value], KIND one of "
                             + ", ".join(KINDS))
        params = dict(p.split("=", 1) for p in pairs if "=" in p)
        faults.append(Fault(kind, point, int(at or 0), params))
    return faults


def injected(point: str, n: int = 0) -> Fault | None:
    """The fault to inject at ``point``'s ``n``-th pass, or None (always None when the switch is off)."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    return next((f for f in parse(spec) if f.matches(point, n)), None)


def hit(point: str, n: int = 0, path: object = "") -> None:
    """Inject the signal or write error set for ``point``'s ``n``-th pass, if any (``path``: the file
    being written, for the error)."""
    fault = injected(point, n)
    if fault is None or fault.kind == "oom":
        return
    if fault.kind in ("sigkill", "sigterm", "sigstop"):
        os.kill(os.getpid(), {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigstop": signal.SIGSTOP}[fault.kind])
        return
    code = _ERRNO[fault.kind]
    raise OSError(code, os.strerror(code), str(path))


def simulated_oom(step: int, rows: int, first_rows: int) -> bool:
    """True when an injected ``oom@step[:N]`` fault says a micro-batch of ``rows`` rows at optimizer
    step ``step`` (1-based) does not fit: from step N on, above ``rows=`` (default: half of
    ``first_rows``, the configured per-device micro-batch)."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    for f in parse(spec):
        if f.kind == "oom" and f.point == "step" and step >= max(1, f.at):
            limit = int(f.params.get("rows", max(1, first_rows // 2)))
            if rows > limit:
                return True
    return False
