"""``tl tune`` (Optuna over normal runs) and ``validation_split``: real tiny trials, the study read
back with Optuna, pruning, a killed tuning resumed, and the best recipe taken by ``tl run``."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tl.cli import cli

from conftest import slow_on

optuna = pytest.importorskip("optuna")

#: The tiny model on a small share of ``tiny_data``: ~51 training and ~13 validation rows per trial.
TINY = ["--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16", "--max-length", "16",
        "--precision", "fp32"]


def base(checkpoint: Path, data: Path, backend: str = "torch") -> list[str]:
    return ["tune", "--backend", backend, "--model", str(checkpoint), "--dataset", str(data), *TINY]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def load_study(directory: Path):
    return optuna.load_study(study_name="tl-tune", storage=f"sqlite:///{directory / 'study.db'}")


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "status.json").read_text())["status"]


# --- validation_split -------------------------------------------------------------------------------

def test_validation_split_holds_out_part_of_the_training_subset_only(tiny_data, registry, tmp_path):
    from tl.data.examples import is_eval_row
    from tl.data.loading import load_splits
    from tl.training.config import RunConfig

    def config(**fields) -> RunConfig:
        return RunConfig(dataset=str(tiny_data), text_column="text", label_column="label", **fields)

    first, again = (load_splits(config(max_train_samples=200, validation_split=0.25), registry) for _ in range(2))
    assert (first.train.texts, first.eval.texts) == (again.train.texts, again.eval.texts)  # deterministic
    assert len(first.train) + len(first.eval) == 200  # --max-train-samples first, then the hold-out
    assert 30 <= len(first.eval) <= 70  # ~25% of 200, by a hash salted unlike the evaluation split's
    assert not set(first.train.texts) & set(first.eval.texts)
    assert not any(is_eval_row(t) for t in first.train.texts + first.eval.texts)  # no evaluation row used
    assert first.split.startswith("validation:")
    # with --eval-dataset all of a local --dataset is training data; the evaluation file is not even read
    whole = load_splits(config(validation_split=0.25, eval_dataset=str(tmp_path / "never-read.csv")), registry)
    assert len(whole.train) + len(whole.eval) == 400
    capped = load_splits(RunConfig(dataset=str(tiny_data), text_column="text", label_column="label",
                                   max_eval_samples=10, validation_split=0.25), registry)
    assert len(capped.eval) == 10  # --max-eval-samples caps what is evaluated, the validation split here


# --- tl tune ------------------------------------------------------------------------------------------

def test_tune_prunes_a_poor_trial_after_its_first_epoch(tiny_checkpoint, tiny_data, tmp_path):
    # lr 1e-9 leaves the model as initialised, 5e-3 moves it: their epoch-1 validation losses differ. The
    # sampler seeded with 0 draws 5e-3, 1e-9, 5e-3: trial 0 finishes (the pruner's one startup trial for
    # 3 trials), trial 1 is better, and trial 2, worse than the median of the two, is pruned.
    out = tmp_path / "tune"
    result = invoke([*base(tiny_checkpoint, tiny_data), "--trials", "3", "--epochs", "2", "--metric", "loss",
                     "--param", "lr=choice(1e-9,5e-3)", "--no-final", "-o", str(out)])
    assert result.exit_code == 0, result.output
    study = load_study(out)
    assert study.direction.name == "MINIMIZE"
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, f"nothing pruned (the seeded sampler's draws changed?): {[t.params for t in study.trials]}"
    for t in pruned:
        run_dir = out / "trials" / str(t.number)
        assert status(run_dir) == "pruned" and not (run_dir / "model").exists()
        epochs = [r for r in map(json.loads, (run_dir / "history.jsonl").read_text().splitlines())
                  if r["event"] == "epoch"]
        assert len(epochs) == 1 and list(t.intermediate_values) == [1]
        assert f"trial {t.number} [" in result.output and "pruned after epoch 1" in result.output
    assert not (out / "best").exists()  # --no-final


def test_tune_records_failed_trials_and_fails_when_none_finished(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_INJECT_FAULT", "enospc@model")  # each trial's model cannot be saved: the run fails
    out = tmp_path / "tune"
    result = CliRunner().invoke(cli, [*base(tiny_checkpoint, tiny_data), "--trials", "1", "--epochs", "1",
                                      "--param", "lr=loguniform(1e-3,1e-2)", "-o", str(out)])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("trial 0 [1/1]")]
    assert len(failed) == 1 and "| failed: " in failed[0] and "No space left on device" in failed[0]
    assert result.output.splitlines()[-1].startswith("Error: no trial finished (1 tried; first error: ")
    assert states(load_study(out)) == ["FAIL"] and status(out / "trials" / "0") == "failed"
    assert not (out / "best").exists() and not (out / "best.toml").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_tune_killed_and_resumed_trials_best_recipe_and_final_run(tiny_checkpoint, tiny_data, tmp_path):
    from tl.training.config import load_recipe, resolve

    out = tmp_path / "tune"
    args = [*base(tiny_checkpoint, tiny_data), "--trials", "3", "--threads", "1",
            "--param", "lr=loguniform(1e-3,1e-2)", "--param", "epochs=int(1,2)", "-o", str(out)]
    # every trial stops itself at its step 2: the first is let go on, the second (trial 1) killed there
    env = {**os.environ, "TL_INJECT_FAULT": "sigstop@step:2"}
    log = open(tmp_path / "log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tl", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_stopped(proc, tmp_path / "log")
        os.kill(proc.pid, signal.SIGCONT)
        wait_stopped(proc, tmp_path / "log", out / "trials" / "1" / "status.json")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    killed = load_study(out)
    assert states(killed) == ["COMPLETE", "RUNNING"]
    finished_at = (out / "trials" / "0" / "status.json").read_text()

    result = invoke(["tune", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "trial(s) 1 did not finish" in result.output
    study = load_study(out)
    # trial 1 failed (killed) and was tried again as trial 2 with its parameters; 3 trials finished in all
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"] and study.direction.name == "MAXIMIZE"
    assert study.trials[2].user_attrs["tl_retry_of"] == 1 and study.trials[2].params == killed.trials[1].params
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1", "2", "3"]
    assert (out / "trials" / "0" / "status.json").read_text() == finished_at  # not run again
    assert [line.split(" [")[0] for line in result.output.splitlines() if line.startswith("trial ") and " [" in line] \
        == ["trial 2", "trial 3"]
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["finished", "interrupted", "finished", "finished"]
    assert {"trial", "lr", "epochs", "accuracy", "duration_s"} <= set(rows[0])
    assert (out / "trials.png").read_bytes()[:4] == b"\x89PNG"
    # each trial a normal run, evaluated on the validation split held out from the training subset
    for t in study.trials:
        if t.state.name != "COMPLETE":
            continue
        run_dir = out / "trials" / str(t.number)
        assert status(run_dir) == "finished" and (run_dir / "model").is_dir()
        assert not (run_dir / "checkpoints").exists()
        config = json.loads((run_dir / "config.json").read_text())
        assert config["split"].startswith("validation:") and config["config"]["validation_split"] == 0.2
        assert config["num_train_samples"] + config["num_eval_samples"] == 64
        assert config["config"]["lr"] == t.params["lr"] and config["config"]["epochs"] == t.params["epochs"]
        assert t.value == json.loads((run_dir / "metrics.json").read_text())["eval_accuracy"]
    # the best configuration as a recipe that tl run takes
    best = study.best_trial
    recipe = load_recipe(out / "best.toml")
    assert recipe["lr"] == best.params["lr"] and recipe["epochs"] == best.params["epochs"]
    assert "validation_split" not in recipe and "output" not in recipe and "threads" not in recipe
    assert resolve({}, recipe, {}).model == str(tiny_checkpoint)
    # the final run: the best configuration on all the (subset of) training data, scored on the eval split
    final = json.loads((out / "best" / "config.json").read_text())
    assert final["split"] == "sha256(text) held-out 20%" and final["config"]["validation_split"] is None
    assert (final["num_train_samples"], final["num_eval_samples"]) == (64, 32)
    assert final["config"]["lr"] == best.params["lr"] and final["config"]["epochs"] == best.params["epochs"]
    tune = json.loads((out / "tune.json").read_text())
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert tune["final"]["trial"] == best.number and tune["final"]["eval_accuracy"] == metrics["eval_accuracy"]
    assert tune["best"]["trial"] == best.number and tune["wall_s"] > tune["final"]["wall_s"] > 0
    assert f"eval_accuracy {metrics['eval_accuracy']:.4f}" in result.output


def wait_stopped(proc: subprocess.Popen, log: Path, also: Path | None = None, timeout: float = 180) -> None:
    """Until ``proc`` stopped itself (state T), with ``also`` existing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tl tune exited ({proc.returncode}) before it stopped: {log.read_text()[-2000:]}")
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T" and (also is None or also.exists()):
            return
        time.sleep(0.05)
    pytest.fail(f"tl tune did not stop: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("backend_name", slow_on("tensorflow", "torch"))
def test_tune_two_trials_in_one_process(backend_name, tiny_checkpoint, tiny_data, tmp_path):
    out = tmp_path / "tune"
    result = invoke([*base(tiny_checkpoint, tiny_data, backend_name), "--trials", "2", "--epochs", "1",
                     "--param", "lr=loguniform(1e-3,1e-2)", "--param", "warmup_ratio=uniform(0,0.2)", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert states(load_study(out)) == ["COMPLETE"] * 2
    assert status(out / "best") == "finished"


def test_trial_train_samples_limits_the_trials_not_the_final_run(tiny_checkpoint, tiny_data, tmp_path):
    out = tmp_path / "tune"
    args = ["tune", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data), "--max-eval-samples", "32",
            "--batch-size", "16", "--max-length", "16", "--precision", "fp32", "--epochs", "1", "--trials", "1",
            "--trial-train-samples", "40", "--param", "lr=choice(5e-3)", "-o", str(out)]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    trial = json.loads((out / "trials" / "0" / "config.json").read_text())
    final = json.loads((out / "best" / "config.json").read_text())
    assert trial["num_train_samples"] + trial["num_eval_samples"] == 40  # the subset, its validation held out
    assert trial["split"].startswith("validation")
    rows = sum(1 for _ in tiny_data.open()) - 1  # header; the final run trains on the whole training split (~80%)
    assert final["num_train_samples"] > 0.7 * rows and final["num_eval_samples"] == 32
    assert not final["split"].startswith("validation")
    assert "max_train_samples" not in (out / "best.toml").read_text()
    assert json.loads((out / "tune.json").read_text())["trial_train_samples"] == 40


# --- errors: one line, exit 2, naming the param ----------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--param", "lr"], "--param 'lr': expected NAME=SPACE"),
    (["--param", "dropout=uniform(0,1)"], "--param dropout: cannot be searched"),
    (["--param", "lr=normal(0,1)"], "--param lr: unknown space 'normal'"),
    (["--param", "lr=loguniform(1e-3)"], "--param lr: loguniform takes 2 numbers"),
    (["--param", "lr=loguniform(3e-4,1e-5)"], "--param lr: low 3e-4 must be below high 1e-5"),
    (["--param", "lr=loguniform(0,1e-3)"], "--param lr: loguniform needs low > 0"),
    (["--param", "lr=uniform(a,1)"], "--param lr: 'a' is not a number"),
    (["--param", "epochs=uniform(1,3)"], "--param epochs: takes int(low,high[,step]) or choice"),
    (["--param", "epochs=int(1,4,2)"], "--param epochs: step 2 must be >= 1 and divide"),
    (["--param", "strategy=choice(finetune,bogus)"], "--param strategy: strategy must be one of"),
    (["--param", "strategy=uniform(0,1)"], "--param strategy: takes choice"),
    (["--param", "lora-rank=choice(0,8)"], "--param lora-rank: lora-rank must be > 0"),
    (["--param", "batch-size=choice(8,16)"], "--param batch-size: also fixed by --batch-size"),
    (["--param", "warmup_ratio=uniform(0,2)"], "--param warmup_ratio: warmup-ratio must be between 0 and 1"),
    (["--param", "lr=choice(1e-3,1e-3)"], "--param lr: choice lists a value twice"),
    (["--param", "lr=uniform(1e-5,1e-3)", "--param", "lr=uniform(1e-4,1e-3)"], "--param lr: given twice"),
    (["--param", "lr=uniform(1e-5,1e-3)", "--lr", "1e-4"], "--param lr: also fixed by --lr"),
    (["--param", "strategy=choice(finetune,lora)", "--merge-adapters"], "--param strategy: --merge-adapters applies"),
    (["--param", "lr=uniform(1e-5,1e-3)", "--metric", "f1"], "--metric 'f1' is not a metric of task 'sentiment'"),
    ([], "pass at least one --param"),
    (["--param", "lr=uniform(1e-5,1e-3)", "--trial-train-samples", "40"],
     "--trial-train-samples and --max-train-samples: pass one"),
])
def test_tune_usage_errors(extra, message, tiny_checkpoint, tiny_data, tmp_path):
    result = CliRunner().invoke(cli, [*base(tiny_checkpoint, tiny_data), *extra, "-o", str(tmp_path / "t")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {message}") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "t").exists()


def test_tune_directory_errors(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    cases = [
        ([*base(tiny_checkpoint, tiny_data), "--param", "lr=uniform(1e-5,1e-3)", "-o", str(taken)],
         f"--output {taken} already exists and is not empty; continue that tuning with tl tune --resume {taken}, "
         "or choose another path"),
        (["tune", "--resume", str(taken)], f"{taken} is not a tl tune directory (no tune.json)"),
        (["tune", "--resume", str(taken), "--lr", "1e-4", "--param", "epochs=int(1,2)"],
         "--resume continues a tuning as it was configured; drop --lr, --param (only --trials and --no-final may "
         "be given)"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, args)
        assert (result.exit_code, result.output) == (2, f"Error: {message}\n"), result.output
    assert (taken / "notes.txt").read_text() == "mine" and sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed
    result = CliRunner().invoke(cli, ["tune", "--param", "lr=uniform(1e-5,1e-3)"])
    assert (result.exit_code, result.output.splitlines()) == (2, ["Error: tl tune needs Optuna: pip install 'tl[tune]' "
                                                                  "(or: pip install 'optuna>=3.6')"])
