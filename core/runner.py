"""One fine-tuning run, end to end: resolve, load, tokenize, train, evaluate, save."""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tl import __version__
from tl.assets import tl_home
from tl.batching import accumulation_split, iter_batches, train_order
from tl.checkpoint import convert_pickled, validate_checkpoint
from tl.checkpoints import Checkpointer
from tl.config import RunConfig, TrainSettings, strategy_of, to_dict
from tl.data import Examples, Splits
from tl.distributed import World, world_from_env
from tl.encode_cache import cached
from tl.errors import BackendUnavailable, DataError, TrainingInterrupted, UsageError
from tl.interfaces import Backend, HeadSpec, Task, TrainCallbacks
from tl.modelio import dataset_logits, label_ids, save_model  # noqa: F401 (label_ids: re-exported)
from tl.plan import PlanRequest, busy_cores, make_plan
from tl.plugins import Registry
from tl.progress import Progress
from tl.resolve import resolve_dataset, resolve_eval_file, resolve_model
from tl.runs import History, prepare_run_dir, write_json_atomic
from tl.tokenization import Tokenizer

#: Subsets taken with --max-*-samples are a fixed random sample (not the first rows, which may be
#: sorted by label), and they do not move with --seed.
SUBSET_SEED = 1234


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    #: The task's headline metrics (without ``eval_``), for the summary line.
    summary: tuple[str, ...] = ("accuracy", "macro_f1")


def get_backend(registry: Registry, name: str) -> Backend:
    backend = registry.get("backend", name)
    missing = backend.missing_modules()
    if missing:
        raise BackendUnavailable(
            f"backend {name!r} needs {', '.join(missing)}, which is not installed: {backend.install_hint}"
        )
    return backend


def subset(examples: Examples, n: int | None) -> Examples:
    if n is None or n >= len(examples):
        return examples
    rng = np.random.default_rng(SUBSET_SEED)
    return examples.take(np.sort(rng.permutation(len(examples))[:n]).tolist())


def load_splits(config: RunConfig, registry: Registry, task: Task | None = None) -> Splits:
    """Train and eval examples; local files are read by ``task.read`` (default: a table)."""
    read = (task or Task()).read
    splits = resolve_dataset(config.dataset, registry, config.text_column, config.label_column,
                             config.text_pair_column, read=read)
    if config.eval_dataset:
        eval_examples = resolve_eval_file(config.eval_dataset, registry, config.text_column,
                                          config.label_column, config.text_pair_column, read=read)
        # with a separate eval set, the whole of --dataset trains
        train = splits.train if not Path(config.dataset).exists() else _all(splits)
        splits = Splits(train, eval_examples, split=f"eval from {config.eval_dataset}")
    if task is not None:
        for examples in (splits.train, splits.eval):
            require_pairs(task, examples)
    return Splits(subset(splits.train, config.max_train_samples), subset(splits.eval, config.max_eval_samples),
                  splits.split)


def require_pairs(task: Task, examples: Examples) -> None:
    """A one-line error when ``task`` classifies text pairs and ``examples`` are single texts."""
    if task.requires_text_pair and examples.pairs is None:
        source = examples.source or "the data"
        default = task.defaults.get("text_pair_column")
        raise DataError(f"task {task.name!r} classifies text pairs, but {source} has no second text; pass "
                        f"--text-pair-column" + (f" (default: {default})" if default else ""))


def _all(splits: Splits) -> Examples:
    return splits.train + splits.eval


def label_space(task: Task, splits: Splits) -> tuple[str, ...]:
    labels = task.label_order(task.observed_labels(splits.train))
    task.validate_labels(labels, splits.train.source or "training data")
    unseen = sorted(set(task.observed_labels(splits.eval)) - set(labels))
    if unseen:
        raise DataError(
            f"evaluation labels {', '.join(map(repr, unseen))} never occur in the training data "
            f"(training labels: {', '.join(labels)}); fix the label column or the split"
        )
    return labels


