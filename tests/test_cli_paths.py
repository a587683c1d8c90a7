"""CLI paths that other tests do not walk: a ``--model`` that is not a checkpoint (and runs that stop
before training leave no directory), every ``tl predict`` input route against texts given as
arguments, the facts ``tl env`` reports, head+tail truncation from training to ``tl predict``, and the
real MiniLM fine-tuned on torch predicting on TensorFlow."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import tl
from tl.cli import cli
from tl.data.tokenization import Tokenizer
from tl.data.truncation import HEAD_SHARE
from tl.evaluation.metrics import softmax
from tl.models.inference import dataset_logits, encode
from tl.models.saved import load_saved
from tl.plugins.registry import get_backend

from conftest import BACKENDS, FAST, slow_on
from tinybert import synthetic_rows


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def one_line_error(result: Result, *fragments: str, code: int = 2) -> str:
    """The command stopped with exit status ``code`` and one ``Error:`` line holding ``fragments``."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not a crash
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def json_rows(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- tl run --model PATH that is not a checkpoint ---------------------------------------------------

@pytest.mark.parametrize("given, fragments", [
    ("./no/such/dir", ["model directory ./no/such/dir not found", "checkpoint directory", "alias", "hub id"]),
    # more slashes than a hub id (org/name) has: a path, not a hub request that fails offline with exit 1
    ("no/such/dir", ["model directory no/such/dir not found", "checkpoint directory"]),
    ("weights.bin", ["weights.bin is not a directory", "--model takes a checkpoint directory"]),
    ("empty", ["empty is not a Hugging Face checkpoint: config.json is missing", "save_pretrained"]),
])
def test_run_with_a_model_path_that_is_not_a_checkpoint(tmp_path, monkeypatch, tiny_data, given, fragments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    (tmp_path / "empty").mkdir()
    result = invoke("run", "--model", given, "--dataset", str(tiny_data), "-q")
    one_line_error(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "weights.bin"]  # no runs/<id> made


def _fp16_strict_fails_here() -> bool:
    from tl.errors import UsageError
    from tl.training.plan import PlanRequest, make_plan

    try:
        make_plan(get_backend(_registry(), "torch").probe(), PlanRequest(precision="fp16", strict=True))
    except UsageError:
        return True
    return False


def _registry():
    from tl.plugins import build_registry, get_plugin_manager

    return build_registry(get_plugin_manager())


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_a_run_that_stops_before_training_leaves_no_directory(tmp_path, monkeypatch, tiny_checkpoint, tiny_data):
    """--precision fp16 --precision-strict on a CPU stops in the plan stage, after the run directory
    was made: the directories tl made for it go; one the user made stays."""
    if not _fp16_strict_fails_here():
        pytest.skip("this machine computes fp16 natively")
    monkeypatch.chdir(tmp_path)
    base = ["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data), "--max-length", "32",
            "--precision", "fp16", "--precision-strict", "-q"]
    one_line_error(invoke(*base), "fp16 requested", "--precision-strict")  # default output runs/<id>
    (tmp_path / "mine").mkdir()
    one_line_error(invoke(*base, "-o", "mine"), "fp16 requested")
    one_line_error(invoke(*base, "-o", "new/deep/run"), "fp16 requested")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"] and not any((tmp_path / "mine").iterdir())


# --- tl predict: every input route ------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(fast_run) -> Path:
    return fast_run(BACKENDS[0]).run_dir / "model"


TEXTS = [t for t, _ in synthetic_rows(6, seed=7)] + ['a "superb", moving film', "café: a dull plot"]


def test_predict_input_routes_equal_texts_as_arguments(tmp_path, model_dir):
    """stdin, .txt, .jsonl, .parquet, .csv and .tsv give the very predictions (labels and every
    probability) of the same texts on the command line: one JSON object per input, in order."""
    import pandas as pd

    model = ["predict", "--model", str(model_dir), "--json", "--threads", "1"]
    expected = json_rows(invoke(*model, *TEXTS))
    assert [r["text"] for r in expected] == TEXTS
    assert {r["label"] for r in expected} <= {"negative", "positive"}
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in expected)

    df = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS})
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)),
                                       encoding="utf-8")
    df.rename(columns={"text": "review"}).to_parquet(tmp_path / "in.parquet")
    df.to_csv(tmp_path / "in.csv", index=False)
    df.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    routes = {
        "stdin": invoke(*model, "--input", "-", stdin="\n".join(TEXTS) + "\n\n"),
        "txt": invoke(*model, "--input", str(tmp_path / "in.txt")),
        "jsonl": invoke(*model, "--input", str(tmp_path / "in.jsonl")),
        "parquet": invoke(*model, "--input", str(tmp_path / "in.parquet"), "--text-column", "review"),
        "csv": invoke(*model, "--input", str(tmp_path / "in.csv")),
        "tsv": invoke(*model, "--input", str(tmp_path / "in.tsv")),
    }
    for route, result in routes.items():
        assert json_rows(result) == expected, route
    # the table output is the same predictions
    table = invoke("predict", "--model", str(model_dir), "--input", str(tmp_path / "in.csv"))
    assert table.exit_code == 0, table.output
    assert [ln.split()[0] for ln in table.stdout.splitlines()] == [r["label"] for r in expected]


