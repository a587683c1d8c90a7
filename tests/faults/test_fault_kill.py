"""Crash-safe checkpoints and exact resume, on each backend: a run killed (SIGKILL) or stopped
(SIGTERM) at an exact step (``TL_INJECT_FAULT``, the fault suite's switch) and resumed ends with the
same final metrics as the uninterrupted run (CPU, same threads); a damaged newest checkpoint
(truncated, one bit flipped, state.json corrupt) is skipped with one warning and the run resumes
from the previous good one, to the same metrics.

Both backends restore weights, optimizer slots and step counter, schedule, every RNG state (torch's
generators; Keras' dropout seed-generator states) and the position in the epoch's data order, so on
CPU with the same thread count the resumed run is bit-identical on both (measured: equal to the last
digit on torch and TensorFlow); the tests therefore ask for equality."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.faults import ENV
from tl.training.resume import Checkpointer

from conftest import BACKENDS, slow_on
from tinybert import synthetic_rows, write_csv

#: 600 rows: 464 train after the hash hold-out, 116 steps of 4 per epoch, 348 steps in 3 epochs
ROWS, EPOCHS, STEPS = 600, 3, 348
#: the reference run keeps its last three checkpoints: step 336 and 343 (every 7 steps) and 348 (the end)
LAST, BEFORE_LAST = "step-00000348", "step-00000343"


def _env(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if fault:
        env[ENV] = fault
    return env


class Reference:
    """The uninterrupted run, started in the background: it trains (one thread) on the other core
    while the first test's run trains, and ``metrics()`` waits for it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tl", "run", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env())
        self._metrics: dict | None = None

    def metrics(self) -> dict:
        if self._metrics is None:
            out, err = self.proc.communicate(timeout=600)
            assert self.proc.returncode == 0, err[-3000:]
            self._metrics = json.loads(out.strip().splitlines()[-1])
        return self._metrics

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture(scope="module", params=BACKENDS)
def setup(request, tmp_path_factory, tiny_checkpoint):
    d = tmp_path_factory.mktemp(f"resume-{request.param}")
    data = write_csv(d / "data.csv", synthetic_rows(ROWS, seed=11))
    args = ["--backend", request.param, "--model", str(tiny_checkpoint), "--dataset", str(data), "--epochs",
            str(EPOCHS), "--batch-size", "4", "--lr", "2e-3", "--max-length", "32", "--precision", "fp32",
            "--threads", "1", "--save-every", "7", "--keep-checkpoints", "3", "-q", "--json"]
    reference = Reference(*args, "-o", str(d / "reference"))
    yield d, args, reference
    reference.close()


def tl_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tl", *args], capture_output=True, text=True, timeout=600, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> None:
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "train_loss", "train_steps"):
        assert a[key] == b[key], (key, a[key], b[key])


def _steps(run_dir) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*"))


# one kill point per backend by default (seed 1: step 146, in epoch 2 of 3); seeds 2 and 3 (steps 244
# and 237, in epoch 3) with -m slow
@pytest.mark.guarantee(fault="Process killed (SIGKILL) at a random training step",
                       tl="tl run --resume continues from the newest checkpoint",
                       kept="every finished checkpoint; final metrics identical to an uninterrupted run")
