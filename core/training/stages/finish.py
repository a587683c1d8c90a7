"""Stage 5: save the model, write metrics.json and the plots, and tell the plugins."""

from __future__ import annotations

from tl.evaluation.collapse import collapse_warning
from tl.interfaces import HEAD_TOKEN_CLASSIFICATION
from tl.models.base_model import portable_name
from tl.models.saved import save_model
from tl.plugins.events import call_hook
from tl.training.context import RunContext
from tl.training.hardware import peak_rss_mib
from tl.training.resume import finish_write_errors
from tl.training.rundir import write_json_atomic


def finish(ctx: RunContext) -> None:
    if not ctx.world.is_main:  # only rank 0 writes; the others report their own evaluation
        ctx.metrics = {**ctx.epoch_metrics, "rank": ctx.world.rank}
        return
    config, task = ctx.config, ctx.task
    with finish_write_errors(ctx.run_dir, ctx.run_dir / "model", config.epochs):  # one line: how to get it back
        model_dir = save_model(ctx.model, ctx.run_dir / "model", {
            "task": task.name, "max_length": config.max_length, "truncation": ctx.tokenizer.truncation,
            "versions": ctx.versions,
            "trained": {"dataset": portable_name(config.dataset), "epochs": config.epochs, "seed": config.seed},
        })
    call_hook(ctx.pm, "tl_on_checkpoint_saved", run_dir=ctx.run_dir, path=model_dir)
    warn_if_collapsed(ctx)
    ctx.metrics = metrics = run_metrics(ctx)
    with finish_write_errors(ctx.run_dir, ctx.run_dir / "metrics.json", config.epochs):
        write_json_atomic(ctx.run_dir / "metrics.json", metrics)
    try:
        from tl.training.plots import write_plots

        write_plots(ctx.run_dir / "plots", ctx.history_rows, metrics.get("eval_confusion_matrix", []), ctx.labels)
    except Exception as exc:  # plots are a convenience; never lose a finished run over them
        ctx.say(f"tl: warning: could not write plots ({type(exc).__name__}: {exc})")
    call_hook(ctx.pm, "tl_on_evaluate", run_dir=ctx.run_dir, metrics=metrics)


def warn_if_collapsed(ctx: RunContext) -> None:
    """One warning line (stderr and metrics.json) when the model predicts one class for nearly every
    evaluation row or never predicts a class (``tl.evaluation.collapse``), saying what to try."""
    unit = "words" if ctx.task.head_kind == HEAD_TOKEN_CLASSIFICATION else "rows"
    message = collapse_warning(ctx.epoch_metrics, ctx.labels, unit=unit, config=ctx.config, steps=ctx.total_steps)
    if message:
        ctx.warn(message)


def run_metrics(ctx: RunContext) -> dict:
    """metrics.json: the last evaluation, throughput and what the run was."""
    config, plan, train_s = ctx.config, ctx.plan, ctx.train_s
    return {
        **ctx.epoch_metrics,
        "train_loss": ctx.history_rows[-1].get("train_loss") if ctx.history_rows else None,
        "train_runtime_s": round(train_s, 3),
        "train_samples_per_second": round(ctx.samples / train_s, 2) if train_s else None,
        "train_steps": ctx.total_steps,
        "eval_runtime_s": round(ctx.eval_s, 3),
        "tokenize_runtime_s": round(ctx.tokenize_s, 3),
        "tokenize_cached": ctx.tokenize_cached,
        # this process's peak resident memory (MiB) once its data was ready (read, tokenized, mapped) and
        # at the end (with the model's weights, optimizer state and activations)
        "data_peak_rss_mib": ctx.data_peak_rss_mib,
        "peak_rss_mib": peak_rss_mib(),
        # wall-clock time (Unix seconds) when the first optimizer step of this process finished
        "first_step_unix": ctx.first_step_unix,
        "epochs": config.epochs,
        # --min-steps (epochs raised for a small training set) and --class-weights, as in config.json
        "min_steps": ctx.resolved.get("min_steps"),
        # --max-steps: the optimizer steps asked for (train_steps: those trained; None without it)
        "max_steps": config.max_steps,
        "class_weights": ctx.resolved.get("class_weights"),
        "num_train_samples": len(ctx.splits.train),
        "num_eval_samples": len(ctx.splits.eval),
        "labels": list(ctx.labels),
        "backend": ctx.backend.name,
        "model": config.model,
        "model_family": ctx.family.name if ctx.family else None,
        "task": ctx.task.name,
        "dataset": config.dataset,
        "seed": config.seed,
        "precision": plan.precision,
        "strategy": ctx.settings.strategy.name,
        **ctx.train_info,
        "effective_batch": plan.effective_batch,
        "grad_accum": plan.grad_accum,
        "world_size": ctx.world.size,
        # processes that evaluated a share of the held-out set each (1: one process evaluated all of it)
        "eval_shards": ctx.world.size if ctx.backend.capabilities.sharded_eval else 1,
    }
