"""Each stage of `tl run` (tl.training.stages) on its own, over one RunContext, on a tiny random BERT."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tl.plugins import get_plugin_manager
from tl.training.config import resolve as resolve_config
from tl.training.context import RunContext
from tl.training.rundir import LOCK_NAME
from tl.training.stages import STAGES, encode, finish, plan, resolve, train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the torch backend")

OPTIONS = {"epochs": 2, "batch_size": 16, "lr": 5e-3, "precision": "fp32", "max_length": 32, "backend": "torch"}


def _context(registry, tmp_path, checkpoint, data, name="run") -> RunContext:
    options = {**OPTIONS, "model": str(checkpoint), "dataset": str(data), "output": str(tmp_path / name)}
    return RunContext(resolve_config(options, {}, {}), registry, get_plugin_manager(), quiet=True)


def test_the_pipeline_is_the_five_stages_in_order():
    assert (resolve, encode, plan, train, finish) == STAGES


def test_resolve_finds_task_backend_data_labels_and_makes_the_run_directory(registry, tmp_path, tiny_checkpoint,
                                                                               tiny_data):
    ctx = _context(registry, tmp_path, tiny_checkpoint, tiny_data)
    resolve(ctx)
    assert ctx.task.name == "sentiment" and ctx.backend.name == "torch" and ctx.world.size == 1
    # a local file is streamed: read, split and labelled as the encode stage builds its store
    assert ctx.streamed and ctx.splits is None and ctx.labels == ()
    assert ctx.tokenizer.truncation == "head+tail" and ctx.checkpoint == tiny_checkpoint
    assert ctx.run_dir == tmp_path / "run" and ctx.run_dir.is_dir()
    assert [p.name for p in ctx.run_dir.iterdir()] == [LOCK_NAME] and ctx.run_lock is not None  # held for the run
    ctx.run_lock.release()
    assert not any(ctx.run_dir.iterdir())
    assert ctx.model is None and ctx.train_enc is None  # later stages' fields are untouched


def test_encode_tokenizes_both_splits_and_the_second_run_reads_the_cache(registry, tmp_path, tiny_checkpoint,
                                                                         tiny_data):
    first = _context(registry, tmp_path, tiny_checkpoint, tiny_data, "a")
    resolve(first)
    encode(first)
    assert first.labels == ("negative", "positive")
    assert len(first.splits.train) + len(first.splits.eval) == 400 and len(first.splits.eval) > 0
    assert len(first.train_enc) == len(first.splits.train) and len(first.eval_enc) == len(first.splits.eval)
    assert first.train_enc.lengths.max() <= OPTIONS["max_length"]
    second = _context(registry, tmp_path, tiny_checkpoint, tiny_data, "b")
    resolve(second)
    encode(second)
    assert second.tokenize_cached
    assert all((x == y).all() for x, y in zip(first.train_enc.ids, second.train_enc.ids, strict=True))


def test_plan_records_the_configuration_and_builds_the_model(registry, tmp_path, tiny_checkpoint, tiny_data):
    ctx = _context(registry, tmp_path, tiny_checkpoint, tiny_data)
    for stage in (resolve, encode, plan):
        stage(ctx)
    assert ctx.plan.precision == "fp32" and ctx.plan.device == "cpu" and ctx.settings.epochs == 2
    saved = json.loads((ctx.run_dir / "config.json").read_text())
    assert saved["labels"] == ["negative", "positive"] and saved["plan"] == ctx.plan.to_dict()
    assert saved["config"]["backend"] == "torch" and "torch" in saved["versions"]
    assert ctx.model.head.labels == ctx.labels and ctx.model.backend == "torch"


def test_train_then_finish_write_history_metrics_and_the_model(registry, tmp_path, tiny_checkpoint, tiny_data):
    ctx = _context(registry, tmp_path, tiny_checkpoint, tiny_data)
    for stage in (resolve, encode, plan, train):
        stage(ctx)
    assert ctx.step == ctx.total_steps > 0 and ctx.samples == 2 * len(ctx.splits.train)
    epochs = [row for row in ctx.history_rows if row["event"] == "epoch"]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert ctx.epoch_metrics["eval_accuracy"] == epochs[-1]["eval_accuracy"]
    assert not (ctx.run_dir / "metrics.json").exists() and (ctx.run_dir / "checkpoints").is_dir()
    finish(ctx)
    metrics = json.loads((ctx.run_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == ctx.total_steps and metrics["eval_accuracy"] == ctx.epoch_metrics["eval_accuracy"]
    meta = json.loads((ctx.run_dir / "model" / "tl.json").read_text())
    assert meta["labels"] == ["negative", "positive"] and meta["task"] == "sentiment"
