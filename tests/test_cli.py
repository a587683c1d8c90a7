"""The command line as a user meets it: exit codes, one-line errors, no framework imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tl.cli import cli

from tinybert import synthetic_rows, write_csv

FRAMEWORKS = ("torch", "tensorflow", "keras", "transformers", "keras_hub")


def tl(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "tl", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["env", "--no-frameworks"], ["run", "--help"]])
def test_light_commands_import_no_framework(args):
    code = (
        "import sys\nfrom tl.cli import main\n"
        f"sys.argv = ['tl'] + {args!r}\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_plugins_lists_everything_with_providers():
    out = tl("plugins", "--json")
    data = json.loads(out.stdout)
    names = {(r["kind"], r["name"]): r for r in data["plugins"]}
    for key in [("backend", "torch"), ("backend", "tensorflow"), ("task", "sentiment"),
                ("dataset", "rotten_tomatoes"), ("dataset", "imdb"), ("model", "minilm"), ("model", "bert-base-uncased")]:
        assert key in names, key
        assert names[key]["provider"].startswith("tl ")
    assert data["failures"] == []
    assert tl("plugins").stdout.count("available") >= 2


def _one_line_error(out: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in out.stderr
    assert len(lines) == 1, out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_bad_names(tiny_checkpoint, tiny_data):
    _one_line_error(tl("run", "--backend", "jax", "--dataset", str(tiny_data)), 2, "unknown backend 'jax'", "torch")
    _one_line_error(tl("run", "--task", "summarize"), 2, "unknown task 'summarize'", "sentiment")
    _one_line_error(tl("run", "--model", "minilmm", "--dataset", str(tiny_data)), 2, "unknown model 'minilmm'", "minilm")
    _one_line_error(tl("run", "--model", str(tiny_checkpoint), "--dataset", "rotten"), 2,
                    "unknown dataset 'rotten'", "rotten_tomatoes")


def test_bad_files(tmp_path, tiny_checkpoint):
    ck = str(tiny_checkpoint)
    _one_line_error(tl("run", "--model", ck, "--dataset", str(tmp_path / "nope.csv")), 2, "not found")
    (tmp_path / "empty.csv").write_text("")
    _one_line_error(tl("run", "--model", ck, "--dataset", str(tmp_path / "empty.csv")), 2, "is empty")
    cols = write_csv(tmp_path / "cols.csv", synthetic_rows(50), "review", "sentiment")
    _one_line_error(tl("run", "--model", ck, "--dataset", str(cols)), 2, "column 'text' not found", "--text-column")
    one = write_csv(tmp_path / "one.csv", [(f"text {i}", "positive") for i in range(50)])
    _one_line_error(tl("run", "--model", ck, "--dataset", str(one)), 2, "single class (positive)")
    train = write_csv(tmp_path / "train.csv", synthetic_rows(40))
    dev = write_csv(tmp_path / "dev.csv", synthetic_rows(9, classes=("negative", "neutral", "positive")))
    _one_line_error(tl("run", "--model", ck, "--dataset", str(train), "--eval-dataset", str(dev)), 2,
                    "evaluation labels 'neutral' never occur in the training data")
    (tmp_path / "single.csv").write_text("text,label\nonly one,pos\n")
    _one_line_error(tl("run", "--model", ck, "--dataset", str(tmp_path / "single.csv")), 2, "too few rows (1)", "--eval-dataset")
    bad_recipe = tmp_path / "r.toml"
    bad_recipe.write_text("epoch = 1\n")
    _one_line_error(tl("run", str(bad_recipe)), 2, "unknown key 'epoch'")


def test_bad_checkpoints(tmp_path, tiny_checkpoint, tiny_data):
    empty = tmp_path / "empty_ckpt"
    empty.mkdir()
    _one_line_error(tl("run", "--model", str(empty), "--dataset", str(tiny_data)), 2, "config.json is missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_error(tl("run", "--model", str(broken), "--dataset", str(tiny_data), "-o", str(tmp_path / "r")), 2,
                    "model.safetensors")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_bytes((tiny_checkpoint / "config.json").read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    _one_line_error(tl("run", "--model", str(pickled), "--dataset", str(tiny_data)), 2, "pickle", "--allow-pickle")


def test_hub_id_while_offline_is_one_line(tiny_data):
    pytest.importorskip("huggingface_hub")
    out = tl("run", "--model", "google-bert/bert-base-uncased", "--dataset", str(tiny_data),
             env={"HF_HUB_OFFLINE": "1"})
    _one_line_error(out, 1, "not in the Hugging Face cache", "offline")


def test_existing_output_is_not_overwritten(tmp_path, tiny_checkpoint, tiny_data):
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("precious")
    _one_line_error(tl("run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data), "-o", str(out_dir)), 2,
                    "already exists", "--overwrite")
    assert (out_dir / "notes.txt").read_text() == "precious"


def test_run_predict_evaluate_end_to_end(tmp_path, tiny_checkpoint, tiny_data, backend_name):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    result = runner.invoke(cli, [
        "run", "--backend", backend_name, "--model", str(tiny_checkpoint), "--dataset", str(tiny_data),
        "--epochs", "4", "--lr", "5e-3", "--batch-size", "16", "--max-length", "32", "--precision", "fp32",
        "-o", str(run_dir), "-q"])
    assert result.exit_code == 0, result.output
    assert "eval_accuracy" in result.output
    model = str(run_dir / "model")

    result = runner.invoke(cli, ["predict", "--model", model, "--json", "the film was great", "an awful, dull mess"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)

    texts = tmp_path / "texts.txt"
    texts.write_text("a wonderful film\n\nthe plot was tedious\n")
    result = runner.invoke(cli, ["predict", "--model", model, "--input", str(texts)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("positive") and lines[1].startswith("negative")

    held_out = write_csv(tmp_path / "held_out.csv", synthetic_rows(60, seed=99))
    out_json = tmp_path / "eval.json"
    result = runner.invoke(cli, ["evaluate", "--model", model, "--dataset", str(held_out), "-o", str(out_json)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out_json.read_text())
    assert metrics["num_eval_samples"] == 60 and metrics["eval_accuracy"] >= 0.9
    assert f"eval_accuracy {metrics['eval_accuracy']:.4f}" in result.output

    # --precision: the same labels and near-identical probabilities in fp32 and bf16
    probs = {}
    for precision in ("fp32", "bf16"):
        result = runner.invoke(cli, ["predict", "--model", model, "--json", "--precision", precision, "--threads", "1",
                                     "the film was great", "an awful, dull mess", "it was a film"])
        assert result.exit_code == 0, result.output
        probs[precision] = [json.loads(line)["probabilities"]["positive"] for line in result.output.splitlines()]
    assert probs["fp32"][:2] and max(abs(a - b) for a, b in zip(*probs.values(), strict=True)) < 2e-2
    result = runner.invoke(cli, ["evaluate", "--model", model, "--dataset", str(held_out), "--precision", "fp32",
                                 "-o", str(out_json), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(out_json.read_text())["precision"] == "fp32"


def test_predict_errors(tmp_path):
    _one_line_error(tl("predict", "--model", str(tmp_path / "missing"), "hi"), 2, "not found")
    (tmp_path / "plain").mkdir()
    _one_line_error(tl("predict", "--model", str(tmp_path / "plain"), "hi"), 2, "not a model saved by tl")


def test_allow_pickle_converts_a_trusted_bin(tmp_path, tiny_checkpoint, tiny_data):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for f in tiny_checkpoint.iterdir():
        if f.name != "model.safetensors":
            (legacy / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(str(tiny_checkpoint / "model.safetensors")), legacy / "pytorch_model.bin")
    out = tl("run", "--model", str(legacy), "--dataset", str(tiny_data), "--epochs", "1", "--allow-pickle",
             "-o", str(tmp_path / "r"), "-q")
    assert out.returncode == 0, out.stderr
    assert not (legacy / "model.safetensors").exists()  # the user's directory is left as it was
