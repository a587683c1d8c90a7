"""Stopping a run cleanly: SIGINT/SIGTERM ask the backend to checkpoint at the next step boundary."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from tl.interfaces import TrainCallbacks


@contextlib.contextmanager
def stop_on_signals(callbacks: TrainCallbacks) -> Iterator[None]:
    """SIGINT/SIGTERM ask the backend to checkpoint at the next step boundary and stop; a second
    SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requested = {"stop": False}

    def handler(signum, frame):
        if requested["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested["stop"] = True
        print("\ntl: stopping at the next step (writing a checkpoint); press Ctrl-C again to abort",
              file=sys.stderr, flush=True)

    callbacks.should_stop = lambda: requested["stop"]
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
