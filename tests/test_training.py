"""Backend-generic training tests: each runs once per installed backend on a tiny random BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tl.models.inference import predict
from tl.models.saved import load_saved
from tl.plugins.registry import get_backend
from tl.training.config import resolve
from tl.training.pipeline import run

from conftest import FAST, slow_on
from tinybert import synthetic_rows, write_csv


def _run(registry, tmp_path, backend, checkpoint, data, name="run", **over):
    from tl.plugins import get_plugin_manager

    options = {**FAST, "backend": backend, "model": str(checkpoint), "dataset": str(data),
               "output": str(tmp_path / name), **over}
    return run(resolve(options, {}, {}), registry, get_plugin_manager(), quiet=True)


def test_tiny_model_learns_and_writes_a_run_directory(fast_run, backend_name):
    result = fast_run(backend_name)  # FAST on tiny_data, shared with other tests that only read it
    m = result.metrics
    assert m["eval_accuracy"] >= 0.9, m
    for key in ("eval_accuracy", "eval_loss", "eval_macro_f1", "train_runtime_s", "train_samples_per_second",
                "backend", "model", "task", "seed"):
        assert key in m
    assert m["backend"] == backend_name and m["task"] == "sentiment" and m["seed"] == 0
    d = result.run_dir
    assert {p.name for p in d.iterdir()} >= {"config.json", "metrics.json", "history.jsonl", "model", "plots"}
    assert {p.name for p in (d / "model").iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tl.json"}
    assert {p.name for p in (d / "plots").iterdir()} == {"loss.png", "confusion_matrix.png"}
    history = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
    epochs = [h for h in history if h["event"] == "epoch"]
    assert len(epochs) == 4 and epochs[-1]["eval_accuracy"] == m["eval_accuracy"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    config = json.loads((d / "config.json").read_text())
    assert config["labels"] == ["negative", "positive"] and config["plan"]["precision"] == "fp32"
    meta = json.loads((d / "model" / "tl.json").read_text())
    assert meta["labels"] == ["negative", "positive"] and meta["backend"] == backend_name
    hf = json.loads((d / "model" / "config.json").read_text())
    assert hf["id2label"] == {"0": "negative", "1": "positive"}


# tensorflow with -m slow: test_tensorflow_backend's training test reruns and compares its steps,
# test_fault_kill's runs match to the last digit, and seeds move the head's init (test_head_init_is_seeded...)
@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_same_seed_same_metrics(registry, tmp_path, tiny_checkpoint, tiny_data, backend_name):
    a = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "a", epochs=1).metrics
    b = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "b", epochs=1).metrics
    c = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "c", epochs=1, seed=7).metrics
    assert a["eval_loss"] == b["eval_loss"] and a["eval_accuracy"] == b["eval_accuracy"]
    assert a["eval_loss"] != c["eval_loss"]


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_three_classes_with_neutral(registry, tmp_path, tiny_checkpoint, backend_name):
    data = write_csv(tmp_path / "three.csv", synthetic_rows(600, seed=3, classes=("positive", "neutral", "negative")))
    result = _run(registry, tmp_path, backend_name, tiny_checkpoint, data, epochs=6)
    assert result.metrics["labels"] == ["negative", "neutral", "positive"]
    assert len(result.metrics["eval_confusion_matrix"]) == 3
    assert result.metrics["eval_accuracy"] >= 0.85, result.metrics


def test_saved_model_reloads_with_identical_predictions(registry, fast_run, backend_name):
    result = fast_run(backend_name)
    backend = get_backend(registry, backend_name)
    model, meta = load_saved(result.run_dir / "model", backend)
    texts = ["the film was great", "a boring mess", "the acting is superb and the story is moving"]
    first = predict(model, texts, max_length=meta["max_length"])
    again = predict(load_saved(result.run_dir / "model", backend)[0], texts, max_length=32)
    assert [p.label for p in first] == [p.label for p in again] == ["positive", "negative", "positive"]
    assert np.allclose([p.probability for p in first], [p.probability for p in again], atol=1e-6)


def test_separate_eval_file_and_integer_labels(registry, tmp_path, tiny_checkpoint):
    pytest.importorskip("torch")
    rows = synthetic_rows(200, seed=5)
    to_int = {"negative": 0, "positive": 1}
    train = write_csv(tmp_path / "train.csv", [(t, to_int[lab]) for t, lab in rows[:160]])
    held = write_csv(tmp_path / "dev.csv", [(t, to_int[lab]) for t, lab in rows[160:]])
    result = _run(registry, tmp_path, "torch", tiny_checkpoint, train, eval_dataset=str(held))
    m = result.metrics
    assert (m["num_train_samples"], m["num_eval_samples"]) == (160, 40)
    assert m["labels"] == ["0", "1"] and set(m["eval_per_class"]) == {"0", "1"}
