"""Two `tl run` processes given one run directory: the live run holds ``.tl-run.lock`` (flock) for its
whole life, and a second `tl run -o DIR`, `tl run -o DIR --overwrite` or `tl run --resume DIR` is
refused with one line, exit 2, before anything in DIR changes; the live run trains on as if alone. The
kernel drops the lock when a run dies, so a SIGKILLed run's directory resumes.

The live run is stopped mid-training (``TL_INJECT_FAULT=sigstop@step:N``, SIGSTOP) while the others
try, so it is alive and holding its directory for exactly as long as the test needs; let go, it trains
on and is killed (``sigkill@step:M``), and `tl run --resume` finishes it. (One `tl run` process: a
second one, to finish undisturbed beside the killed one, would double the test's time.)"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.training.rundir import LOCK_NAME, RunLock, prepare_run_dir

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="watches the process state in /proc")

GUARANTEE = {"fault": "Two tl runs given the same run directory (--output, --overwrite, --resume)",
             "tl": "the live run holds a lock; the other is refused in one line (pid, start time), exit 2",
             "kept": "the live run's directory, untouched; a killed run's lock is gone with it"}


def _args(checkpoint, data) -> list[str]:
    return ["--model", str(checkpoint), "--dataset", str(data), "--epochs", "2", "--batch-size", "16", "--lr", "5e-3",
            "--max-length", "32", "--precision", "fp32", "--threads", "1", "--max-train-samples", "96",
            "--save-every", "1", "-q"]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _snapshot(directory) -> dict:
    """Every entry under ``directory``: its kind, size, mtime and (files) content hash."""
    out = {}
    for p in sorted(directory.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(directory))] = (p.is_dir(), st.st_size, st.st_mtime_ns,
                                              None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.mark.guarantee(**GUARANTEE)
def test_a_live_run_directory_is_refused_to_a_second_run(tiny_checkpoint, tiny_data, tmp_path):
    args = _args(tiny_checkpoint, tiny_data)
    live = tmp_path / "live"
    # stops itself after optimizer step 2 (checkpoints 1 and 2 written), then, let go, dies by SIGKILL after step 7
    proc = subprocess.Popen([sys.executable, "-m", "tl", "run", *args, "-o", str(live)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TL_INJECT_FAULT="sigstop@step:2;sigkill@step:7"))
    try:
        importlib.import_module("tl_torch.backend")  # this process's own start-up, while the run starts
        deadline = time.time() + 300
        while proc.poll() is None and _state(proc.pid) != "T" and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and _state(proc.pid) == "T", proc.stderr.read() if proc.poll() else "not stopped"
        holder = json.loads((live / LOCK_NAME).read_text())
        assert holder["pid"] == proc.pid and (live / "config.json").is_file()
        before = _snapshot(live)
        started = time.strftime("%H:%M:%S", time.localtime(holder["started"]))
        for extra, option, then in (
            (["-o", str(live)], "--output", "choose another --output or wait for it to finish"),
            (["-o", str(live), "--overwrite"], "--output", "choose another --output or wait for it to finish"),
            (["--resume", str(live)], "--resume", "wait for it to finish (or stop it), then resume"),
        ):
            result = CliRunner().invoke(cli, ["run", *(args if option == "--output" else []), *extra])
            assert result.exit_code == 2, result.output
            assert result.output.strip().splitlines() == [
                f"Error: {option} {live} is in use by another tl run (pid {proc.pid}, started {started}); {then}"]
            assert _snapshot(live) == before  # nothing created, truncated or rewritten, not even the lock file
        os.kill(proc.pid, signal.SIGCONT)  # the live run goes on as if alone ...
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL  # ... until killed after step 7
        steps = sorted(int(p.name.split("-")[1]) for p in (live / "checkpoints").glob("step-*"))
        assert steps[-1] == 6 and (live / LOCK_NAME).is_file()  # trained on; the dead run's lock file is left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = CliRunner().invoke(cli, ["run", "--resume", str(live)])  # the kernel dropped the dead run's lock
    assert result.exit_code == 0, result.output
    metrics = json.loads((live / "metrics.json").read_text())
    assert metrics["train_steps"] == 12 and 0 <= metrics["eval_accuracy"] <= 1
    history = [json.loads(line) for line in (live / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history if row["event"] == "epoch"] == [1, 2]
    assert (live / "model" / "model.safetensors").is_file() and not (live / LOCK_NAME).exists()


@pytest.mark.guarantee(**GUARANTEE)
def test_a_dead_runs_lock_file_counts_as_tls_own(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text('{"pid": 1, "host": "elsewhere", "started": 0}')  # flock: not held by anyone
    path, lock = prepare_run_dir(str(run_dir), "sentiment", "torch")  # not "not empty"
    assert path == run_dir and json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    (run_dir / "config.json").write_text("{}")
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()
    with pytest.raises(Exception, match=re.escape(f"--output {run_dir} already exists and is not empty")):
        prepare_run_dir(str(run_dir), "sentiment", "torch")
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]  # the refusal created nothing
    _, lock = prepare_run_dir(str(run_dir), "sentiment", "torch", overwrite=True)
    with pytest.raises(Exception, match=f"in use by another tl run \\(pid {os.getpid()}, started "):
        prepare_run_dir(str(run_dir), "sentiment", "torch", overwrite=True)
    lock.release()


@pytest.mark.guarantee(**GUARANTEE)
def test_without_flock_the_lock_file_is_exclusive_and_a_dead_pid_is_taken_over(tmp_path):
    """The fallback where ``fcntl`` is missing (Windows): O_CREAT | O_EXCL, the holder's pid checked."""
    lock = RunLock.acquire(tmp_path, flock=False)
    with pytest.raises(Exception, match=f"--output {tmp_path} is in use by another tl run \\(pid {os.getpid()}"):
        RunLock.acquire(tmp_path, flock=False)
    lock.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": 0}))
    lock = RunLock.acquire(tmp_path, "--resume", flock=False)  # the dead run's file is taken over
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert list(tmp_path.iterdir()) == []
