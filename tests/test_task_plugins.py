"""The task plugins shipped as separate distributions (plugins/pair: tl-pair, plugins/multiclass:
tl-multiclass): found only through their installed entry points, and each trains a tiny real model on
every installed backend."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tl.errors import DataError
from tl.interfaces import Task
from tl.plugins import build_registry, get_plugin_manager
from tl.training.config import resolve

from conftest import BACKENDS, slow_on
from tinybert import FILLER, NEGATIVE, NEUTRAL, POSITIVE, make_checkpoint

#: Measured over ten data seeds on each backend with the 64-wide checkpoint below: every run reached 1.0
#: accuracy (the 32-wide session checkpoint, or lr 3e-3, left one run in five stuck with two classes merged).
FAST = {"epochs": 8, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.1, "precision": "fp32", "max_length": 32}
PLUGIN_TASKS = {"nli": "tl-pair", "paraphrase": "tl-pair", "classify": "tl-multiclass"}


@pytest.fixture(scope="module")
def plugin_registry():
    return build_registry(get_plugin_manager(autoload=True))


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny64", hidden=64)


def _sentence(rng, pool: list[str] = (), fillers: tuple[int, int] = (2, 7), k: int = 1) -> str:
    """Filler words with ``k`` words of ``pool`` at random places."""
    words = list(rng.choice(FILLER, size=int(rng.integers(*fillers))))
    for word in (rng.choice(pool, size=k) if len(pool) else []):
        words.insert(int(rng.integers(0, len(words) + 1)), str(word))
    return " ".join(words)


def pair_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(premise, hypothesis, label): the premise is filler only and the hypothesis holds the word that
    decides the label, so a model that never sees the second text cannot beat chance (1/3)."""
    rng = np.random.default_rng(seed)
    pools = {"entailment": POSITIVE, "neutral": NEUTRAL, "contradiction": NEGATIVE}
    labels = ("contradiction", "entailment", "neutral")
    return [(_sentence(rng), _sentence(rng, pools[lab], (1, 4), k=2), lab)
            for lab in (labels[i % 3] for i in range(n))]


#: Four classes, each named by one pool of words; the names exercise case-insensitive ordering.
TOPICS = {"World": POSITIVE, "sports": NEGATIVE, "Business": NEUTRAL, "sci_tech": ["director", "script", "music"]}


def topic_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    return [(_sentence(rng, TOPICS[lab]), lab) for lab in (names[i % 4] for i in range(n))]


def write_rows(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _run(registry, task_name: str, backend: str, checkpoint: Path, data: Path, output: Path, **over):
    """``tl run`` through the Python API, with the task's defaults as the CLI applies them."""
    from tl.training.pipeline import run

    task = registry.get("task", task_name)
    options = {**FAST, "task": task_name, "backend": backend, "model": str(checkpoint), "dataset": str(data),
               "output": str(output), **over}
    return run(resolve(options, {}, dict(task.defaults)), registry, get_plugin_manager(), quiet=True)


# discovery ---------------------------------------------------------------------------------------

def test_discovered_only_through_installed_entry_points(plugin_registry):
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="tl")}
    assert eps["pair"].value == "tl_pair.plugin" and eps["pair"].dist.name == "tl-pair"
    assert eps["multiclass"].value == "tl_multiclass.plugin" and eps["multiclass"].dist.name == "tl-multiclass"
    for task, dist in PLUGIN_TASKS.items():
        assert plugin_registry.providers[("task", task)] == f"{dist} 0.1.0"
    assert plugin_registry.failures == []
    # with entry points off, nothing registers them: they are not built into tl
    hermetic = build_registry(get_plugin_manager(autoload=False))
    assert not set(PLUGIN_TASKS) & set(hermetic.names("task"))


