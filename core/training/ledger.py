"""The training loop's bookkeeping, written once for every backend.

A backend's loop does the framework's work (forward, backward, optimizer) and reports each
optimizer step to its ``Ledger``; the ledger counts steps and micro-batches, keeps the epoch's
mean loss, ends epochs (the core's evaluation via ``TrainCallbacks.on_epoch_end``), writes
checkpoints at the cadence asked for (every ``--save-every`` steps, at each epoch end, and when the
user stops the run) and knows where a resumed run starts. The backend supplies only what is its
own: writing and restoring its model, optimizer and RNG state (``save_state`` / ``restore_state``
of a checkpoint directory). Keep-N and atomic writes are ``tl.training.resume.Checkpointer``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tl import faults
from tl.errors import TrainingInterrupted
from tl.interfaces import TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.max_steps import steps_in_epoch, total_steps


class Ledger:
    def __init__(self, settings: TrainSettings, micro_per_epoch: int, callbacks: TrainCallbacks,
                 save_state: Callable[[Path], None], *,
                 begin_epoch: Callable[[int], None] = lambda epoch: None) -> None:
        """``micro_per_epoch``: this process's micro-batches per epoch (over its replicas); one
        optimizer step takes ``grad_accum x replicas`` of them. ``save_state(directory)`` writes the
        backend's model, optimizer and RNG state into a checkpoint directory; ``begin_epoch(epoch)``
        runs before each epoch after the first (per-epoch settings, e.g. gradual unfreezing).
        ``settings.max_steps``: the run stops after that many steps, its last epoch cut short
        (``micro_batches(epoch)``: what the loop gets of each epoch)."""
        self.settings = settings
        self.callbacks = callbacks
        self.save_state = save_state
        self.begin_epoch = begin_epoch
        self.micro_per_step = max(1, settings.grad_accum) * max(1, settings.replicas)
        self.steps_per_epoch = micro_per_epoch // self.micro_per_step  # optimizer steps
        self.total_steps = total_steps(self.steps_per_epoch, settings.epochs, settings.max_steps)
        self.warmup_steps = int(settings.warmup_ratio * self.total_steps)
        self.step = 0  # optimizer steps done
        self.epoch = 0  # epoch in progress
        self.micro = 0  # micro-batches of that epoch done
        self.loss_sum, self.n_steps = 0.0, 0  # of the epoch in progress

    def micro_batches(self, epoch: int) -> int:
        """This process's micro-batches of epoch ``epoch``: ``micro_per_epoch`` less what a ``--max-steps``
        cut leaves out of the last epoch (whole optimizer steps)."""
        return steps_in_epoch(epoch, self.steps_per_epoch, self.total_steps) * self.micro_per_step

    @property
    def start_epoch(self) -> int:
        """The epoch training starts in (after ``resume``: the checkpoint's)."""
        return self.epoch

    @property
    def skip(self) -> int:
        """Micro-batches of ``start_epoch`` already trained before a resume (the data order is a
        function of seed and epoch, so the loop skips them)."""
        return self.micro

    def resume(self, restore_state: Callable[[Path], None]) -> None:
        """Continue from ``callbacks.resume`` (if any): the backend restores its state from the
        checkpoint directory, the ledger its counters and the epoch's partial loss."""
        resume = self.callbacks.resume
        if resume is None:
            return
        restore_state(resume.path)
        self.step, self.epoch, self.micro = resume.step, resume.epoch, resume.micro
        self.loss_sum = float(resume.extra.get("loss_sum", 0.0))
        self.n_steps = int(resume.extra.get("n_steps", 0))

    def step_done(self, loss: float, rows: int) -> None:
        """One optimizer step of mean loss ``loss`` over ``rows`` examples is done: report it, end
        the epoch after its last step, checkpoint when due, and stop (after a checkpoint) when the
        user asked to."""
        self.step += 1
        faults.hit("step", self.step)  # the fault suite's switch (TL_INJECT_FAULT); nothing otherwise
        self.micro += self.micro_per_step
        self.loss_sum += loss
        self.n_steps += 1
        callbacks, checkpointer = self.callbacks, self.callbacks.checkpointer
        callbacks.on_step(self.step, loss, rows)
        stop = callbacks.should_stop()
        if self.micro >= self.micro_batches(self.epoch):
            self._end_epoch()
        elif checkpointer is not None and (stop or checkpointer.due(self.step)):
            self._save()
        if stop:
            raise TrainingInterrupted(f"interrupted at step {self.step}; a checkpoint was written")

    def empty_epochs(self) -> None:
        """Training data too small for one step: every epoch ends at once (evaluated, untrained)."""
        for epoch in range(self.epoch, self.settings.epochs):
            self.callbacks.on_epoch_end(epoch, 0.0)

    def _end_epoch(self) -> None:
        self.callbacks.on_epoch_end(self.epoch, self.loss_sum / max(1, self.n_steps))
        self.epoch += 1
        self.micro, self.loss_sum, self.n_steps = 0, 0.0, 0
        if self.epoch < self.settings.epochs:
            self.begin_epoch(self.epoch)
        if self.callbacks.checkpointer is not None:
            self._save()

    def _save(self) -> None:
        self.callbacks.checkpointer.save(self.step, self.epoch, self.micro, self.save_state,
                                         {"loss_sum": self.loss_sum, "n_steps": self.n_steps})
