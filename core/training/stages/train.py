"""Stage 4: the backend's training loop over length-grouped batches, with progress, history,
evaluation after each epoch, checkpoints and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import shutil
import time

from tl.data.batching import accumulation_split, iter_batches, train_order
from tl.errors import TrainingInterrupted
from tl.evaluation.evaluate import evaluate
from tl.interfaces import TrainCallbacks
from tl.plugins.events import call_hook
from tl.training.context import RunContext
from tl.training.max_steps import steps_in_epoch, total_steps
from tl.training.progress import Progress
from tl.training.resume import Checkpointer
from tl.training.rundir import History
from tl.training.schedule import learning_rate
from tl.training.signals import stop_on_signals
from tl.training.status import write_status
from tl.training.tensorboard import TENSORBOARD_DIR, EventLog


def started(ctx: RunContext) -> None:
    """Training starts: status.json says running, the plugins hear ``tl_on_run_start`` (main process)."""
    ctx.started = True
    if ctx.world.is_main:
        write_status(ctx.run_dir, "running", resumed=ctx.resume is not None)
        call_hook(ctx.pm, "tl_on_run_start", warn=ctx.warn, run_dir=ctx.run_dir, config=ctx.resolved["config"],
                  resolved=ctx.resolved)


def train(ctx: RunContext) -> None:
    config, backend, world, plan, resume = ctx.config, ctx.backend, ctx.world, ctx.plan, ctx.resume

    def warn(message: str) -> None:  # above the progress bar while it is shown
        ctx.warn(message, None if ctx.quiet else progress.write)

    history = History(ctx.run_dir / "history.jsonl", keep_until_step=resume.step if resume else None)
    checkpointer = None
    if backend.capabilities.checkpoints and world.is_main:
        checkpointer = Checkpointer(ctx.run_dir, every=config.save_every, keep=config.keep_checkpoints or 2)
    elif config.save_every:
        ctx.say(f"tl: note: --save-every ignored: backend {backend.name!r} does not write checkpoints yet")

    def epoch_order(epoch: int) -> list:
        return accumulation_split(train_order(ctx.train_enc.lengths, config.batch_size, config.seed, epoch),
                                  plan.grad_accum, world.size, world.rank, plan.replicas)

    micro_per_epoch = len(epoch_order(0))
    per_step = plan.grad_accum * plan.replicas  # this process's micro-batches of one optimizer step
    per_epoch = micro_per_epoch // per_step  # optimizer steps
    ctx.total_steps = total_steps(per_epoch, config.epochs, config.max_steps)

    def order(epoch: int) -> list:
        """The epoch's micro-batches; with --max-steps, the last epoch's cut after its last step."""
        return epoch_order(epoch)[:steps_in_epoch(epoch, per_epoch, ctx.total_steps) * per_step]

    ctx.step = resume.step if resume else 0
    progress = Progress(ctx.total_steps, disable=ctx.quiet, initial=resume.step if resume else 0)
    if resume:
        ctx.say(f"tl: resuming from {resume.path.name} (step {resume.step} of {ctx.total_steps})")
    log_every = config.log_every or 10
    events = EventLog(ctx.run_dir / TENSORBOARD_DIR, warn, resumed_at=resume.step if resume else None) \
        if world.is_main else None
    started(ctx)

    def on_step(step: int, loss: float, n: int) -> None:
        if ctx.first_step_unix is None:
            ctx.first_step_unix = time.time()
        ctx.step = step
        ctx.samples += n
        progress.update(loss, n)
        if step % log_every == 0 or step == ctx.total_steps:
            logs = {"loss": loss, "learning_rate": learning_rate(config.lr, step, ctx.total_steps, config.warmup_ratio),
                    "samples_per_second": round(progress.rate, 2), "epoch": round(step / per_epoch, 4)}
            history.log(event="step", step=step, **logs, elapsed_s=round(progress.elapsed, 3))
            if events is not None:
                events.scalars(step, {f"train/{k}": logs[k] for k in ("loss", "learning_rate", "samples_per_second")})
                events.flush()
                call_hook(ctx.pm, "tl_on_step_end", warn=warn, run_dir=ctx.run_dir, step=step, logs=logs)

    def on_epoch_end(epoch: int, train_loss: float) -> None:
        t = time.perf_counter()
        ctx.epoch_metrics = evaluate(ctx.model, ctx.eval_enc, ctx.labels, ctx.task, config.batch_size,
                                     backend.all_gather if backend.capabilities.sharded_eval else None, world)
        ctx.eval_s += time.perf_counter() - t
        shown = ("eval_loss", *(f"eval_{k}" for k in ctx.task.summary_metrics))
        row = {"event": "epoch", "epoch": epoch + 1, "step": ctx.step, "train_loss": train_loss,
               **{k: ctx.epoch_metrics[k] for k in shown}}
        history.log(**row)
        if not ctx.quiet:
            progress.write(f"epoch {epoch + 1}/{config.epochs}: train_loss {train_loss:.4f} | "
                           + " | ".join(f"{k} {row[k]:.4f}" for k in shown))
        if world.is_main:
            events.scalars(ctx.step, {"train/epoch_loss": train_loss,
                                      **{f"eval/{k[len('eval_'):]}": row[k] for k in shown}})
            events.flush()
            call_hook(ctx.pm, "tl_on_epoch_end", warn=warn, run_dir=ctx.run_dir, epoch=epoch + 1, logs=row)
        if ctx.on_epoch is not None:
            ctx.on_epoch(epoch + 1, row)

    callbacks = TrainCallbacks(on_step=on_step, on_epoch_end=on_epoch_end, checkpointer=checkpointer,
                               resume=resume, on_info=ctx.train_info.update, warn=warn)
    # a backend without checkpoints cannot stop cleanly at a step boundary: Ctrl-C interrupts it at once
    guard = stop_on_signals(callbacks) if checkpointer is not None else contextlib.nullcontext()
    t_start = time.perf_counter()
    try:
        with guard:
            backend.train(ctx.model, lambda epoch: iter_batches(ctx.train_enc, order(epoch)), micro_per_epoch,
                          ctx.settings, callbacks)
    except TrainingInterrupted:
        raise TrainingInterrupted(f"interrupted at step {ctx.step}; a checkpoint was written. "
                                  f"Resume with: tl run --resume {ctx.run_dir}") from None
    finally:
        progress.close()
        history.close()
        if events is not None:
            events.close()
        if not world.is_main:  # a non-chief's scratch directory goes, whether training ended well or not
            shutil.rmtree(ctx.run_dir, ignore_errors=True)
    ctx.train_s = time.perf_counter() - t_start - ctx.eval_s
    ctx.history_rows = history.rows
    if resume and resume.epoch >= config.epochs:  # finished training, its model not saved: the final evaluation again
        t = time.perf_counter()
        ctx.epoch_metrics = evaluate(ctx.model, ctx.eval_enc, ctx.labels, ctx.task, config.batch_size,
                                     backend.all_gather if backend.capabilities.sharded_eval else None, world)
        ctx.eval_s += time.perf_counter() - t
