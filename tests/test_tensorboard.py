"""TensorBoard event files (``runs/<id>/tensorboard/``), read back with TensorBoard's own reader: the
same tags on both backends, at the steps the run logged, with history.jsonl's numbers; a resumed run
shows each step once; an unwritable event directory costs one warning, not the run; writing events
imports no framework."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.training.schedule import learning_rate
from tl.training.tensorboard import TENSORBOARD_DIR

from conftest import BACKENDS, FAST

STEP_TAGS = {"train/loss", "train/learning_rate", "train/samples_per_second"}
EPOCH_TAGS = {"train/epoch_loss", "eval/loss", "eval/accuracy", "eval/macro_f1"}


def read_scalars(run_dir, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (``purge``: orphaned data dropped, as its server
    does by default)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0}, purge_orphaned_data=purge)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()]


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-6, abs=1e-9)  # TensorBoard keeps float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_read_back_with_the_runs_tags_steps_and_numbers(fast_run, backend):
    result = fast_run(backend)  # conftest.FAST: 4 epochs, log every 10 steps
    scalars = read_scalars(result.run_dir)
    assert set(scalars) == STEP_TAGS | EPOCH_TAGS  # the same set on both backends
    total = result.metrics["train_steps"]
    per_epoch = total // FAST["epochs"]
    assert total == 80 and per_epoch == 20
    log_steps = [s for s in range(1, total + 1) if s % 10 == 0 or s == total]
    epoch_steps = [per_epoch * (e + 1) for e in range(FAST["epochs"])]
    for tag in STEP_TAGS:
        assert [s for s, _ in scalars[tag]] == log_steps, tag
    for tag in EPOCH_TAGS:
        assert [s for s, _ in scalars[tag]] == epoch_steps, tag

    rows = history(result.run_dir)
    steps = [r for r in rows if r["event"] == "step"]
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == log_steps and [r["step"] for r in epochs] == epoch_steps
    for tag, key in (("train/loss", "loss"), ("train/learning_rate", "learning_rate"),
                     ("train/samples_per_second", "samples_per_second")):
        assert all(close(v, r[key]) for (_, v), r in zip(scalars[tag], steps, strict=True)), tag
    for tag, key in (("train/epoch_loss", "train_loss"), ("eval/loss", "eval_loss"),
                     ("eval/accuracy", "eval_accuracy"), ("eval/macro_f1", "eval_macro_f1")):
        assert all(close(v, r[key]) for (_, v), r in zip(scalars[tag], epochs, strict=True)), tag
    # the schedule the backends train with: warm-up over the first 10% of the steps, then linear decay
    for step, value in scalars["train/learning_rate"]:
        assert close(value, learning_rate(FAST["lr"], step, total, FAST["warmup_ratio"])), step
    assert scalars["train/learning_rate"][0][1] > scalars["train/learning_rate"][-1][1] > 0
    # the final evaluation is the last epoch's
    for tag, key in (("eval/accuracy", "eval_accuracy"), ("eval/macro_f1", "eval_macro_f1"), ("eval/loss", "eval_loss")):
        assert close(scalars[tag][-1][1], result.metrics[key]), tag


def _tiny_run(tiny_checkpoint, tiny_data, out, *extra: str):
    args = ["run", "--backend", "torch", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data),
            "--batch-size", "8", "--max-length", "16", "--max-eval-samples", "16", "--precision", "fp32",
            "--lr", "5e-3", "--threads", "1", "-q", "--json", "-o", str(out), *extra]
    return CliRunner().invoke(cli, args)


def steps(scalars: dict, tags) -> dict[str, list[int]]:
    return {tag: [s for s, _ in scalars[tag]] for tag in tags}


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_a_resumed_run_shows_each_step_once(fast_run, tmp_path):
    """The finished fast run as a run killed after step 80 was logged but before its checkpoint was
    written (the newest checkpoint: step 60's), resumed: the killed process's steps 70 and 80 are dropped
    by TensorBoard's restart purge, step 60's epoch evaluation stays, and every tag shows each step once,
    with the resumed history's numbers."""
    run_dir = shutil.copytree(fast_run("torch").run_dir, tmp_path / "run")
    shutil.rmtree(run_dir / "checkpoints" / "step-00000080")
    shutil.rmtree(run_dir / "model")
    (run_dir / "metrics.json").unlink()
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config["config"]["threads"] = 1  # 2 threads on a busy 2-core machine wait on each other (tl.training.plan)
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "-q", "--json"])
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    assert len(list((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2  # the killed run's kept
    log_steps, epoch_steps = [10, 20, 30, 40, 50, 60, 70, 80], [20, 40, 60, 80]
    unpurged = read_scalars(run_dir, purge=False)  # both files as written: 70 and 80 twice
    assert steps(unpurged, STEP_TAGS) == {tag: [*log_steps, 70, 80] for tag in STEP_TAGS}
    assert steps(unpurged, EPOCH_TAGS) == {tag: [*epoch_steps, 80] for tag in EPOCH_TAGS}
    scalars = read_scalars(run_dir)  # as TensorBoard shows them
    assert steps(scalars, STEP_TAGS) == {tag: log_steps for tag in STEP_TAGS}
    assert steps(scalars, EPOCH_TAGS) == {tag: epoch_steps for tag in EPOCH_TAGS}
    rows = history(run_dir)
    for tag, key, event in (("train/loss", "loss", "step"), ("eval/accuracy", "eval_accuracy", "epoch")):
        chosen = [r for r in rows if r["event"] == event]
        assert all(close(v, r[key]) for (_, v), r in zip(scalars[tag], chosen, strict=True)), tag


def test_two_logs_started_in_one_second_keep_both_files(tmp_path):
    """A run resumed by the same process within the second gets a file of its own (the earlier one is
    not truncated), and TensorBoard reads the files in the order they were made."""
    from tl.training.tensorboard import EventLog

    first = EventLog(tmp_path / TENSORBOARD_DIR, pytest.fail)
    first.scalars(10, {"train/loss": 1.0})
    first.scalars(20, {"train/loss": 2.0})
    first.close()
    second = EventLog(tmp_path / TENSORBOARD_DIR, pytest.fail, resumed_at=10)
    second.scalars(20, {"train/loss": 3.0})
    second.close()
    assert len(list((tmp_path / TENSORBOARD_DIR).iterdir())) == 2
    assert read_scalars(tmp_path)["train/loss"] == [(10, 1.0), (20, 3.0)]


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_an_unwritable_event_directory_is_one_warning_and_the_run_finishes(tiny_checkpoint, tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / TENSORBOARD_DIR).write_text("the user's own file\n", encoding="utf-8")  # mkdir fails on it
    out = _tiny_run(tiny_checkpoint, tiny_data, run_dir, "--epochs", "1", "--max-train-samples", "16",
                    "--overwrite")
    assert out.exit_code == 0, (out.output, out.exception)
    warnings = [line for line in out.stderr.splitlines() if line.startswith("tl: warning: TensorBoard")]
    assert len(warnings) == 1 and warnings[0].startswith("tl: warning: TensorBoard events not written ("), warnings
    assert warnings[0].endswith("the run goes on without them")
    assert "File exists" in warnings[0]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert warnings[0].removeprefix("tl: warning: ") in metrics["warnings"]
    assert (run_dir / TENSORBOARD_DIR).read_text(encoding="utf-8") == "the user's own file\n"  # never lost
    assert (run_dir / "metrics.json").is_file() and (run_dir / "model" / "model.safetensors").is_file()


def test_writing_events_imports_no_framework(tmp_path):
    code = (
        "import sys, pathlib\n"
        "from tl.training.tensorboard import EventLog\n"
        f"log = EventLog(pathlib.Path({str(tmp_path)!r}), print)\n"
        "log.scalars(1, {'train/loss': 0.5, 'eval/accuracy': None}); log.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'tensorboard')"
        " and not m.startswith('tensorboard.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['tensorboard']"  # TensorBoard's protos only, no framework
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
