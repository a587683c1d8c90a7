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
