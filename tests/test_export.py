"""``tl export --format onnx`` and the ONNX Runtime backend (``--runtime onnx``): tiny models trained
on either backend export through torch, pass their self-check, and predict, evaluate and find
entities on ONNX Runtime as they do on torch, also where no framework is installed; a failed
self-check writes nothing; the one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tl.cli import cli
from tl.models.inference import dataset_logits, encode
from tl.models.saved import load_saved, open_model
from tl.plugins.registry import get_backend

from conftest import BACKENDS, slow_on
from tinybert import synthetic_rows

pytestmark = pytest.mark.skipif(
    "torch" not in BACKENDS or any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs torch and tl[export]")

HELD_OUT = [t for t, _ in synthetic_rows(120, seed=42)] + ["", "a", "the the the " * 20]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("trained_on", slow_on("tensorflow"))
def test_export_gives_the_torch_logits_on_held_out_texts(registry, exported, trained_on):
    model_dir, target = exported(trained_on)
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json", "model.onnx", "special_tokens_map.json", "tl.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"]
    meta = json.loads((target / "tl.json").read_text())
    block = meta["export"]
    assert block["format"] == "onnx" and block["quantize"] is None and block["opset"] == 18
    assert block["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert block["outputs"] == ["logits", "probabilities"]
    check = block["self_check"]
    assert check["reference"] == "torch" and check["tolerance"] == 1e-3 and check["samples"] >= 20
    assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
    assert meta["labels"] == json.loads((model_dir / "tl.json").read_text())["labels"]
    onnx_model, _, _ = open_model(target, registry=registry)  # an export directory: onnx by default
    assert onnx_model.backend == "onnx" and onnx_model.precision == "fp32"
    torch_model, _ = load_saved(model_dir, get_backend(registry, "torch"))
    enc = encode(torch_model.tokenizer, HELD_OUT, None, 32)
    want, got = dataset_logits(torch_model, enc, 16), dataset_logits(onnx_model, enc, 16)
    assert np.abs(got - want).max() < 1e-4


def test_predict_and_evaluate_on_onnx_match_torch(exported, tiny_data, tmp_path):
    model_dir, target = exported("torch")
    texts = HELD_OUT[:20]
    on_torch = invoke("predict", "--model", str(model_dir), "--json", *texts)
    on_onnx = invoke("predict", "--model", str(target), "--runtime", "onnx", "--json", *texts)
    assert on_torch.exit_code == 0 and on_onnx.exit_code == 0, on_torch.output + on_onnx.output
    rows = [[json.loads(line) for line in out.output.splitlines()] for out in (on_torch, on_onnx)]
    assert [r["label"] for r in rows[0]] == [r["label"] for r in rows[1]]
    for a, b in zip(*rows, strict=True):
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) <= 1e-4
    scores = {}
    for name, args in (("torch", [str(model_dir), "--backend", "torch"]), ("onnx", [str(target)])):
        out = invoke("evaluate", "--model", *args, "--dataset", str(tiny_data), "--json", "-o", str(tmp_path / name))
        assert out.exit_code == 0, out.output
        scores[name] = json.loads(out.output)
    assert scores["onnx"]["backend"] == "onnx" and scores["onnx"]["precision"] == "fp32"
    assert scores["onnx"]["eval_accuracy"] == scores["torch"]["eval_accuracy"] >= 0.9
    assert abs(scores["onnx"]["eval_loss"] - scores["torch"]["eval_loss"]) < 1e-4


def test_int8_export_passes_its_self_check_and_agrees(registry, exported):
    model_dir, target = exported("torch", "int8")
    block = json.loads((target / "tl.json").read_text())["export"]
    assert block["quantize"] == "int8" and block["self_check"]["metric"] == "max |probability diff|"
    assert block["self_check"]["max_abs_diff"] <= block["self_check"]["tolerance"] == 0.2
    int8, _, _ = open_model(target, "onnx", registry=registry)
    torch_model, _ = load_saved(model_dir, get_backend(registry, "torch"))
    enc = encode(torch_model.tokenizer, HELD_OUT, None, 32)
    want, got = dataset_logits(torch_model, enc), dataset_logits(int8, enc)
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.95


def test_a_failed_self_check_writes_nothing(fast_run, tmp_path, monkeypatch):
    """A broken graph (here: the attention mask and token type ids swapped) is caught at the default
    tolerance; an int8 export fails a tolerance of 0. Neither leaves a directory behind."""
    import tl_torch.export

    model_dir = fast_run("torch").run_dir / "model"
    forward = tl_torch.export.Exported.forward

    def swapped(self, input_ids, attention_mask, token_type_ids):
        return forward(self, input_ids, token_type_ids, attention_mask)

    cases = [(swapped, [], "fp32 logits", "(tolerance 0.001;"),
             (forward, ["--quantize", "int8", "--tolerance", "0"], "int8 probabilities", "(tolerance 0;")]
    for patched, args, kind, tolerance in cases:
        monkeypatch.setattr(tl_torch.export.Exported, "forward", patched)
        target = tmp_path / "out" / "refused"
        out = invoke("export", "--model", str(model_dir), "--format", "onnx", *args, "-o", str(target))
        assert out.exit_code == 1, out.output
        line = out.output.strip()
        assert "\n" not in line and line.startswith(f"Error: self-check failed: the export's {kind} differ from torch's by ")
        assert tolerance in line and "the export was not written (pass --tolerance" in line
        assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # no staging directory left


def test_one_line_errors(exported, fast_run, tmp_path):
    model_dir, target = exported("torch")
    cases = [
        (["predict", "--model", str(target), "--runtime", "torch", "x"], f"{target} is an ONNX export; use --runtime onnx"),
        (["predict", "--model", str(model_dir), "--runtime", "onnx", "x"],
         f"{model_dir} is not an ONNX export; run tl export --format onnx --model {model_dir}"),
        (["export", "--model", str(model_dir), "--format", "bogus"], "unknown export format 'bogus'; formats: onnx"),
        (["export", "--model", str(model_dir), "--format", "savedmodel", "--quantize", "int8"],
         "--quantize int8 is not available for --format savedmodel (only for --format onnx)"),
        (["export", "--model", str(target), "--format", "onnx", "-o", str(tmp_path / "again")],
         f"{target} is already an onnx export; export the tl model it came from"),
        (["export", "--model", str(model_dir), "--format", "onnx", "-o", str(target)],
         f"{target} already exists; pass another --output"),
        (["run", "--backend", "onnx", "--model", str(model_dir), "-o", str(tmp_path / "run")],
         "backend 'onnx' runs exported models only and cannot train; pass --backend"),
    ]
    for args, message in cases:
        out = invoke(*args)
        assert out.exit_code == 2 and message in out.output and len(out.output.strip().splitlines()) == 1, out.output
    real_find_spec = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a))
        out = invoke("export", "--model", str(model_dir), "--format", "onnx", "-o", str(tmp_path / "no-onnxscript"))
    assert out.exit_code == 2 and "--format onnx needs onnxscript, which is not installed: pip install " \
        "'tl[torch,export]'" in out.output
    (tmp_path / "broken").mkdir()
    for name in ("tl.json", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "broken" / name).write_bytes((target / name).read_bytes())
    out = invoke("predict", "--model", str(tmp_path / "broken"), "x")
    assert out.exit_code == 2 and "is not an ONNX export (model.onnx is missing)" in out.output


def test_token_classification_export_finds_the_same_entities(tmp_path, tiny_checkpoint):
    """A tiny NER model (trained for 2 epochs here) exported to ONNX gives the spans torch gives."""
    pytest.importorskip("tl_ner")
    from test_ner import FAST, sentences, write_conll

    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.config import resolve
    from tl.training.pipeline import run

    registry = build_registry(get_plugin_manager(autoload=True))
    options = {**FAST, "epochs": 2, "backend": "torch", "model": str(tiny_checkpoint),
               "dataset": str(write_conll(tmp_path / "train.conll", sentences(200, 1))), "output": str(tmp_path / "run")}
    result = run(resolve(options, {}, dict(registry.get("task", "ner").defaults)), registry, get_plugin_manager(),
                 quiet=True)
    model_dir = result.run_dir / "model"
    out = invoke("export", "--model", str(model_dir), "--format", "onnx", "-o", str(tmp_path / "ner-onnx"))
    assert out.exit_code == 0, out.output
    texts = ["the actor Bob Smith and the cast was Paris", " ".join(["the film"] * 14) + " Erin was in Rome",
             "it is", "kim jones saw madrid and oslo"]
    found = {}
    for name, target in (("torch", model_dir), ("onnx", tmp_path / "ner-onnx")):
        out = invoke("predict", "--model", str(target), "--json", *texts)
        assert out.exit_code == 0, out.output
        found[name] = [json.loads(line)["entities"] for line in out.output.splitlines()]
    assert found["onnx"] == found["torch"] and any(found["torch"])


FRAMEWORK_DISTS = ("torch", "torchgen", "functorch", "tensorflow", "tensorflow_text", "tensorflow_io_gcs_filesystem",
                   "keras", "keras_hub", "tf_keras", "transformers", "peft", "accelerate", "jax", "jaxlib",
                   "nvidia", "triton", "onnxscript", "onnx", "onnx_ir")


def _without_frameworks(root: Path) -> Path:
    """A Python environment with everything this one has except the frameworks; returns its python
    (see ``test_runs_where_no_framework_is_installed``)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shared = root / "shared"
    shared.mkdir()

    def framework(name: str) -> bool:
        stem = name.split("-")[0].split(".")[0].lower()
        return stem in FRAMEWORK_DISTS or stem.startswith(("tensorboard", "nvidia_", "jax"))

    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if framework(entry.name):
            continue
        (site if entry.suffix == ".pth" else shared).joinpath(entry.name).symlink_to(entry)
    (site / "00-shared.pth").write_text(f"{shared}\n")
    return python