def test_predict_bad_inputs_are_one_line_errors(tmp_path, model_dir):
    import pandas as pd

    def write(name: str, content: str) -> str:
        (tmp_path / name).write_text(content, encoding="utf-8")
        return str(tmp_path / name)

    pd.DataFrame({"review": ["fine"]}).to_parquet(tmp_path / "cols.parquet")
    pd.DataFrame({"text": ["fine", None, "good"]}).to_parquet(tmp_path / "null.parquet")
    cases = [
        (["--input", write("cols.jsonl", '{"review": "fine"}\n')],
         ["column 'text' not found in cols.jsonl", "columns are: review", "--text-column"]),
        (["--input", str(tmp_path / "cols.parquet")], ["column 'text' not found in cols.parquet", "--text-column"]),
        # a row without the column (JSON Lines) or a null cell (Parquet) is not predicted as "nan" / "None"
        (["--input", write("gap.jsonl", '{"text": "fine"}\n{"id": 2}\n')], ["gap.jsonl row 2", "column 'text'"]),
        (["--input", str(tmp_path / "null.parquet")], ["null.parquet row 2", "empty text in column 'text'"]),
        (["--input", write("gap.csv", "text\nfine\n\"\"\n")], ["gap.csv row 3", "empty text"]),
        (["--input", write("bad.jsonl", '{"text": "fine"}\n{"text": "oops\n')], ["bad.jsonl line 2", "not valid JSON"]),
        (["--input", write("list.jsonl", '["a list"]\n')], ["list.jsonl line 1", "expected a JSON object"]),
        (["--input", write("junk.parquet", "not parquet at all")], ["cannot read", "junk.parquet", "as parquet"]),
        (["--input", str(tmp_path / "absent.jsonl")], ["absent.jsonl not found"]),
        (["--input", write("blank.txt", "\n  \n")], ["blank.txt has no texts"]),
    ]
    model = ["predict", "--model", str(model_dir), "--json"]
    for args, fragments in cases:
        one_line_error(invoke(*model, *args), *fragments)
    for stdin in ("", "\n \n"):  # nothing (or only blank lines) on stdin
        one_line_error(invoke(*model, "--input", "-", stdin=stdin), "stdin (--input -) has no texts")


# --- tl env -----------------------------------------------------------------------------------------

