"""``--max-steps N`` (tl.training.max_steps): exactly N optimizer steps, whatever --epochs and --min-steps say;
the last epoch cut short after step N (and evaluated), the learning-rate schedule spanning N steps, kept by
--resume. Tiny data: 40 training rows at batch 8 are 5 optimizer steps per epoch."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tl.errors import UsageError
from tl.training.config import DEFAULTS, TrainSettings, resolve
from tl.training.max_steps import max_steps_epochs, steps_in_epoch, total_steps
from tl.training.schedule import linear_schedule

from conftest import BACKENDS
from tinybert import synthetic_rows, write_csv

PER_EPOCH = 5  # 40 rows / batch 8
TINY = {"batch_size": 8, "lr": 5e-3, "max_length": 16, "precision": "fp32", "log_every": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("max_steps")
    rows = synthetic_rows(56, seed=5)
    return write_csv(d / "train.csv", rows[:40]), write_csv(d / "eval.csv", rows[40:])


def _run(tiny_checkpoint, data, output, **over):
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.pipeline import run

    pm = get_plugin_manager()
    options = {**TINY, "model": str(tiny_checkpoint), "dataset": str(data[0]), "eval_dataset": str(data[1]),
               "output": str(output), **over}
    return run(resolve(options, {}, {}), build_registry(pm), pm, quiet=True)


def _history(run_dir, event):
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == event]


def _scheduled_lrs(run_dir) -> dict[int, float]:
    """The torch scheduler's next learning rate at each kept checkpoint (step -> lr for step + 1)."""
    out = {}
    for ckpt in sorted((run_dir / "checkpoints").glob("step-*")):
        meta = json.loads((ckpt / "trainer.json").read_text())
        out[int(ckpt.name.split("-")[1])] = meta["scheduler"]["_last_lr"][0]
    return out


def test_step_arithmetic_and_config():
    assert [max_steps_epochs(n, 5) for n in (1, 3, 5, 6, 10, 11)] == [1, 1, 1, 2, 2, 3]
    assert max_steps_epochs(3, 0) == 0  # no step per epoch: the run keeps its epochs (each empty)
    assert [total_steps(5, 2, m) for m in (None, 3, 7, 10, 99)] == [10, 3, 7, 10, 10]
    assert [steps_in_epoch(e, 5, 7) for e in range(3)] == [5, 2, 0]
    # --max-steps sets the steps itself: tl's default --min-steps does not apply
    assert resolve({"max_steps": 3}, {}, {}).min_steps is None and resolve({}, {}, {}).min_steps is not None
    assert resolve({}, {"max_steps": 3}, {}).max_steps == 3
    for bad in (0, -2, 2.5, "3", True):
        with pytest.raises(UsageError, match="max-steps must be"):
            resolve({}, {"max_steps": bad}, {})
    assert DEFAULTS.get("max_steps") is None and TrainSettings(1, 8, 1e-3, 0, 0, 0, "fp32").max_steps is None


def test_ledger_ends_the_cut_epoch_at_max_steps():
    from tl.interfaces import TrainCallbacks
    from tl.training.ledger import Ledger

    steps, ends = [], []
    callbacks = TrainCallbacks(on_step=lambda s, loss, n: steps.append(s), on_epoch_end=lambda e, loss: ends.append(e))
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e-3, weight_decay=0, warmup_ratio=0.5, seed=0,
                             precision="fp32", grad_accum=2, max_steps=4)
    ledger = Ledger(settings, 6, callbacks, lambda d: None)  # 3 steps of 2 micro-batches per epoch
    assert (ledger.total_steps, ledger.warmup_steps, ledger.micro_batches(0), ledger.micro_batches(1)) == (4, 2, 6, 2)
    for _ in range(4):
        ledger.step_done(0.5, 8)
    assert steps == [1, 2, 3, 4] and ends == [0, 1] and (ledger.epoch, ledger.micro) == (2, 0)


@pytest.mark.skipif("torch" not in BACKENDS, reason="torch not installed")
def test_max_steps_within_one_epoch_stops_there_and_evaluates_once(tiny_checkpoint, data, tmp_path):
    """--max-steps 3 with --epochs 4 and --min-steps 50 (both overridden): 3 steps of the first 5-step epoch,
    one evaluation, and the torch scheduler's rate (saved in each checkpoint) is the schedule of 3 steps:
    0 after the last (an epochs-long schedule would still be at 27/36 of the peak)."""
    result = _run(tiny_checkpoint, data, tmp_path / "r", backend="torch", epochs=4, min_steps=50, max_steps=3,
                  save_every=1, keep_checkpoints=5)
    m, d = result.metrics, result.run_dir
    assert (m["train_steps"], m["epochs"], m["max_steps"], m["min_steps"]) == (3, 1, 3, None)
    assert [r["step"] for r in _history(d, "step")] == [1, 2, 3]
    assert [(r["epoch"], r["step"]) for r in _history(d, "epoch")] == [(1, 3)]
    config = json.loads((d / "config.json").read_text())
    assert (config["config"]["max_steps"], config["config"]["epochs"]) == (3, 1)
    assert "--max-steps 3: 5 optimizer steps per epoch, so 1 epoch, the last cut short after 3 of its 5; " \
           "--min-steps 50 ignored" in config["plan"]["notes"]
    factor = linear_schedule(3, int(DEFAULTS["warmup_ratio"] * 3))
    assert _scheduled_lrs(d) == {k: pytest.approx(5e-3 * factor(k)) for k in (1, 2, 3)}
    assert _scheduled_lrs(d)[3] == 0.0
    last = _history(d, "step")[-1]
    assert last["learning_rate"] == pytest.approx(5e-3 * factor(2))  # the rate step 3 trained with


