"""Write failures while a run saves its work: the disk full (ENOSPC) or read-only (EROFS) while a
checkpoint or the final model is written (``TL_INJECT_FAULT=enospc@checkpoint:N``, ``erofs@...``,
``enospc@model``: the OSError a full or read-only disk raises, at that write).

A failed checkpoint leaves no temporary directory, keeps every earlier checkpoint and stops the run
with one line naming the last good checkpoint and the resume command; a failed model save leaves no
``model/`` (nor its temporary sibling), keeps the final checkpoint and says that ``tl run --resume``
saves the model from it. Nothing else in ``--output`` is touched, and the resumed run ends where the
uninterrupted one does. The runs are in-process (``tl run`` through the CLI), on a tiny data set."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.errors import TLError
from tl.faults import ENV
from tl.training.resume import check_checkpoint, finish_write_errors

from conftest import BACKENDS
from tinybert import synthetic_rows, write_csv

#: 60 rows: 44 train after the hash hold-out, 11 steps of 4 per epoch, 22 in 2 epochs
STEPS = 22
NOTE = "the user's own file, never touched\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_checkpoint):
    """``small(backend)``: (tl run arguments, the uninterrupted run's metrics), once per backend."""
    d = tmp_path_factory.mktemp("write-faults")
    data = write_csv(d / "data.csv", synthetic_rows(60, seed=11))
    cache = {}

    def get(backend: str):
        if backend not in cache:
            args = ["--backend", backend, "--model", str(tiny_checkpoint), "--dataset", str(data), "--epochs", "2",
                    "--batch-size", "4", "--lr", "2e-3", "--max-length", "32", "--precision", "fp32",
                    "-q", "--json"]
            reference = d / f"reference-{backend}"
            metrics, _ = _tl(*args, "-o", str(reference))
            assert metrics["train_steps"] == STEPS
            cache[backend] = args, metrics, reference
        return cache[backend]

    return get


def _tl(*args: str, code: int = 0) -> tuple[dict | None, str]:
    out = CliRunner().invoke(cli, ["run", *args])
    assert out.exit_code == code, (out.stderr, out.exception)
    return (json.loads(out.stdout.strip().splitlines()[-1]) if code == 0 else None), out.stderr


def _same(a: dict, b: dict) -> None:
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "train_loss", "train_steps"):
        assert a[key] == b[key], (key, a[key], b[key])


