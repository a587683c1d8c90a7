"""GPU code paths (CUDA autocast, fp16 loss scaling, NCCL). Skipped without a CUDA GPU, never faked."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tinybert import make_checkpoint


def _cuda_devices() -> int:
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_cuda_devices() == 0, reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "fp32"])
def test_cuda_training_by_precision(tmp_path, tiny_data, precision):
    ckpt = make_checkpoint(tmp_path / "ck")
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--backend", "torch", "--model", str(ckpt), "--dataset",
                          str(tiny_data), "--epochs", "4", "--lr", "5e-3", "--batch-size", "16", "--max-length", "32",
                          "--precision", precision, "-o", str(tmp_path / "r"), "-q", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    plan = json.loads((tmp_path / "r" / "config.json").read_text())["plan"]
    assert plan["device"] == "cuda"
    assert m["eval_accuracy"] >= 0.9
    if precision == "fp16":
        assert plan["precision"] == "fp16" and plan["loss_scaling"]


@pytest.mark.skipif(_cuda_devices() < 2, reason="needs two CUDA GPUs")
def test_nccl_two_processes(tmp_path, tiny_data):
    ckpt = make_checkpoint(tmp_path / "ck", dropout=0.0)
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--backend", "torch", "--model", str(ckpt), "--dataset",
                          str(tiny_data), "--epochs", "2", "--nproc", "2", "--precision", "fp32", "-o",
                          str(tmp_path / "r"), "-q", "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["plan"]["distributed"] == "ddp"


def test_probe_does_not_initialise_cuda():
    code = ("import torch; from tl_torch.backend import TorchBackend; p = TorchBackend().probe(); "
            "print(len(p.accelerators), torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(_cuda_devices()), "False"]


def _tf_gpus() -> int:
    if importlib.util.find_spec("tensorflow") is None:
        return 0
    out = subprocess.run([sys.executable, "-c", "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"],
                         capture_output=True, text=True, timeout=300)
    return int(out.stdout.split()[-1]) if out.returncode == 0 else 0


@pytest.mark.parametrize("gpus", [1, 2])
def test_tensorflow_on_gpus(tmp_path, tiny_data, gpus):
    """One GPU, or MirroredStrategy over two (the plan turns it on for 2+ visible GPUs)."""
    if _tf_gpus() < gpus:
        pytest.skip(f"TensorFlow sees fewer than {gpus} GPU(s)")
    import os

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(gpus))}
    ckpt = make_checkpoint(tmp_path / "ck")
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--backend", "tensorflow", "--model", str(ckpt),
                          "--dataset", str(tiny_data), "--epochs", "4", "--lr", "5e-3", "--batch-size", "16",
                          "--max-length", "32", "-o", str(tmp_path / "r"), "-q", "--json"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    plan = json.loads((tmp_path / "r" / "config.json").read_text())["plan"]
    assert plan["device"] == "cuda" and plan["replicas"] == gpus
    assert plan["distributed"] == ("mirrored" if gpus > 1 else "none")
    assert json.loads(out.stdout.strip().splitlines()[-1])["eval_accuracy"] >= 0.9