@pytest.mark.skipif("torch" not in BACKENDS, reason="torch not installed")
def test_max_steps_past_an_epoch_with_accumulation_and_resume(tiny_checkpoint, data, tmp_path):
    """--max-steps 7 at 5 steps per epoch with 2 micro-batches per step: epoch 2 is cut after 2 steps (an
    optimizer-step boundary), both epochs evaluated; resumed from the step-5 checkpoint, the run trains
    steps 6 and 7 again and finishes the same way."""
    from tl.cli import cli

    result = _run(tiny_checkpoint, data, tmp_path / "r", backend="torch", grad_accum=2, max_steps=7)
    m, d = result.metrics, result.run_dir
    assert (m["train_steps"], m["epochs"], m["max_steps"], m["grad_accum"]) == (7, 2, 7, 2)
    assert [r["step"] for r in _history(d, "step")] == list(range(1, 8))
    assert [(r["epoch"], r["step"]) for r in _history(d, "epoch")] == [(1, 5), (2, 7)]
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == ["step-00000005", "step-00000007"]
    final = _scheduled_lrs(d)
    assert final[7] == 0.0 and final[5] == pytest.approx(5e-3 * linear_schedule(7, 0)(5))

    shutil.rmtree(d / "checkpoints" / "step-00000007")  # as if stopped after the first epoch
    (d / "metrics.json").unlink()
    out = CliRunner().invoke(cli, ["run", "--resume", str(d), "-q", "--json"])
    assert out.exit_code == 0, out.output
    resumed = json.loads((d / "metrics.json").read_text())
    assert (resumed["train_steps"], resumed["epochs"], resumed["max_steps"]) == (7, 2, 7)
    assert [r["step"] for r in _history(d, "step")] == list(range(1, 8))
    assert [(r["epoch"], r["step"]) for r in _history(d, "epoch")] == [(1, 5), (2, 7)]
    assert _scheduled_lrs(d)[7] == 0.0
    again = CliRunner().invoke(cli, ["run", "--resume", str(d), "-q"])
    assert again.exit_code == 2 and "already finished all 2 epochs" in again.output, again.output


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="tensorflow not installed")
def test_max_steps_on_tensorflow(tiny_checkpoint, data, tmp_path, monkeypatch):
    """The same cut on the Keras loop: 3 steps of a 5-step epoch, one evaluation, a schedule of 3 steps."""
    from tl_tensorflow.runtime import activate

    activate()
    import tl_tensorflow.train as tf_train

    schedules = []
    make = tf_train.LinearSchedule.__init__

    def record(self, lr, total, warmup):
        schedules.append((total, warmup))
        make(self, lr, total, warmup)

    monkeypatch.setattr(tf_train.LinearSchedule, "__init__", record)
    result = _run(tiny_checkpoint, data, tmp_path / "r", backend="tensorflow", epochs=2, max_steps=3)
    m, d = result.metrics, result.run_dir
    assert (m["train_steps"], m["epochs"], m["max_steps"]) == (3, 1, 3)
    assert schedules == [(3, 0)]
    assert [r["step"] for r in _history(d, "step")] == [1, 2, 3]
    assert [(r["epoch"], r["step"]) for r in _history(d, "epoch")] == [(1, 3)]


@pytest.mark.parametrize("value, message", [("0", "0 is not in the range x>=1"), ("-1", "-1 is not in the range"),
                                            ("2.5", "'2.5' is not a valid integer"), ("x", "'x' is not a valid integer")])
def test_bad_max_steps_is_a_usage_error(value, message):
    from tl.cli import cli

    out = CliRunner().invoke(cli, ["run", "--max-steps", value, "--dataset", "missing.csv"])
    assert out.exit_code == 2
    errors = [line for line in out.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'--max-steps'" in errors[0] and message in errors[0], out.output


def test_bad_max_steps_in_a_recipe_is_a_usage_error(tmp_path):
    from tl.cli import cli

    recipe = tmp_path / "r.toml"
    recipe.write_text('dataset = "missing.csv"\nmax-steps = 0\n')
    out = CliRunner().invoke(cli, ["run", str(recipe)])
    assert out.exit_code == 2 and "max-steps must be > 0, got 0" in out.output, out.output
