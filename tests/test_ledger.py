"""The training loop's bookkeeping (tl.training.ledger), the same for every backend: no framework needed."""

from __future__ import annotations

import pytest

from tl.errors import TrainingInterrupted
from tl.interfaces import TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.resume import Checkpointer


def _settings(**over) -> TrainSettings:
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.25, "seed": 0,
            "precision": "fp32"}
    return TrainSettings(**{**base, **over})


class Recorder:
    """TrainCallbacks that remember what the ledger reported."""

    def __init__(self, checkpointer=None, stop_at=None, resume=None):
        self.steps, self.epochs, self.saved = [], [], []
        self.stop_at = stop_at
        self.callbacks = TrainCallbacks(
            on_step=lambda step, loss, rows: self.steps.append((step, loss, rows)),
            on_epoch_end=lambda epoch, loss: self.epochs.append((epoch, loss)),
            checkpointer=checkpointer, resume=resume,
            should_stop=lambda: bool(self.steps) and self.steps[-1][0] == self.stop_at,
        )

    def save_state(self, directory):
        (directory / "state.bin").write_bytes(b"x" * len(self.steps))
        self.saved.append(len(self.steps))


def _ledger(settings, micro_per_epoch, recorder, **kw):
    from tl.training.ledger import Ledger

    return Ledger(settings, micro_per_epoch, recorder.callbacks, recorder.save_state, **kw)


def test_counts_steps_warmup_and_epoch_means_with_accumulation_and_replicas():
    rec = Recorder()
    ledger = _ledger(_settings(grad_accum=2, replicas=2), 12, rec)
    assert (ledger.micro_per_step, ledger.steps_per_epoch, ledger.total_steps, ledger.warmup_steps) == (4, 3, 6, 1)
    for loss in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        ledger.step_done(loss, 8)
    assert [s[0] for s in rec.steps] == [1, 2, 3, 4, 5, 6]
    assert rec.epochs == [(0, 2.0), (1, 5.0)]
    assert (ledger.step, ledger.epoch, ledger.micro) == (6, 2, 0)


def test_checkpoints_every_n_steps_and_at_each_epoch_end_keeping_n(tmp_path):
    ckpt = Checkpointer(tmp_path, every=2, keep=2)
    rec = Recorder(checkpointer=ckpt)
    ledger = _ledger(_settings(), 3, rec)
    for _ in range(6):
        ledger.step_done(0.5, 4)
    # step 2 (every 2), step 3 (epoch end), step 4 (every 2), step 6 (epoch end; not saved twice)
    assert rec.saved == [2, 3, 4, 6]
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000006"]
    latest = ckpt.latest()
    assert (latest.step, latest.epoch, latest.micro) == (6, 2, 0)


def test_a_stop_checkpoints_mid_epoch_then_raises_and_resume_continues_there(tmp_path):
    ckpt = Checkpointer(tmp_path)
    rec = Recorder(checkpointer=ckpt, stop_at=2)
    ledger = _ledger(_settings(), 4, rec)
    ledger.step_done(1.0, 4)
    with pytest.raises(TrainingInterrupted):
        ledger.step_done(3.0, 4)
    resume = ckpt.latest()
    assert (resume.step, resume.epoch, resume.micro, resume.extra) == (2, 0, 2, {"loss_sum": 4.0, "n_steps": 2})

    restored = []
    again = Recorder(checkpointer=ckpt, resume=resume)
    ledger = _ledger(_settings(), 4, again)
    ledger.resume(restored.append)
    assert restored == [resume.path]
    assert (ledger.start_epoch, ledger.skip, ledger.step) == (0, 2, 2)
    ledger.step_done(5.0, 4)
    ledger.step_done(7.0, 4)
    assert again.epochs == [(0, 4.0)]  # the epoch's mean over all four steps, across the stop
    assert again.steps[0][0] == 3


def test_a_stop_on_an_epochs_last_step_ends_the_epoch_first(tmp_path):
    ckpt = Checkpointer(tmp_path)
    rec = Recorder(checkpointer=ckpt, stop_at=2)
    ledger = _ledger(_settings(), 2, rec)
    ledger.step_done(1.0, 4)
    with pytest.raises(TrainingInterrupted):
        ledger.step_done(1.0, 4)
    assert rec.epochs == [(0, 1.0)] and rec.saved == [2]
    assert (ckpt.latest().epoch, ckpt.latest().micro) == (1, 0)


def test_begin_epoch_runs_before_each_later_epoch_and_empty_epochs_end_at_once():
    begun = []
    rec = Recorder()
    ledger = _ledger(_settings(epochs=3), 1, rec, begin_epoch=begun.append)
    for _ in range(3):
        ledger.step_done(1.0, 1)
    assert begun == [1, 2]

    rec = Recorder()
    ledger = _ledger(_settings(epochs=2, grad_accum=4), 3, rec)
    assert ledger.total_steps == 0
    ledger.empty_epochs()
    assert rec.epochs == [(0, 0.0), (1, 0.0)]