def _output_with_a_user_file(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text(NOTE, encoding="utf-8")
    return run_dir


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


REASONS = {"enospc": "No space left on device", "erofs": "Read-only file system"}


@pytest.mark.parametrize("backend,kind", [
    pytest.param("torch", "enospc", marks=pytest.mark.guarantee(
        fault="Disk full (ENOSPC) while writing a checkpoint",
        tl="removes the partial checkpoint; stops in one line (exit 1) naming the last good one and tl run --resume",
        kept="every earlier checkpoint, the user's files; identical final metrics after resume")),
    pytest.param("torch", "erofs", marks=pytest.mark.guarantee(
        fault="Read-only file system (EROFS) while writing a checkpoint",
        tl="removes the partial checkpoint; stops in one line (exit 1) naming the last good one and tl run --resume",
        kept="every earlier checkpoint, the user's files; identical final metrics after resume")),
    pytest.param("tensorflow", "enospc", marks=[pytest.mark.slow, pytest.mark.guarantee(
        fault="Disk full (ENOSPC) while writing a checkpoint",
        tl="removes the partial checkpoint; stops in one line (exit 1) naming the last good one and tl run --resume",
        kept="every earlier checkpoint, the user's files; identical final metrics after resume")]),
])
def test_a_failed_checkpoint_write_keeps_the_earlier_ones(small, backend, kind, tmp_path, monkeypatch):
    args, reference, _ = small(backend)
    run_dir = _output_with_a_user_file(tmp_path)
    monkeypatch.setenv(ENV, f"{kind}@checkpoint:9")
    _, err = _tl(*args, "--save-every", "3", "--keep-checkpoints", "5", "-o", str(run_dir), "--overwrite", code=1)
    where = re.escape(str(run_dir))
    remedy = "Free space" if kind == "enospc" else f"Make {where} writable"
    assert re.fullmatch(rf"Error: cannot write checkpoint step-00000009: {REASONS[kind]} "
                        rf"\({where}/checkpoints/\.tmp-step-00000009-\d+\); the last good checkpoint is "
                        rf"step-00000006\. {remedy}, then: tl run --resume {where}", _one_error_line(err)), err
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["step-00000003", "step-00000006"]  # no temporary directory left; nothing rotated away
    assert all(check_checkpoint(run_dir / "checkpoints" / name)[0] for name in kept)
    assert (run_dir / "notes.txt").read_text(encoding="utf-8") == NOTE
    assert not (run_dir / "model").exists() and not (run_dir / "metrics.json").exists()

    monkeypatch.delenv(ENV)
    resumed, _ = _tl("--resume", str(run_dir), "-q", "--json")
    _same(resumed, reference)
    assert (run_dir / "notes.txt").read_text(encoding="utf-8") == NOTE


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.guarantee(
        fault="Disk full (ENOSPC) while saving the final model",
        tl="no half-written model/; one line (exit 1) says tl run --resume saves it from the final checkpoint",
        kept="the final checkpoint, the user's files; the same model and metrics after resume"),
        *([pytest.mark.slow] if b == "tensorflow" else [])])
    for b in BACKENDS])
def test_a_failed_model_save_leaves_no_model_and_resume_saves_it(small, backend, tmp_path, monkeypatch):
    args, reference, reference_dir = small(backend)
    run_dir = _output_with_a_user_file(tmp_path)
    monkeypatch.setenv(ENV, "enospc@model")
    _, err = _tl(*args, "-o", str(run_dir), "--overwrite", code=1)
    where = re.escape(str(run_dir))
    assert re.fullmatch(rf"Error: cannot write {where}/model: No space left on device \({where}/\.model\.tmp-\d+/tl\.json\); "
                        rf"training finished and its final checkpoint step-000000{STEPS} is kept\. Free space, then: "
                        rf"tl run --resume {where} \(evaluates and saves the model from it\)", _one_error_line(err)), err
    assert not [p.name for p in run_dir.iterdir() if "model" in p.name]  # neither model/ nor its temporary sibling
    assert (run_dir / "notes.txt").read_text(encoding="utf-8") == NOTE
    assert check_checkpoint(run_dir / "checkpoints" / f"step-000000{STEPS}")[0] is not None

    monkeypatch.delenv(ENV)
    resumed, _ = _tl("--resume", str(run_dir), "-q", "--json")  # evaluates the final checkpoint, saves the model
    _same(resumed, reference)
    assert (run_dir / "model" / "model.safetensors").read_bytes() == \
        (reference_dir / "model" / "model.safetensors").read_bytes()
    assert (run_dir / "notes.txt").read_text(encoding="utf-8") == NOTE
    _, err = _tl("--resume", str(run_dir), code=2)
    assert "already finished all 2 epochs" in err


def test_a_failed_save_without_a_final_checkpoint_says_the_training_is_lost(tmp_path):
    """A backend that writes no checkpoints: nothing to redo the save from, and the message says so."""
    lost = (r"^cannot write .*/model: No space left on device \(x\); this run wrote no checkpoint, so its training "
            r"is lost\. Free space, then run it again; .*train on a backend that writes checkpoints")
    with pytest.raises(TLError, match=lost), finish_write_errors(tmp_path, tmp_path / "model", 2):
        raise OSError(28, "No space left on device", "x")
    with pytest.raises(ValueError), finish_write_errors(tmp_path, tmp_path / "model", 2):
        raise ValueError("not a write error: not ours to explain")