def test_runs_where_no_framework_is_installed(exported, tiny_data, tmp_path):
    """``tl predict/evaluate --runtime onnx`` in an environment without torch, TensorFlow, Keras,
    transformers, PEFT, onnx or onnxscript, built in about a second without copying anything:
    ``python -m venv --without-pip``, then in its site-packages a ``00-shared.pth`` naming a directory
    of symlinks to every entry of this environment's site-packages except the frameworks
    (``FRAMEWORK_DISTS``) and their ``*.dist-info``; the ``*.pth`` files are linked into the new
    site-packages itself, since Python reads ``.pth`` files only there. tl's editable install is
    wired by ``__editable__.tl-*.pth``, which imports its ``__editable___tl_*_finder`` module: found in
    the shared directory, which ``00-shared.pth`` (read first: name order) put on ``sys.path``. The
    ``*.dist-info`` directories there give the entry points, so the plugins register as usual."""
    model_dir, target = exported("torch")
    python = _without_frameworks(tmp_path)
    probe = "import importlib.util as u; print([m for m in ('torch', 'tensorflow', 'keras', 'transformers', 'onnx') if u.find_spec(m)])"
    env = {**os.environ, "TL_DEBUG": ""}
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env).stdout.strip() == "[]"
    texts = HELD_OUT[:6]
    out = subprocess.run([str(python), "-m", "tl", "predict", "--model", str(target), "--runtime", "onnx", "--json",
                          *texts], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    want = invoke("predict", "--model", str(model_dir), "--json", *texts)
    for a, b in zip(want.output.splitlines(), out.stdout.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) <= 1e-4
    out = subprocess.run([str(python), "-m", "tl", "evaluate", "--model", str(target), "--runtime", "onnx",
                          "--dataset", str(tiny_data), "--json", "-o", str(tmp_path / "ev.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["eval_accuracy"] >= 0.9 and json.loads(out.stdout)["backend"] == "onnx"
    for args, message in ((["predict", "--model", str(model_dir), "x"], "no backend that runs tl models is "
                            "installed: pip install 'tl[torch]' or 'tl[tensorflow]'"),
                          (["export", "--model", str(model_dir), "--format", "onnx"], "--format onnx is written by "
                           "torch, which is not installed: pip install 'tl[torch,export]'")):
        refused = subprocess.run([str(python), "-m", "tl", *args], capture_output=True, text=True, env=env, timeout=120)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_auto_precision_on_onnx_is_fp32(exported, registry):
    from tl.errors import UsageError
    from tl.models.saved import supported_precision

    onnx = get_backend(registry, "onnx")
    assert onnx.capabilities.precisions == ("fp32",)
    assert supported_precision(onnx, "bf16", "auto") == "fp32"  # a CPU computing bf16 natively
    assert supported_precision(onnx, "fp32", "bf16") == "fp32"  # the plan's own fallback
    with pytest.raises(UsageError, match="the onnx runtime computes in fp32, not fp16; pass --precision auto"):
        supported_precision(onnx, "fp16", "fp16")
    with pytest.raises(UsageError, match="runs exported models only; train with --backend torch or tensorflow"):
        onnx.build_model(Path("x"), None, None, init="pretrained", seed=0, info={})
