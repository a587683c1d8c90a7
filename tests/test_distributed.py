"""Multi-process training through the framework's own engine, on CPU (gloo), in CI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinybert import make_checkpoint

pytest.importorskip("torch")


def test_torchrun_two_processes_match_one(tmp_path, tiny_data):
    ckpt = make_checkpoint(tmp_path / "nodrop", dropout=0.0)  # dropout masks differ by shard shape
    common = ["--backend", "torch", "--model", str(ckpt), "--dataset", str(tiny_data), "--epochs", "2",
              "--lr", "5e-3", "--batch-size", "16", "--max-length", "32", "--precision", "fp32", "-q", "--json"]
    results = {}
    for n in (1, 2):
        out = subprocess.run([sys.executable, "-m", "tl", "run", *common, "--nproc", str(n), "-o", str(tmp_path / f"r{n}")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        assert len(lines) == 1, out.stdout  # only rank 0 reports
        results[n] = json.loads(lines[0])
    assert results[2]["world_size"] == 2 and results[1]["world_size"] == 1
    assert results[2]["train_steps"] == results[1]["train_steps"]
    # the same rows per optimizer step, gradients averaged by DDP: the same model up to float noise
    assert results[2]["eval_loss"] == pytest.approx(results[1]["eval_loss"], abs=1e-4)
    assert results[2]["eval_accuracy"] == results[1]["eval_accuracy"]
    assert (results[1]["eval_shards"], results[2]["eval_shards"]) == (1, 2)  # each rank evaluated half
    config = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert config["plan"]["distributed"] == "ddp" and config["plan"]["per_device_batch"] == 8
    assert (tmp_path / "r2" / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodrop", "r1", "r2"]


def test_tensorflow_refuses_a_torchrun_group(tmp_path, tiny_checkpoint, tiny_data):
    pytest.importorskip("tensorflow")
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--backend", "tensorflow", "--model", str(tiny_checkpoint),
                          "--dataset", str(tiny_data), "--nproc", "2", "-o", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "--nproc launches torchrun, for the torch backend" in out.stderr and "TF_CONFIG" in out.stderr


def test_sharded_evaluation_reassembles_the_whole_set(registry, tiny_checkpoint, tiny_data):
    """Each rank computes the logits of every world-th row; gathering them in rank order gives the
    metrics of evaluating everything in one process (here the two ranks' shards are made in-process)."""
    import numpy as np

    from tl.data.tables import load_examples
    from tl.data.tokenization import Tokenizer
    from tl.evaluation.evaluate import evaluate
    from tl.interfaces import HeadSpec
    from tl.models.inference import dataset_logits, encode
    from tl.plugins.registry import get_backend
    from tl.training.distributed import World

    examples = load_examples(tiny_data, "text", "label")
    labels = ("negative", "positive")
    tokenizer = Tokenizer.from_dir(tiny_checkpoint)
    enc = encode(tokenizer, examples.texts[:101], None, 32,
                 np.array([labels.index(x) for x in examples.labels[:101]]))
    model = get_backend(registry, "torch").build_model(tiny_checkpoint, HeadSpec("sequence_classification", labels),
                                                       tokenizer, init="pretrained", seed=0, info={})
    task = registry.get("task", "sentiment")
    whole = evaluate(model, enc, labels, task, 32)
    shards = [dataset_logits(model, enc.take(np.arange(r, len(enc), 3))) for r in range(3)]
    seen = []

    def gather(mine):
        seen.append(mine.shape[0])
        return shards

    sharded = evaluate(model, enc, labels, task, 32, gather, World(rank=1, size=3, mode="ddp"))
    assert seen == [34]  # rank 1 of 3 computed rows 1, 4, ..., 100 only
    assert sharded["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    assert sharded["eval_accuracy"] == whole["eval_accuracy"]
    assert sharded["eval_confusion_matrix"] == whole["eval_confusion_matrix"]


def test_world_from_tf_config_counts_tasks_per_host(monkeypatch):
    from tl_tensorflow.backend import TensorflowBackend

    cluster = {"chief": ["node-a:2000"], "worker": ["node-a:2001", "node-b:2000", "node-b:2001", "node-b:2002"]}
    for task, rank, local in ((("chief", 0), 0, 2), (("worker", 0), 1, 2), (("worker", 2), 3, 3)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
        world = TensorflowBackend().process_group()
        assert (world.mode, world.size, world.rank, world.local_size) == ("multi-worker", 5, rank, local)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    from tl.errors import UsageError

    with pytest.raises(UsageError, match="TF_CONFIG is not valid JSON"):
        TensorflowBackend().process_group()


def test_process_groups_come_from_each_backend(monkeypatch):
    """torchrun's variables make a "ddp" group for every backend; a TF_CONFIG of one task is no group."""
    from tl.training.distributed import World
    from tl_tensorflow.backend import TensorflowBackend
    from tl_torch.backend import TorchBackend

    for name in ("TF_CONFIG", "WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert World.from_env() == TorchBackend().process_group() == TensorflowBackend().process_group() == World()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    world = World.from_env()
    assert (world.mode, world.size, world.rank, world.local_size) == ("ddp", 4, 3, 2)
    assert TorchBackend().process_group() == world
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["node-a:2000"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert TensorflowBackend().process_group() == world


def test_launch_is_torchrun_for_torch_and_refused_for_tensorflow(monkeypatch):
    import os

    from tl.errors import UsageError
    from tl_tensorflow.backend import TensorflowBackend
    from tl_torch.backend import TorchBackend

    with pytest.raises(UsageError, match=r"^--nproc launches torchrun, for the torch backend; to train tensorflow "
                                         r"on several workers, start one `tl run` per worker with TF_CONFIG"):
        TensorflowBackend().launch(2, ["run"])
    execs = []
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append((path, argv)))
    TorchBackend().launch(3, ["run", "--epochs", "1"])
    assert execs == [(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc_per_node=3", "-m", "tl", "run", "--epochs", "1"])]


def test_torch_device_is_decided_once_by_configure(tiny_checkpoint):
    import torch

    from tl.data.tokenization import Tokenizer
    from tl.interfaces import HeadSpec
    from tl_torch.backend import TorchBackend

    backend = TorchBackend()
    backend.configure(None, device="cpu")
    assert backend.device == torch.device("cpu")
    model = backend.build_model(tiny_checkpoint, HeadSpec("sequence_classification", ("a", "b")),
                                Tokenizer.from_dir(tiny_checkpoint), init="pretrained", seed=0, info={})
    assert model.device == torch.device("cpu") and next(model.module.parameters()).device == model.device
    assert backend.max_device_batch(model, 32, 64) is None  # memory is not the limit on the CPU
