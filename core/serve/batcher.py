"""Dynamic micro-batching: one inference thread owns the model (models are not thread-safe) and runs
the texts of concurrent requests together. Requests queue their texts (a bounded queue, counted in
texts); the thread takes up to ``max_batch_size`` texts, waiting at most ``max_wait_s`` after the
first for more, splits a large request across batches in order, and resolves each request's future
on its event loop once all of its texts are predicted."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tl.serve.limits import ApiError, Inputs

#: ``(texts, pairs or None) -> one JSON-ready record per text``: the loaded model's predictions.
PredictFn = Callable[[list[str], "list[str] | None"], list[dict[str, Any]]]

LOADING, READY, FAILED, STOPPED = "loading", "ready", "failed", "stopped"


@dataclass(eq=False)
class _Pending:
    inputs: Inputs
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float
    records: list = field(default_factory=list)
    taken: int = 0  # texts handed to batches
    done: int = 0  # texts predicted
    failed: bool = False

    @property
    def size(self) -> int:
        return len(self.inputs.texts)

    def abandoned(self) -> bool:
        return self.failed or self.future.cancelled()


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """Loads the model with ``load`` in its own thread (``start``), then serves ``submit`` calls."""

    def __init__(self, load: Callable[[], PredictFn], *, max_batch_size: int, max_wait_s: float, max_queue: int,
                 metrics: Any, log: logging.Logger, on_failure: Callable[[str], None] | None = None):
        self._load = load
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._log = log
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued = 0  # texts in the queue, not yet handed to a batch
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.state = LOADING
        self.error: str | None = None

    # the event loop's side ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="tl-serve-inference", daemon=True)
        self._thread.start()

    async def submit(self, inputs: Inputs) -> list[dict[str, Any]]:
        """The records of ``inputs`` in order; ApiError 503 while loading, when the queue is full or
        after shutdown, 500 when the model fails on the batch."""
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, loop.create_future(), loop, time.monotonic(), [None] * len(inputs.texts))
        with self._cond:
            if self.state != READY or self._stopping:
                raise self.unavailable()
            if self._queued + pending.size > self.max_queue:
                raise ApiError(503, "overloaded", f"the queue is full ({self._queued} of {self.max_queue} texts "
                                                  "waiting, --max-queue); retry later", {"Retry-After": "1"})
            self._queue.append(pending)
            self._queued += pending.size
            self._metrics.queue_depth.set(self._queued)
            self._cond.notify()
        return await pending.future

    def unavailable(self) -> ApiError:
        """The 503 for a model that cannot take requests now."""
        if self.state == LOADING:
            return ApiError(503, "loading", "the model is loading; retry shortly", {"Retry-After": "2"})
        if self.state == FAILED:
            return ApiError(503, "load_failed", f"the model failed to load: {self.error}")
        return ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "1"})

    def stop(self) -> None:
        """Finish every queued request, then end the thread (see ``join``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # the inference thread ------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            predict = self._load()
        except BaseException as exc:  # noqa: BLE001 - any failure is reported, the server stays up
            self.error = " ".join(str(exc).split()) or exc.__class__.__name__
            self.state = FAILED
            self._log.error("tl serve: the model failed to load: %s", self.error,
                            exc_info=not _is_user_error(exc))
            if self._on_failure is not None:
                self._on_failure(self.error)
            return
        with self._cond:
            self.state = READY if not self._stopping else STOPPED
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._run(predict, batch)
        self.state = STOPPED

    def _next_batch(self) -> list[tuple[_Pending, int, int]] | None:
        """Up to ``max_batch_size`` texts as (request, start, end) slices; None once stopped and empty."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].abandoned():
                    self._drop(self._queue.popleft())
                if self._queue:
                    break
                if self._stopping:
                    self.state = STOPPED
                    return None
                self._cond.wait()
            deadline = self._queue[0].arrived + self.max_wait_s
            while self._queued < self.max_batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, room = [], self.max_batch_size
            while self._queue and room:
                head = self._queue[0]
                if head.abandoned():
                    self._drop(self._queue.popleft())
                    continue
                n = min(room, head.size - head.taken)
                batch.append((head, head.taken, head.taken + n))
                head.taken += n
                room -= n
                self._queued -= n
                if head.taken == head.size:
                    self._queue.popleft()
            self._metrics.queue_depth.set(self._queued)
            return batch

    def _drop(self, pending: _Pending) -> None:
        self._queued -= pending.size - pending.taken
        pending.taken = pending.size

    def _run(self, predict: PredictFn, batch: list[tuple[_Pending, int, int]]) -> None:
        texts = [t for p, a, b in batch for t in p.inputs.texts[a:b]]
        paired = batch[0][0].inputs.pairs is not None
        pairs = [t for p, a, b in batch for t in p.inputs.pairs[a:b]] if paired else None
        start = time.perf_counter()
        try:
            records = predict(texts, pairs)
            if len(records) != len(texts):
                raise RuntimeError(f"the task returned {len(records)} predictions for {len(texts)} texts")
        except Exception as exc:
            message = " ".join(str(exc).split()) or exc.__class__.__name__
            self._log.error("tl serve: inference failed on a batch of %d texts: %s", len(texts), message,
                            exc_info=True)
            error = ApiError(500, "inference_failed", f"the model failed on this request: {message}")
            for pending, _, _ in batch:
                if not pending.failed:
                    pending.failed = True
                    self._call(pending, error=error)
            return
        self._metrics.observe_batch(len(texts), time.perf_counter() - start)
        offset = 0
        for pending, a, b in batch:
            pending.records[a:b] = records[offset:offset + b - a]
            offset += b - a
            pending.done += b - a
            if pending.done == pending.size and not pending.failed:
                self._call(pending, result=pending.records)

    @staticmethod
    def _call(pending: _Pending, result: Any = None, error: BaseException | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits any more
            pending.loop.call_soon_threadsafe(_settle, pending.future, result, error)


def _is_user_error(exc: BaseException) -> bool:
    from tl.errors import TLError

    return isinstance(exc, TLError)