def test_tl_plugins_lists_them():
    out = subprocess.run([sys.executable, "-m", "tl", "plugins", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {r["name"]: r for r in data["plugins"] if r["kind"] == "task"}
    for task, dist in PLUGIN_TASKS.items():
        assert rows[task]["provider"] == f"{dist} 0.1.0" and rows[task]["status"] == "available"
    assert data["failures"] == []


# label handling and metrics ----------------------------------------------------------------------

def test_nli_label_order(plugin_registry):
    nli = plugin_registry.get("task", "nli")
    assert nli.label_order(["contradiction", "entailment", "neutral"] * 2) == ("entailment", "neutral", "contradiction")
    assert nli.label_order(["Contradiction", "Entailment", "NEUTRAL"]) == ("Entailment", "NEUTRAL", "Contradiction")
    assert nli.label_order(["not_entailment", "entailment"]) == ("entailment", "not_entailment")  # RTE / QNLI
    assert nli.label_order(["Not-Entailment", "entails"]) == ("entails", "Not-Entailment")
    assert nli.label_order(["2", "0", "1", "10"]) == ("0", "1", "2", "10")
    assert nli.label_order(["yes", "maybe", "no"]) == ("maybe", "no", "yes")  # any other names: alphabetical
    assert nli.defaults["text_column"] == "premise" and nli.defaults["text_pair_column"] == "hypothesis"
    for no_gold in ("-1", "-"):
        with pytest.raises(DataError, match="without a gold label"):
            nli.validate_labels(nli.label_order(["0", "1", "2", no_gold]), "snli.csv")
    with pytest.raises(DataError, match="single class"):
        nli.validate_labels(("entailment",), "x.csv")


def test_pair_tasks_refuse_single_texts(plugin_registry, tmp_path, tiny_checkpoint, tiny_data):
    from tl.data.examples import Examples

    for name in ("nli", "paraphrase"):
        task = plugin_registry.get("task", name)
        with pytest.raises(DataError, match=f"task '{name}' classifies text pairs, but x.csv has no second text; "
                                            "pass --text-pair-column"):
            task.observed_labels(Examples(["a", "b"], ["0", "1"], None, source="x.csv"))
        assert list(task.observed_labels(Examples(["a", "b"], ["0", "1"], ["c", "d"]))) == ["0", "1"]
    if hasattr(Task, "observed_labels") and BACKENDS:  # tl versions whose runner asks the task for the labels
        from tl.training.pipeline import run

        # the Python API without the task's defaults: no pair column, refused before anything is written
        options = {**FAST, "task": "nli", "backend": BACKENDS[0], "model": str(tiny_checkpoint),
                   "dataset": str(tiny_data), "output": str(tmp_path / "run")}
        with pytest.raises(DataError, match="has no second text"):
            run(resolve(options, {}, {}), plugin_registry, get_plugin_manager(), quiet=True)
        assert not (tmp_path / "run").exists()


def test_paraphrase_label_order_and_f1(plugin_registry):
    para = plugin_registry.get("task", "paraphrase")
    assert para.label_order(["paraphrase", "not_paraphrase"]) == ("not_paraphrase", "paraphrase")
    assert para.label_order(["equivalent", "not_equivalent"]) == ("not_equivalent", "equivalent")  # MRPC
    assert para.label_order(["duplicate", "not duplicate"]) == ("not duplicate", "duplicate")  # QQP
    assert para.label_order(["Yes", "No"]) == ("No", "Yes")
    assert para.label_order(["1", "0"]) == ("0", "1")
    assert para.defaults["text_column"] == "sentence1" and para.defaults["text_pair_column"] == "sentence2"
    with pytest.raises(DataError, match="binary.*3 classes.*--task nli"):
        para.validate_labels(("a", "b", "c"), "x.csv")
    m = para.metrics(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), ("0", "1"))
    assert m["f1"] == pytest.approx(2 / 3) and m["positive_label"] == "1"
    assert m["accuracy"] == pytest.approx(3 / 5) and m["confusion_matrix"] == [[1, 1], [1, 2]]


def test_classify_label_order_and_metrics(plugin_registry):
    clf = plugin_registry.get("task", "classify")
    assert clf.label_order(["World", "sports", "Business", "sci_tech", "World"]) == (
        "Business", "sci_tech", "sports", "World")
    assert clf.label_order(["10", "2", "1"]) == ("1", "2", "10")
    with pytest.raises(DataError, match="looks like free text.*--label-column"):
        clf.label_order([f"a review number {i}" for i in range(100)])
    assert len(clf.label_order([str(i % 60) for i in range(600)])) == 60  # many classes, many rows: fine
    labels = ("a", "b", "c")
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    m = clf.metrics(y_true, y_pred, labels)
    # per class f1: a 6/7 (p 1, r 3/4), b 1/2, c 4/5 ; recalls 3/4, 1/2, 1 ; supports 4, 2, 2
    assert m["weighted_f1"] == pytest.approx((4 * 6 / 7 + 2 * 0.5 + 2 * 0.8) / 8)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((6 / 7 + 0.5 + 0.8) / 3)
    assert m["top_confusions"] == [{"true": "a", "predicted": "b", "count": 1},
                                   {"true": "b", "predicted": "c", "count": 1}]
    json.dumps(m)  # everything lands in metrics.json


# training on every backend -----------------------------------------------------------------------

@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_nli_trains_through_the_pair_path(plugin_registry, tmp_path, wide_checkpoint, backend_name):
    from tl.models.inference import predict
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    data = write_rows(tmp_path / "nli.csv", ["premise", "hypothesis", "label"], pair_rows(480, seed=5))
    result = _run(plugin_registry, "nli", backend_name, wide_checkpoint, data, tmp_path / "run")
    m = result.metrics
    assert m["labels"] == ["entailment", "neutral", "contradiction"] and m["task"] == "nli"
    assert m["eval_accuracy"] >= 0.9, m  # chance is 1/3; the label is only in the second text
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert (config["text_column"], config["text_pair_column"]) == ("premise", "hypothesis")

    # the saved model reads pairs: one premise, three hypotheses, three answers
    model, meta = load_saved(result.run_dir / "model", get_backend(plugin_registry, backend_name))
    assert meta["task"] == "nli"
    premise = "the film is this story"
    preds = predict(model, [premise] * 3, max_length=32,
                    pairs=["it was great", "it was quite dull", "it was okay"])
    assert [p.label for p in preds] == ["entailment", "contradiction", "neutral"]

    if hasattr(Task, "predict"):  # tl versions where `tl predict` goes through the task
        from click.testing import CliRunner

        from tl.cli import cli

        inputs = tmp_path / "pairs.txt"
        inputs.write_text(f"{premise}\tit was great\n{premise}\tit was quite dull\n")
        out = CliRunner().invoke(cli, ["predict", "--model", str(result.run_dir / "model"), "--input", str(inputs),
                                       "--json", f"{premise}\tit was okay"])
        assert out.exit_code == 0, out.output
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["label"] for r in rows] == ["neutral", "entailment", "contradiction"]
        assert rows[0]["text"] == f"{premise}\tit was okay"
        out = CliRunner().invoke(cli, ["predict", "--model", str(result.run_dir / "model"), "just one text"])
        assert out.exit_code == 2 and "give each input as FIRST<TAB>SECOND" in out.output

        # tabular input: the task's columns (premise, hypothesis) by default, or --text-pair-column
        table = write_rows(tmp_path / "to_label.csv", ["premise", "hypothesis", "claim"],
                           [(premise, "it was quite dull", "it was great"), (premise, "it was okay", "it was okay")])
        for extra, expected in (([], ["contradiction", "neutral"]),
                                (["--text-pair-column", "claim"], ["entailment", "neutral"])):
            out = CliRunner().invoke(cli, ["predict", "--model", str(result.run_dir / "model"), "--input", str(table),
                                           "--json", *extra])
            assert out.exit_code == 0, out.output
            assert [json.loads(line)["label"] for line in out.stdout.splitlines()] == expected
        out = CliRunner().invoke(cli, ["predict", "--model", str(result.run_dir / "model"), "--input", str(table),
                                       "--text-pair-column", "nope"])
        assert out.exit_code == 2 and "column 'nope' not found in to_label.csv" in out.output
        out = CliRunner().invoke(cli, ["predict", "--model", str(result.run_dir / "model"), "--input", str(inputs),
                                       "--text-pair-column", "claim"])
        assert out.exit_code == 2 and "FIRST<TAB>SECOND" in out.output


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_classify_trains_four_classes(plugin_registry, tmp_path, wide_checkpoint, backend_name):
    data = write_rows(tmp_path / "topics.csv", ["text", "topic"], topic_rows(480, seed=6))
    result = _run(plugin_registry, "classify", backend_name, wide_checkpoint, data, tmp_path / "run",
                  label_column="topic")
    m = result.metrics
    assert m["labels"] == ["Business", "sci_tech", "sports", "World"] and m["task"] == "classify"
    assert m["eval_accuracy"] >= 0.85, m  # chance is 1/4
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["eval_weighted_f1"] >= 0.85 and saved["eval_balanced_accuracy"] >= 0.85
    assert len(saved["eval_confusion_matrix"]) == 4 and isinstance(saved["eval_top_confusions"], list)