def evaluate(model, encoded, labels: tuple[str, ...], task: Task, batch_size: int,
             gather: Callable[[np.ndarray], list[np.ndarray]] | None = None, world: World | None = None
             ) -> dict[str, Any]:
    """Loss and the task's metrics over ``encoded``. With ``gather`` in a multi-process ``world``,
    each process computes the logits of every ``world.size``-th row from its rank on, and the
    gathered shards make the whole set's logits on every process (the same metrics everywhere)."""
    batch = max(batch_size, 64)
    if gather is None or world is None or world.size == 1:
        logits = dataset_logits(model, encoded, batch_size=batch)
    else:
        mine = dataset_logits(model, encoded.take(np.arange(world.rank, len(encoded), world.size)), batch_size=batch)
        parts = gather(mine)
        if isinstance(mine, list):  # token heads: one array per row
            logits = [None] * len(encoded)
            for rank, part in enumerate(parts):
                logits[rank::world.size] = part
        else:
            logits = np.empty((len(encoded), mine.shape[1]), dtype=mine.dtype)
            for rank, part in enumerate(parts):
                logits[rank::world.size] = part
    report = task.evaluate(logits, encoded, labels)
    return {f"eval_{k}": v for k, v in report.items()}


def run(config: RunConfig, registry: Registry, pm, *, overwrite: bool = False, quiet: bool = False,
        resume_dir: Path | None = None) -> RunResult:
    """Train, evaluate and save. ``resume_dir``: continue that run from its newest good checkpoint."""
    task = registry.get("task", config.task)
    backend = get_backend(registry, config.backend)
    world = world_from_env()
    if world.size > 1 and world.mode not in backend.capabilities.distributed:
        launcher = {"ddp": "torchrun", "multi-worker": "TF_CONFIG"}.get(world.mode, world.mode)
        raise UsageError(f"backend {backend.name!r} cannot train in a {world.size}-process group launched by "
                         f"{launcher}; see README: distributed training")
    if not world.is_main:
        quiet = True
    checkpoint, model_source = resolve_model(config.model, registry)
    if config.allow_pickle:
        checkpoint = convert_pickled(checkpoint, tl_home())
    validate_checkpoint(checkpoint)
    if task.head_kind not in backend.capabilities.heads:
        raise UsageError(f"task {task.name!r} needs a {task.head_kind} head, which backend {backend.name!r} "
                         f"cannot build (heads: {', '.join(backend.capabilities.heads)})")
    splits = load_splits(config, registry, task)
    labels = label_space(task, splits)
    tokenizer = Tokenizer.from_dir(checkpoint)
    tokenizer.truncation = config.truncation or "head"
    resume = None
    if resume_dir is not None:
        if not backend.capabilities.checkpoints:
            raise UsageError(f"backend {backend.name!r} does not write resumable checkpoints yet")
        if world.size > 1:
            raise UsageError("--resume of a multi-process run is not supported yet; resume it in one process")
        resume = Checkpointer(resume_dir).latest()
        if resume is None:
            raise UsageError(f"{resume_dir} has no usable checkpoint to resume from")
        if resume.epoch >= config.epochs:
            raise UsageError(f"{resume_dir} already finished all {config.epochs} epochs; nothing to resume")
        run_dir = Path(resume_dir)
    elif world.is_main:
        run_dir = prepare_run_dir(config.output, task.name, backend.name, overwrite=overwrite)
    else:  # only rank 0 writes the run directory; the others keep their scratch files private
        run_dir = Path(tempfile.mkdtemp(prefix=f"tl-rank{world.rank}-"))
    say = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    t0 = time.perf_counter()
    task_id = f"{task.name}:{type(task).__module__}.{type(task).__qualname__}:{__version__}"
    train_enc, train_cached = cached(task_id, tokenizer, splits.train, config.max_length, labels,
                                     lambda: task.encode(tokenizer, splits.train, config.max_length, labels))
    eval_enc, eval_cached = cached(task_id, tokenizer, splits.eval, config.max_length, labels,
                                   lambda: task.encode(tokenizer, splits.eval, config.max_length, labels))
    tokenize_s = time.perf_counter() - t0

    probe = backend.probe()
    request = PlanRequest(
        precision=config.precision, strict=bool(config.precision_strict), batch_size=config.batch_size,
        grad_accum=config.grad_accum, threads=config.threads, world_size=world.size,
        local_world_size=world.local_size, distributed=world.mode,
        mirrored="mirrored" in backend.capabilities.distributed, busy_cores=busy_cores(),
    )
    plan = make_plan(probe, request)
    backend.configure(plan.threads, plan.replicas)
    precision = plan.precision
    settings = TrainSettings(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio, seed=config.seed, precision=precision, threads=plan.threads,
        grad_accum=plan.grad_accum, loss_scaling=plan.loss_scaling, world_size=world.size, rank=world.rank,
        replicas=plan.replicas, strategy=strategy_of(config),
    )
    head = HeadSpec(task.head_kind, labels)
    versions = {"tl": __version__, "python": platform.python_version(), **backend.versions()}
    info = {"base_model": config.model, "model_source": model_source, "base_checkpoint": str(checkpoint)}
    resolved = {
        "config": to_dict(config),
        "labels": list(labels),
        "split": splits.split,
        "num_train_samples": len(splits.train),
        "num_eval_samples": len(splits.eval),
        "plan": plan.to_dict(),
        "hardware": probe.to_dict(),
        "model_source": model_source,
        "versions": versions,
    }
    write_json_atomic(run_dir / "config.json", resolved)
    say(f"tl: {task.name} on {backend.name} | model {config.model} | {len(splits.train)} train / "
        f"{len(splits.eval)} eval examples | labels {', '.join(labels)}")
    announce(plan, say)
    say(f"tl: run directory {run_dir}")

    model = backend.build_model(checkpoint, head, tokenizer, init=config.init, seed=config.seed, info=info)
    if config.auto_batch:
        fitted = backend.max_device_batch(model, config.max_length, config.batch_size // (world.size * plan.replicas))
        plan = make_plan(probe, dataclasses.replace(request, max_device_batch=fitted, grad_accum=None))
        if fitted is None:
            plan.notes.append(f"--batch-size auto: no memory search on {plan.device}; using batch {config.batch_size}")
        settings = dataclasses.replace(settings, grad_accum=plan.grad_accum)
        resolved["plan"] = plan.to_dict()
        write_json_atomic(run_dir / "config.json", resolved)
        announce(plan, say, "plan (batch-size auto)")
    history = History(run_dir / "history.jsonl", keep_until_step=resume.step if resume else None)
    checkpointer = None
    if backend.capabilities.checkpoints and world.is_main:
        checkpointer = Checkpointer(run_dir, every=config.save_every, keep=config.keep_checkpoints or 2)
    elif config.save_every:
        say(f"tl: note: --save-every ignored: backend {backend.name!r} does not write checkpoints yet")
    lengths = train_enc.lengths

    def order(epoch: int) -> list:
        return accumulation_split(train_order(lengths, config.batch_size, config.seed, epoch), plan.grad_accum,
                                  world.size, world.rank, plan.replicas)

    micro_per_epoch = len(order(0))
    per_epoch = micro_per_epoch // (plan.grad_accum * plan.replicas)  # optimizer steps
    total_steps = per_epoch * config.epochs
    progress = Progress(total_steps, disable=quiet, initial=resume.step if resume else 0)
    if resume:
        say(f"tl: resuming from {resume.path.name} (step {resume.step} of {total_steps})")
    epoch_metrics: dict[str, Any] = {}
    state = {"step": resume.step if resume else 0, "samples": 0, "t_eval": 0.0}

    def batches(epoch: int):
        return iter_batches(train_enc, order(epoch))

    def on_step(step: int, loss: float, n: int) -> None:
        if "first_step_unix" not in state:
            state["first_step_unix"] = time.time()
        state["step"] = step
        state["samples"] += n
        progress.update(loss, n)
        if step % 10 == 0 or step == total_steps:
            history.log(event="step", step=step, epoch=step / per_epoch, loss=loss,
                        lr_factor=None, elapsed_s=round(progress.elapsed, 3))

    def on_epoch_end(epoch: int, train_loss: float) -> None:
        t = time.perf_counter()
        nonlocal epoch_metrics
        epoch_metrics = evaluate(model, eval_enc, labels, task, config.batch_size,
                                 backend.all_gather if backend.capabilities.sharded_eval else None, world)
        state["t_eval"] += time.perf_counter() - t
        shown = ("eval_loss", *(f"eval_{k}" for k in task.summary_metrics))
        row = {"event": "epoch", "epoch": epoch + 1, "step": state["step"], "train_loss": train_loss,
               **{k: epoch_metrics[k] for k in shown}}
        history.log(**row)
        if not quiet:
            progress.write(f"epoch {epoch + 1}/{config.epochs}: train_loss {train_loss:.4f} | "
                           + " | ".join(f"{k} {row[k]:.4f}" for k in shown))
        if world.is_main:
            pm.hook.tl_on_epoch_end(run_dir=run_dir, epoch=epoch + 1, logs=row)

    t_start = time.perf_counter()
    train_info: dict[str, Any] = {}
    callbacks = TrainCallbacks(on_step=on_step, on_epoch_end=on_epoch_end, checkpointer=checkpointer,
                               resume=resume, on_info=train_info.update)
    # a backend without checkpoints cannot stop cleanly at a step boundary: Ctrl-C interrupts it at once
    guard = stop_on_signals(callbacks) if checkpointer is not None else contextlib.nullcontext()
    try:
        with guard:
            backend.train(model, batches, micro_per_epoch, settings, callbacks)
    except TrainingInterrupted:
        raise TrainingInterrupted(f"interrupted at step {state['step']}; a checkpoint was written. "
                                  f"Resume with: tl run --resume {run_dir}") from None
    finally:
        progress.close()
        history.close()
        if not world.is_main:  # a non-chief's scratch directory goes, whether training ended well or not
            shutil.rmtree(run_dir, ignore_errors=True)
    wall = time.perf_counter() - t_start
    train_runtime = wall - state["t_eval"]
    if not world.is_main:
        return RunResult(run_dir, {**epoch_metrics, "rank": world.rank}, task.summary_metrics)

    model_dir = save_model(model, run_dir / "model", {
        "task": task.name, "max_length": config.max_length, "truncation": tokenizer.truncation, "versions": versions,
        "trained": {"dataset": config.dataset, "epochs": config.epochs, "seed": config.seed},
    })
    pm.hook.tl_on_checkpoint_saved(run_dir=run_dir, path=model_dir)
    metrics = {
        **{k: v for k, v in epoch_metrics.items()},
        "train_loss": history.rows[-1].get("train_loss") if history.rows else None,
        "train_runtime_s": round(train_runtime, 3),
        "train_samples_per_second": round(state["samples"] / train_runtime, 2) if train_runtime else None,
        "train_steps": total_steps,
        "eval_runtime_s": round(state["t_eval"], 3),
        "tokenize_runtime_s": round(tokenize_s, 3),
        "tokenize_cached": train_cached and eval_cached,
        # wall-clock time (Unix seconds) when the first optimizer step of this process finished
        "first_step_unix": state.get("first_step_unix"),
        "epochs": config.epochs,
        "num_train_samples": len(splits.train),
        "num_eval_samples": len(splits.eval),
        "labels": list(labels),
        "backend": backend.name,
        "model": config.model,
        "task": task.name,
        "dataset": config.dataset,
        "seed": config.seed,
        "precision": precision,
        "strategy": settings.strategy.name,
        **train_info,
        "effective_batch": plan.effective_batch,
        "grad_accum": plan.grad_accum,
        "world_size": world.size,
        # processes that evaluated a share of the held-out set each (1: one process evaluated all of it)
        "eval_shards": world.size if backend.capabilities.sharded_eval else 1,
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    try:
        from tl.plots import write_plots

        write_plots(run_dir / "plots", history.rows, metrics.get("eval_confusion_matrix", []), labels)
    except Exception as exc:  # plots are a convenience; never lose a finished run over them
        say(f"tl: warning: could not write plots ({type(exc).__name__}: {exc})")
    pm.hook.tl_on_evaluate(run_dir=run_dir, metrics=metrics)
    return RunResult(run_dir, metrics, task.summary_metrics)


def announce(plan, say, title: str = "plan") -> None:
    say(f"tl: {title}: {plan.summary()}")
    for note in plan.notes:
        say(f"tl: note: {note}")


@contextlib.contextmanager
def stop_on_signals(callbacks: TrainCallbacks):
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