@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_sigkill_then_resume_gives_identical_metrics(setup, seed):
    d, args, reference = setup
    run_dir = d / f"killed{seed}"
    target = int(np.random.default_rng(seed).integers(20, STEPS - 60))
    killed = subprocess.run([sys.executable, "-m", "tl", "run", *args, "-o", str(run_dir)], capture_output=True,
                            text=True, timeout=600, env=_env(f"sigkill@step:{target}"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # killed right after step `target`, before its checkpoint: the newest is the last one due before it
    assert _steps(run_dir)[-1] == max(s for s in range(1, target) if s % 7 == 0 or s % (STEPS // EPOCHS) == 0)
    assert not (run_dir / "metrics.json").exists()
    resumed = tl_json("run", "--resume", str(run_dir), "--json")
    _same(resumed, reference.metrics())
    assert (run_dir / "model" / "model.safetensors").is_file()


#: the cases below on tensorflow with -m slow: the kill-and-resume path above covers tensorflow's
#: checkpoints by default; the fallback (tl.training.resume) and the stop at a step boundary
#: (tl.training.signals and the core's Ledger) are the core's, run by default on torch
TORCH_BY_DEFAULT = slow_on("tensorflow")
TORCH_ONLY = [b for b in BACKENDS if b == "torch"]


@pytest.mark.guarantee(fault="SIGTERM (or Ctrl-C) during training",
                       tl="writes a checkpoint at the step boundary, exits 130 and prints the resume command",
                       kept="the step's checkpoint; final metrics identical after tl run --resume")
@pytest.mark.parametrize("setup", TORCH_BY_DEFAULT, indirect=True)
def test_sigterm_checkpoints_and_prints_the_resume_command(setup):
    d, args, reference = setup
    run_dir = d / "terminated"
    stopped = subprocess.run([sys.executable, "-m", "tl", "run", *args, "-o", str(run_dir)], capture_output=True,
                             text=True, timeout=600, env=_env("sigterm@step:10"))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert f"Resume with: tl run --resume {run_dir}" in stopped.stderr
    assert _steps(run_dir) == [7, 10]  # the periodic one, and the stop's at the step it was asked at
    _same(tl_json("run", "--resume", str(run_dir), "--json"), reference.metrics())


def _damaged_copy(d, reference: Reference, name: str):
    """The finished reference run as a run killed right after its final checkpoint: no model, no
    metrics.json (the last three checkpoints, history and config.json are the run's own)."""
    reference.metrics()
    run_dir = d / name
    shutil.copytree(d / "reference", run_dir)
    shutil.rmtree(run_dir / "model")
    (run_dir / "metrics.json").unlink()
    return run_dir


def _flip_bit(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit, mid-file: the size stays, so only the hash can tell
    path.write_bytes(bytes(data))


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut mid-write


def _corrupt_state(path) -> None:
    (path.parent / "state.json").write_text('{"step": 348, "epoch"', encoding="utf-8")


DAMAGES = {
    "truncated": (_truncate, "model.safetensors: truncated"),
    "bit-flip": (_flip_bit, "model.safetensors: sha256 mismatch"),
    "state-json": (_corrupt_state, "state.json unreadable"),
}


def _resume_in_process(run_dir) -> tuple[dict, list[str]]:
    """``tl run --resume`` in this process (the tl and framework imports paid once): metrics, stderr lines."""
    out = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "-q", "--json"])
    assert out.exit_code == 0, (out.stderr, out.exception)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr.splitlines()


@pytest.mark.parametrize("damage", [
    pytest.param(name, marks=pytest.mark.guarantee(
        fault=f"Newest checkpoint damaged on disk ({what})",
        tl="skips it with one warning naming it and resumes from the previous good checkpoint",
        kept="final metrics identical to an uninterrupted run"))
    for name, what in (("truncated", "truncated"), ("bit-flip", "one bit flipped"),
                       ("state-json", "state.json corrupt"))])
@pytest.mark.parametrize("setup", TORCH_BY_DEFAULT, indirect=True)
def test_damaged_newest_checkpoint_falls_back(setup, damage, monkeypatch):
    d, _, reference = setup
    monkeypatch.delenv(ENV, raising=False)
    run_dir = _damaged_copy(d, reference, f"damaged-{damage}")
    spoil, problem = DAMAGES[damage]
    spoil(run_dir / "checkpoints" / LAST / "model.safetensors")
    assert Checkpointer(run_dir).latest(warn=lambda message: None).path.name == BEFORE_LAST
    metrics, err = _resume_in_process(run_dir)
    warnings = [line for line in err if line.startswith("tl: warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"tl: warning: checkpoint {LAST} is damaged ({problem}")
    assert warnings[0].endswith(f"); resuming from {BEFORE_LAST}")
    assert metrics["warnings"] == [warnings[0].removeprefix("tl: warning: ")]
    _same(metrics, reference.metrics())


@pytest.mark.guarantee(fault="Every checkpoint of a run damaged",
                       tl="tl run --resume refuses in one line (exit 2) and says how to start over",
                       kept="the run directory as it was")
@pytest.mark.parametrize("setup", TORCH_ONLY, indirect=True)
def test_no_good_checkpoint_is_a_one_line_error(setup, monkeypatch):
    d, _, reference = setup
    monkeypatch.delenv(ENV, raising=False)
    run_dir = _damaged_copy(d, reference, "all-damaged")
    ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
    for spoil, ckpt in zip((_flip_bit, _truncate, _corrupt_state), reversed(ckpts), strict=True):
        spoil(ckpt / "model.safetensors")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    out = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "-q"])
    assert out.exit_code == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"Error: {run_dir}: checkpoints {ckpts[2].name} (model.safetensors: sha256 "
                                 f"mismatch), {ckpts[1].name} (model.safetensors: truncated")
    assert "there is no older good one; nothing to resume from: start the run over with tl run without --resume" \
        in out.stderr and f"--output {run_dir} --overwrite" in out.stderr
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_checkpoints_without_hashes_are_checked_by_size(tmp_path):
    """A checkpoint written before state.json recorded hashes still resumes (sizes checked only)."""

    def write(directory):
        (directory / "model.safetensors").write_bytes(bytes(range(256)) * 4)

    ckpt = Checkpointer(tmp_path)
    path = ckpt.save(5, 0, 5, write)
    state = json.loads((path / "state.json").read_text())
    assert set(state["sha256"]) == {"model.safetensors"}
    del state["sha256"]
    (path / "state.json").write_text(json.dumps(state))
    _flip_bit(path / "model.safetensors")
    assert ckpt.latest().path == path  # undetectable without a hash, as before
    _truncate(path / "model.safetensors")
    assert ckpt.latest(warn=lambda message: None) is None


def test_resume_refuses_changed_options_and_finished_runs(setup):
    d, _, reference = setup
    assert reference.metrics()["train_steps"] == STEPS  # finished, and the kill points above lie inside it
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--resume", str(d / "reference"), "--epochs", "5"],
                         capture_output=True, text=True, env=_env())
    assert out.returncode == 2 and "drop --epochs" in out.stderr
    out = subprocess.run([sys.executable, "-m", "tl", "run", "--resume", str(d / "reference")],
                         capture_output=True, text=True, env=_env())
    assert out.returncode == 2 and f"already finished all {EPOCHS} epochs" in out.stderr