# the command line ---------------------------------------------------------------------------------

def _tl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tl", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))


def test_pair_task_without_a_pair_column_is_one_line(tmp_path, tiny_checkpoint, tiny_data):
    for args, option in ((["--task", "nli", "--text-column", "text"], "--text-pair-column"),
                         (["--task", "paraphrase", "--text-column", "text", "--text-pair-column", "nope"],
                          "--text-pair-column"),
                         (["--task", "nli"], "--text-column")):
        out = _tl("run", *args, "--model", str(tiny_checkpoint), "--dataset", str(tiny_data),
                  "-o", str(tmp_path / "never"), "-q")
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert "not found in train.csv" in lines[0] and f"Pass {option}." in lines[0], lines[0]
    assert not (tmp_path / "never").exists()
    out = _tl("run", "--task", "classify", "--model", str(tiny_checkpoint), "-o", str(tmp_path / "never"))
    assert out.returncode == 2 and "task 'classify' has no default dataset; pass --dataset" in out.stderr


def test_paraphrase_cli_run_with_the_task_columns(tmp_path, wide_checkpoint):
    """``tl run --task paraphrase`` reads sentence1/sentence2 by default and reports the positive-class F1."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from tl.cli import cli

    rows = [(p, h, "paraphrase" if lab == "entailment" else "not_paraphrase")
            for p, h, lab in pair_rows(480, seed=7) if lab != "neutral"]
    data = tmp_path / "mrpc.tsv"
    data.write_text("sentence1\tsentence2\tlabel\n" + "".join("\t".join(r) + "\n" for r in rows))
    result = CliRunner().invoke(cli, [
        "run", "--task", "paraphrase", "--backend", "torch", "--model", str(wide_checkpoint), "--dataset", str(data),
        "--epochs", "8", "--lr", "1e-3", "--batch-size", "16", "--max-length", "32", "--precision", "fp32",
        "-o", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads([ln for ln in result.stdout.splitlines() if ln.startswith("{")][-1])
    assert m["labels"] == ["not_paraphrase", "paraphrase"] and m["eval_positive_label"] == "paraphrase"
    assert m["eval_accuracy"] >= 0.9 and m["eval_f1"] >= 0.9, m
