"""TensorBoard event files for a run (``runs/<id>/tensorboard/``), written by the core for every
backend with the same tags:

- every ``--log-every`` steps: ``train/loss``, ``train/learning_rate``, ``train/samples_per_second``;
- each epoch end: ``train/epoch_loss``, ``eval/loss`` and the task's headline metrics
  (``eval/accuracy``, ``eval/macro_f1``, ...), at the optimizer step the epoch ended on.

The writer is TensorBoard's own record writer and event protos (the pieces ``torch.utils.tensorboard``
is built on), used directly: TensorBoard's ``EventFileWriter`` goes through ``tf.io.gfile``, which
imports TensorFlow when it is installed, and tensorboardX imports torch; this needs neither. Writing
never stops a run: the first failure is one warning and the log is closed."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


class EventLog:
    def __init__(self, directory: Path, warn: Callable[[str], None], *, resumed_at: int | None = None) -> None:
        """A new event file in ``directory``. ``resumed_at``: the step of the checkpoint a resumed run
        continues from; a session restart at the step after it makes TensorBoard (``--purge_orphaned_data``,
        its default) drop what the earlier file logged after the checkpoint, as history.jsonl does."""
        self.warn = warn
        self._file: Any = None
        self._writer: Any = None
        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter

            directory.mkdir(parents=True, exist_ok=True)
            self._file = _new_file(directory)
            self._writer = RecordWriter(self._file)
            self._event = event_pb2
            self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
            if resumed_at is not None:  # TensorBoard keeps what the earlier file logged before this step
                self._write(event_pb2.Event(wall_time=time.time(), step=resumed_at + 1,
                                            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
            self.flush()
        except Exception as exc:  # an unwritable directory, a broken install: the run goes on without
            self._fail(exc)

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        """One event at optimizer step ``step`` with a scalar per tag (``None`` values skipped)."""
        if self._writer is None:
            return
        try:
            from tensorboard.compat.proto import summary_pb2

            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v))
                                                 for tag, v in values.items() if v is not None])
            self._write(self._event.Event(wall_time=time.time(), step=int(step), summary=summary))
        except Exception as exc:
            self._fail(exc)

    def flush(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.flush()
        except Exception as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._writer.flush()
                self._file.close()
            except Exception:
                pass
        self._file = self._writer = None

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())

    def _fail(self, exc: BaseException) -> None:
        self.warn(f"TensorBoard events not written ({type(exc).__name__}: {exc}); the run goes on without them")
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        self._file = self._writer = None


def _new_file(directory: Path) -> Any:
    """A new event file, named as TensorBoard's writers name theirs; the names of a run's files sort in
    the order they were made (TensorBoard reads them in that order), and a run resumed in the same
    second by the same process gets a file of its own instead of truncating the earlier one."""
    stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    for n in range(1, 1000):
        try:
            return open(directory / f"{stem}.{n:03d}.tl", "xb")  # noqa: SIM115 (open for the whole run)
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory / stem}.*.tl")
