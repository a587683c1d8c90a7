"""Crash-safe checkpoints and exact resume, on each backend: a run killed with SIGKILL at a random
step and resumed ends with the same final metrics as the uninterrupted run (CPU, same threads).

Both backends restore weights, optimizer slots and step counter, schedule, every RNG state (torch's
generators; Keras' dropout seed-generator states) and the position in the epoch's data order, so on
CPU with the same thread count the resumed run is bit-identical on both (measured: equal to the last
digit on torch and TensorFlow); the tests therefore ask for equality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tl.training.resume import Checkpointer

from conftest import BACKENDS
from tinybert import synthetic_rows, write_csv


@pytest.fixture(scope="module", params=BACKENDS)
def setup(request, tmp_path_factory, tiny_checkpoint):
    d = tmp_path_factory.mktemp(f"resume-{request.param}")
    data = write_csv(d / "data.csv", synthetic_rows(1200, seed=11))
    args = ["--backend", request.param, "--model", str(tiny_checkpoint), "--dataset", str(data), "--epochs", "3",
            "--batch-size", "4", "--lr", "2e-3", "--max-length", "32", "--precision", "fp32", "--threads", "1",
            "--save-every", "7", "--keep-checkpoints", "3", "-q", "--json"]
    reference = tl_json("run", *args, "-o", str(d / "reference"))
    return d, args, reference


def tl_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tl", *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> None:
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "train_loss", "train_steps"):
        assert a[key] == b[key], (key, a[key], b[key])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_gives_identical_metrics(setup, seed):
    d, args, reference = setup
    run_dir = d / f"killed{seed}"
    target = int(np.random.default_rng(seed).integers(20, 400))
    proc = subprocess.Popen([sys.executable, "-m", "tl", "run", *args, "-o", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*")]
        if steps and max(steps) >= target:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; lower the target step"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    resumed = tl_json("run", "--resume", str(run_dir), "--json")
    _same(resumed, reference)
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_truncated_newest_checkpoint_falls_back(setup):
    d, args, reference = setup
    run_dir = d / "truncated"
    proc = subprocess.Popen([sys.executable, "-m", "tl", "run", *args, "-o", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(list((run_dir / "checkpoints").glob("step-*"))) < 3:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
    newest = ckpts[-1] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut mid-write
    latest = Checkpointer(run_dir).latest()
    assert latest is not None and latest.path == ckpts[-2]
    _same(tl_json("run", "--resume", str(run_dir), "--json"), reference)


def test_sigterm_checkpoints_and_prints_the_resume_command(setup):
    d, args, reference = setup
    run_dir = d / "terminated"
    proc = subprocess.Popen([sys.executable, "-m", "tl", "run", *args, "-o", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not list((run_dir / "checkpoints").glob("step-*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"Resume with: tl run --resume {run_dir}" in err
    _same(tl_json("run", "--resume", str(run_dir), "--json"), reference)


def test_resume_refuses_changed_options_and_finished_runs(setup):
    d, _, _ = setup
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--resume", str(d / "reference"), "--epochs", "5"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "drop --epochs" in out.stderr
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--resume", str(d / "reference")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "already finished all 3 epochs" in out.stderr
