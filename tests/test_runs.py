"""``tl runs``: the runs under a folder as a table (every status, runs from before status.json, damaged
files), ``show`` and ``compare`` (the differing options exactly), ``--json``, one-line errors, and no
framework imported. Run directories are copies of the session's finished tiny runs (``fast_run``),
changed the way an interrupted, failed, pruned or running run leaves its directory, and one real run
that failed saving its model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.faults import ENV
from tl.training.rundir import RunLock
from tl.training.runs import COMPARED_PLAN
from tl.training.status import write_status

from conftest import BACKENDS

T0 = 1_700_000_000.0  # started_unix of the copies: their order in the table
pytestmark = pytest.mark.skipif("torch" not in BACKENDS, reason="the run directories are copies of a torch run")


def tl(*args: str):
    return CliRunner().invoke(cli, list(args))


def _copy(src, dst, *, started: float | None = None, status: str | None = None, keep_steps: int | None = None,
          **fields):
    shutil.copytree(src, dst)
    if keep_steps is not None:  # what a run stopped after step `keep_steps` wrote: no model, no metrics.json
        rows = [json.loads(line) for line in (dst / "history.jsonl").read_text(encoding="utf-8").splitlines()]
        (dst / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= keep_steps),
                                           encoding="utf-8")
        (dst / "metrics.json").unlink()
        shutil.rmtree(dst / "model")
    if status is not None:
        write_status(dst, status, **fields)
    if started is not None:
        data = json.loads((dst / "status.json").read_text(encoding="utf-8"))
        (dst / "status.json").write_text(json.dumps({**data, "started_unix": started}), encoding="utf-8")
    return dst


@pytest.fixture
def runs_dir(fast_run, tmp_path):
    """runs/ with a finished run per backend, an interrupted, a failed, a pruned trial (tune/trials/0),
    a run from before status.json and one whose metrics.json is damaged; the running one is added by
    the test that holds its lock."""
    root = tmp_path / "runs"
    root.mkdir()
    torch_run = fast_run("torch").run_dir
    _copy(torch_run, root / "a-finished", started=T0)
    if "tensorflow" in BACKENDS:
        _copy(fast_run("tensorflow").run_dir, root / "b-tensorflow", started=T0 + 1)
    _copy(torch_run, root / "c-interrupted", keep_steps=50, status="interrupted", step=50, total_steps=80,
          error="interrupted at step 50; a checkpoint was written", started=T0 + 2)
    _copy(torch_run, root / "d-failed", keep_steps=80, status="failed", step=80, total_steps=80,
          error="cannot write model: No space left on device", started=T0 + 3)
    _copy(torch_run, root / "f-damaged", started=T0 + 4)
    (root / "f-damaged" / "metrics.json").write_text('{"eval_accuracy": 0.9', encoding="utf-8")
    _copy(torch_run, root / "tune" / "trials" / "0", keep_steps=40, status="pruned", step=40, total_steps=80,
          error="trial pruned at epoch 2", started=T0 + 5)
    legacy = _copy(torch_run, root / "z-legacy")  # started: its first step's time, after T0 + 5
    (legacy / "status.json").unlink()  # before tl wrote one: finished, by its metrics.json
    broken = _copy(torch_run, root / "h-broken")  # started as z-legacy: the id orders them
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    (broken / "status.json").write_text("[1, 2]", encoding="utf-8")
    with open(broken / "history.jsonl", "a", encoding="utf-8") as f:
        f.write('{"event": "step", "st')  # cut short
    (root / "notes").mkdir()  # not a run: no run files
    (root / "notes" / "todo.txt").write_text("x", encoding="utf-8")
    return root


EXPECTED = [  # id, status, epochs column, in start order
    ("a-finished", "finished", "4"),
    *([("b-tensorflow", "finished", "4")] if "tensorflow" in BACKENDS else []),
    ("c-interrupted", "interrupted", "2/4"),
    ("d-failed", "failed", "4/4"),
    ("f-damaged", "finished", "4"),
    ("tune/trials/0", "pruned", "2/4"),
    ("h-broken", "finished", "4"),
    ("z-legacy", "finished", "4"),
]


def test_the_table_lists_every_run_with_its_status(runs_dir):
    running = _copy(runs_dir / "a-finished", runs_dir / "r-running", keep_steps=30)
    lock = RunLock.acquire(running)  # a live run holds its directory (this process, as `tl run` would)
    try:
        write_status(running, "running")  # started now: the newest
        out = tl("runs", str(runs_dir))
        listed = tl("runs", "--json", str(runs_dir))
    finally:
        lock.release()
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["id", "task", "backend", "model", "dataset", "epochs", "accuracy", "macro-F1",
                                "samples/s", "status", "started"]
    expected = [*EXPECTED, ("r-running", "running", "1/4")]
    assert [line.split()[0] for line in lines[1:]] == [e[0] for e in expected]  # oldest first, no "notes"
    for line, (_, status, epochs) in zip(lines[1:], expected, strict=True):
        cells = line.split()
        assert cells[5] == epochs and cells[9] == status, line
        assert cells[1] == "sentiment" and cells[3] == "tiny", line
    row = lines[1].split()
    finished = json.loads((runs_dir / "a-finished" / "metrics.json").read_text())
    assert row[2] == "torch" and row[4] == "train.csv"
    assert row[6:9] == [f"{finished['eval_accuracy']:.4f}", f"{finished['eval_macro_f1']:.4f}",
                        f"{finished['train_samples_per_second']:.1f}"]
    assert row[10] == "2023-11-14"  # T0, local date
    assert out.stderr.splitlines() == [  # listed all the same, with what could be read
        "note: f-damaged: metrics.json: not valid JSON",
        "note: h-broken: config.json: not valid JSON; history.jsonl: 1 damaged line(s) skipped"]

    rows = json.loads(listed.stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(e[0], e[1]) for e in expected]
    by_id = {r["id"]: r for r in rows}
    assert by_id["a-finished"]["accuracy"] == finished["eval_accuracy"]
    assert by_id["a-finished"]["path"] == str(runs_dir / "a-finished")
    assert by_id["d-failed"]["error"] == "cannot write model: No space left on device"
    history = [json.loads(x) for x in (runs_dir / "c-interrupted" / "history.jsonl").read_text().splitlines()]
    last_eval = [r for r in history if r["event"] == "epoch"][-1]
    assert by_id["c-interrupted"]["accuracy"] == last_eval["eval_accuracy"]  # its last evaluation
    assert by_id["c-interrupted"]["epochs_done"] == 2 and by_id["c-interrupted"]["epochs"] == 4
    assert by_id["f-damaged"]["problems"] == ["metrics.json: not valid JSON"]

    # the lock is gone: the same directory now reads as a killed run
    assert tl("runs", "--json", str(runs_dir)).stdout.count('"status": "running"') == 0
    trials = tl("runs", "--json", "--status", "pruned", str(runs_dir / "tune" / "trials"))
    assert [r["id"] for r in json.loads(trials.stdout)] == ["0"]
    best = tl("runs", "--sort", "accuracy", "--status", "finished", "--status", "interrupted", str(runs_dir))
    shown = [line.split() for line in best.stdout.splitlines()[1:]]
    assert {row[9] for row in shown} == {"finished", "interrupted"} and len(shown) == len(expected) - 2
    assert [float(row[6]) for row in shown] == sorted((float(row[6]) for row in shown), reverse=True)
    assert shown[-1][0] == "r-running"  # killed after its first epoch (lowest accuracy), now interrupted


def test_show_one_run(runs_dir):
    run = runs_dir / "a-finished"
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    shown = tl("runs", "show", "a-fin", "--dir", str(runs_dir))  # the start of an id
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert text.splitlines()[0] == f"run a-finished  ({run})"
    assert "  status   finished (step 80 of 80)" in text
    assert "  plan     " in text and "| fp32 (requested) | batch 16 = 16 per device" in text
    assert f"  lr                 {config['config']['lr']}" in text
    assert f"  eval_accuracy             {metrics['eval_accuracy']:.4f}" in text
    assert "per class\n  label     precision  recall      f1  support\n  negative" in text
    assert f"  tensorboard    {run / 'tensorboard'}" in text and f"  model          {run / 'model'}" in text
    assert "(confusion_matrix.png, loss.png)" in text
    as_json = json.loads(tl("runs", "show", str(run), "--json").stdout)  # a path works too
    assert as_json["id"] == "a-finished" and as_json["status"] == "finished"
    assert as_json["config"] == config["config"]
    assert as_json["metrics"]["eval_macro_f1"] == metrics["eval_macro_f1"]
    assert as_json["per_class"] == metrics["eval_per_class"]
    assert as_json["paths"]["model"] == str(run / "model")
    assert as_json["paths"]["plots"] == [str(run / "plots" / "confusion_matrix.png"), str(run / "plots" / "loss.png")]
    assert as_json["warnings"] == [] and as_json["problems"] == []

    failed = tl("runs", "show", "d-failed", "--dir", str(runs_dir))
    assert "  status   failed (step 80 of 80)\n  error    cannot write model: No space left on device" in failed.stdout
    assert "metrics (last epoch evaluated: 4)" in failed.stdout and str(runs_dir / "d-failed" / "model") not in failed.stdout
    assert "\n  checkpoints    " in failed.stdout
    trial = json.loads(tl("runs", "show", "tune/trials/0", "--dir", str(runs_dir), "--json").stdout)
    assert trial["status"] == "pruned" and trial["error"] == "trial pruned at epoch 2" and trial["epochs_done"] == 2


def test_compare_shows_only_the_differing_options(runs_dir, fast_run):
    changed = _copy(runs_dir / "a-finished", runs_dir / "g-changed")
    config = json.loads((changed / "config.json").read_text())
    config["config"].update(lr=1e-3, epochs=3)
    (changed / "config.json").write_text(json.dumps(config))
    out = tl("runs", "compare", "a-finished", "g-changed", "c-interrupted", "--dir", str(runs_dir), "--json")
    assert out.exit_code == 0, out.output
    c = json.loads(out.stdout)
    assert c["runs"] == ["a-finished", "g-changed", "c-interrupted"]
    assert c["status"] == ["finished", "finished", "interrupted"]
    assert c["config"] == {"epochs": [4, 3, 4], "lr": [0.005, 0.001, 0.005]}  # not output, not the rest
    finished = json.loads((runs_dir / "a-finished" / "metrics.json").read_text())
    for key in ("eval_accuracy", "eval_macro_f1", "eval_loss", "train_loss", "train_samples_per_second",
                "train_runtime_s"):
        assert c["metrics"][key][:2] == [finished[key], finished[key]], key
    assert c["metrics"]["train_steps"] == [80, 80, 50] and c["metrics"]["epochs"] == [4, 4, 2]
    assert c["metrics"]["train_runtime_s"][2] is None  # not finished: no runtime

    text = tl("runs", "compare", "a-finished", "g-changed", "--dir", str(runs_dir)).stdout.splitlines()
    assert text[0].split() == ["run", "a-finished", "g-changed"]
    assert text[1].split() == ["status", "finished", "finished"]
    assert [line.split() for line in text[3:5]] == [["epochs", "4", "3"], ["lr", "0.005", "0.001"]]
    assert text[5] == "metrics"
    assert text[6].split() == ["eval_accuracy", f"{finished['eval_accuracy']:.4f}", f"{finished['eval_accuracy']:.4f}"]

    if "tensorflow" in BACKENDS:  # torch against tensorflow: the backend, and the plan where it differs
        plans = [json.loads((runs_dir / r / "config.json").read_text())["plan"] for r in ("a-finished", "b-tensorflow")]
        c = json.loads(tl("runs", "compare", "a-finished", "b-tensorflow", "--dir", str(runs_dir), "--json").stdout)
        assert c["config"] == {"backend": ["torch", "tensorflow"],
                               **{f"plan.{k}": [plans[0][k], plans[1][k]] for k in COMPARED_PLAN
                                  if plans[0][k] != plans[1][k]}}


def test_one_line_errors_and_an_empty_folder(runs_dir, tmp_path, monkeypatch):
    _copy(runs_dir / "c-interrupted", runs_dir / "c-copy")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no runs/ here
    for args, message in [
        (["runs"], "Error: runs does not exist; pass the folder that holds your run directories (default runs/)"),
        (["runs", "show", "a-finished"], "Error: no run 'a-finished': not a run directory, and runs does not exist;"),
        (["runs", "show", "nope", "--dir", str(runs_dir)], f"Error: no run 'nope' under {runs_dir}; `tl runs {runs_dir}`"
                                                             " lists them"),
        (["runs", "compare", "a-finished", "nope", "--dir", str(runs_dir)], "Error: no run 'nope' under"),
        (["runs", "compare", "a-finished", "--dir", str(runs_dir)], "Error: compare needs two runs or more, got 1;"),
        (["runs", "show", "--dir", str(runs_dir), "c"], "Error: 'c' matches 2 runs under"),  # c-copy, c-interrupted
        (["runs", str(runs_dir / "a-finished" / "config.json")], "Error: "),
    ]:
        out = tl(*args)
        assert out.exit_code == 2 and out.stdout == "", (args, out.output)
        assert out.stderr.startswith(message) and len(out.stderr.splitlines()) == 1, (args, out.stderr)
    (tmp_path / "elsewhere" / "empty" / "notes").mkdir(parents=True)
    out = tl("runs", "empty")
    assert out.exit_code == 0 and out.stdout == "no runs under empty\n"
    assert tl("runs", "--json", "empty").stdout == "[]\n"


def test_a_real_failed_run_is_listed_as_failed(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "enospc@model")  # saving the model fails after training
    out = tl("run", "--backend", "torch", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data),
             "--epochs", "1", "--max-train-samples", "16", "--max-eval-samples", "16", "--batch-size", "16",
             "--max-length", "16", "--precision", "fp32", "--threads", "1", "-q", "-o", str(tmp_path / "runs" / "failed"))
    assert out.exit_code == 1 and "No space left on device" in out.stderr, out.output
    monkeypatch.delenv(ENV)
    rows = json.loads(tl("runs", "--json", str(tmp_path / "runs")).stdout)
    assert [(r["id"], r["status"], r["epochs_done"]) for r in rows] == [("failed", "failed", 1)]
    assert "No space left on device" in rows[0]["error"] and rows[0]["accuracy"] is not None
    shown = tl("runs", "show", "failed", "--dir", str(tmp_path / "runs")).stdout
    assert "\n  status   failed (step 1 of 1)\n  error    cannot write" in shown


def test_tl_runs_imports_no_framework(runs_dir):
    code = (
        "import sys\n"
        "from tl.cli import cli\n"
        "for args in (['runs', '--help'], ['runs', sys.argv[1]], ['runs', 'show', 'a-finished', '--dir', sys.argv[1]],"
        " ['runs', 'compare', 'a-finished', 'd-failed', '--dir', sys.argv[1]]):\n"
        "    try:\n"
        "        cli(args, prog_name='tl')\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (args, e.code)\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'transformers', 'optuna', 'mlflow', 'tensorboard')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(runs_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "a-finished" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