def _check_env(data: dict, text: str, tl_home: Path) -> None:
    import torch
    import transformers

    assert data["tl"] == tl.__version__ and data["python"] == platform.python_version()
    assert data["platform"] == platform.platform()
    assert data["tl_home"] == str(tl_home)
    assert data["cpu"]["logical_cores"] == os.cpu_count()
    usable = len(os.sched_getaffinity(0))
    assert data["cpu"]["usable_cores"] == usable
    t = data["backends"]["torch"]
    assert t["available"] and t["versions"] == {"torch": torch.__version__, "transformers": transformers.__version__}
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(t["probe"]["accelerators"]) == gpus
    assert t["plan"]["device"] == ("cuda" if gpus else "cpu") and t["plan"]["threads"] == usable
    assert t["plan"]["effective_batch"] == 32
    lines = text.splitlines()
    assert lines[0] == f"tl {tl.__version__} | Python {platform.python_version()} | {platform.platform()}"
    assert f"cache: {tl_home}" in lines
    assert f"backend torch: torch {torch.__version__}, transformers {transformers.__version__}" in lines
    plan = lines[lines.index(f"backend torch: torch {torch.__version__}, transformers {transformers.__version__}") + 1]
    assert plan.startswith(f"  plan: {t['plan']['device']} |") and plan.endswith(f"| {usable} threads")


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_env_reports_the_real_versions_devices_and_home_without_tensorflow(tmp_path, monkeypatch):
    """TensorFlow hidden (find_spec finds nothing, import fails, as when it is not installed): tl env
    still succeeds, says how to install it, and reports torch's real facts and TL_HOME."""
    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    result = invoke("env", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    text = invoke("env")
    assert text.exit_code == 0, text.output
    _check_env(data, text.stdout, tmp_path / "home")
    assert data["backends"]["tensorflow"]["available"] is False and "probe" not in data["backends"]["tensorflow"]
    assert "backend tensorflow: not installed (pip install 'tl[tensorflow]')" in text.stdout.splitlines()


@pytest.mark.slow
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs torch and tensorflow")
def test_env_reports_tensorflow(tl_home):
    """With every backend (imports TensorFlow: slow): TensorFlow's real versions and devices."""
    import keras
    import tensorflow as tf

    result = invoke("env", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    _check_env(data, invoke("env").stdout, Path(os.environ["TL_HOME"]))
    entry = data["backends"]["tensorflow"]
    assert entry["available"] and entry["versions"]["tensorflow"] == tf.__version__
    assert entry["versions"]["keras"] == keras.__version__
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert len(entry["probe"]["accelerators"]) == gpus and (gpus or entry["plan"]["device"] == "cpu")


# --- head+tail truncation end to end ----------------------------------------------------------------

POS, NEG = "superb wonderful", "awful tedious"
FILL = "the film was quite plain and the story was very average"


def long_texts() -> list[str]:
    """Much longer than FAST's max_length, the deciding words only at the start and at the end."""
    middle = " ".join([FILL] * 12)
    return [f"{a} {middle} {b}" for a, b in ((POS, POS), (NEG, NEG), (POS, NEG), (NEG, POS))]


@pytest.mark.parametrize("runtime", slow_on("tensorflow"))
def test_head_plus_tail_from_training_to_predict(model_dir, runtime):
    """The fast_run model was trained with the default head+tail truncation: tl.json records it, the
    saved tokenizer keeps a quarter of the budget from the start and the rest from the end, and tl
    predict (on either runtime) computes on exactly those tokens."""
    meta = json.loads((model_dir / "tl.json").read_text())
    assert meta["truncation"] == "head+tail" and meta["max_length"] == FAST["max_length"] == 32
    texts = long_texts()
    tokenizer = Tokenizer.from_dir(model_dir)
    full, _ = tokenizer.encode(texts, max_length=10_000)
    assert min(len(f) for f in full) > 3 * meta["max_length"]
    tokenizer.truncation = meta["truncation"]
    rows, _, owner = tokenizer.encode_long(texts, meta["max_length"])
    head = int((meta["max_length"] - 2) * HEAD_SHARE)
    assert head == 7 and owner.tolist() == [0, 1, 2, 3]
    for ids, row in zip(full, rows, strict=True):
        assert len(row) == 32 and row[0] == ids[0] and row[-1] == ids[-1]  # [CLS] ... [SEP]
        assert row[1:1 + head].tolist() == ids[1:1 + head].tolist()  # the first 7 tokens
        assert row[1 + head:-1].tolist() == ids[-1 - 23:-1].tolist()  # the last 23
    words = [tokenizer._tok.decode(r.tolist()) for r in rows]
    assert words[2].startswith(POS) and words[2].endswith(NEG)

    model, loaded = load_saved(model_dir, get_backend(_registry(), runtime))
    assert model.tokenizer.truncation == "head+tail"
    enc = encode(model.tokenizer, texts, None, loaded["max_length"])
    assert [r.tolist() for r in enc.ids] == [r.tolist() for r in rows]  # the ids every runtime is fed
    expected = softmax(dataset_logits(model, enc))
    head_only = softmax(dataset_logits(model, encode(_with(model.tokenizer, "head"), texts, None, 32)))
    got = json_rows(invoke("predict", "--model", str(model_dir), "--runtime", runtime, "--json",
                           *texts))
    probs = np.array([[r["probabilities"][label] for label in loaded["labels"]] for r in got])
    assert np.abs(probs - expected).max() < 1e-5
    assert np.abs(probs - head_only).max() > 1e-3  # the test can tell the modes apart
    assert [r["label"] for r in got[:2]] == ["positive", "negative"]


def _with(tokenizer: Tokenizer, mode: str) -> Tokenizer:
    copy = Tokenizer.from_dir(tokenizer.source)
    copy.truncation = mode
    return copy

