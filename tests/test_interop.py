"""A model fine-tuned on one backend loads and predicts on the other with the same labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tl.models.inference import dataset_logits, encode
from tl.models.saved import load_saved
from tl.plugins.registry import get_backend

from conftest import BACKENDS
from tinybert import synthetic_rows

pytestmark = pytest.mark.skipif(len(BACKENDS) < 2, reason="needs both torch and tensorflow")
DIRECTIONS = [("torch", "tensorflow"), ("tensorflow", "torch")]


def _agreement(registry, run_dir, trained_on, texts):
    out = {}
    for name in (trained_on, *(b for b in BACKENDS if b != trained_on)):
        model, meta = load_saved(run_dir / "model", get_backend(registry, name))
        out[name] = dataset_logits(model, encode(model.tokenizer, texts, None, meta["max_length"]))
    a, b = out.values()
    return float((a.argmax(1) == b.argmax(1)).mean()), float(np.abs(a - b).max())


@pytest.mark.parametrize("trained_on, other", DIRECTIONS)
def test_train_on_one_predict_on_the_other(registry, fast_run, trained_on, other):
    result = fast_run(trained_on)  # conftest.FAST: 4 epochs of the tiny BERT on tiny_data
    texts = [t for t, _ in synthetic_rows(300, seed=42)]
    agree, max_diff = _agreement(registry, result.run_dir, trained_on, texts)
    assert agree >= 0.99 and max_diff < 1e-3, (agree, max_diff)


@pytest.mark.integration
@pytest.mark.parametrize("trained_on, texts", [pytest.param("tensorflow", 500, marks=pytest.mark.slow), ("torch", 64)])
def test_real_minilm_interop(registry, minilm_run, trained_on, texts):
    """MiniLM fine-tuned on one backend (conftest.MINILM_BUDGET, the runs test_integration checks too)
    gives the same logits on the other, on held-out Rotten Tomatoes snippets (torch -> tensorflow on
    64: TensorFlow's MiniLM is the slow side to run; tensorflow -> torch with -m slow, as it needs the
    TensorFlow fine-tune). Measured on CPU in fp32: every label agrees, max
    logit difference ~6e-7 (logits up to 1.3); 1e-3 is the bound every interop test here uses."""
    from tl.assets.catalog import load_rotten_tomatoes

    result = minilm_run(trained_on, "pretrained")
    assert result.metrics["train_steps"] > 0 and result.metrics["precision"] == "fp32"
    agree, max_diff = _agreement(registry, result.run_dir, trained_on, load_rotten_tomatoes().eval.texts[:texts])
    assert agree >= 0.98 and max_diff < 1e-3, (agree, max_diff)


def test_export_savedmodel_serves_the_same_logits(registry, tmp_path, fast_run):
    """Trained on torch, exported for TensorFlow Serving: the signature gives the same logits."""
    import tensorflow as tf
    from click.testing import CliRunner

    from tl.cli import cli

    result = fast_run("torch")
    out = CliRunner().invoke(cli, ["export", "--model", str(result.run_dir / "model"), "--format", "savedmodel",
                                   "-o", str(tmp_path / "served")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "served" / "assets" / "tl.json").is_file()
    torch_model, _ = load_saved(result.run_dir / "model", get_backend(registry, "torch"))
    texts = ["the film was great", "a boring mess", "quite a moving story and a superb cast"]
    enc = encode(torch_model.tokenizer, texts, None, 32)
    batch = enc.collate(range(len(texts)))
    expected = torch_model.logits([batch])
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    got = served(input_ids=tf.constant(batch.input_ids), attention_mask=tf.constant(batch.attention_mask),
                 token_type_ids=tf.constant(batch.token_type_ids))
    assert np.abs(got["logits"].numpy() - expected).max() < 1e-4
    assert np.allclose(got["probabilities"].numpy().sum(axis=1), 1, atol=1e-5)
    check = json.loads((tmp_path / "served" / "assets" / "tl.json").read_text())["export"]["self_check"]
    assert check["reference"] == "tensorflow" and check["samples"] >= 20 and check["max_abs_diff"] < 1e-4
    again = CliRunner().invoke(cli, ["export", "--model", str(result.run_dir / "model"), "--format", "bogus"])
    assert again.exit_code == 2 and "unknown export format 'bogus'; formats: onnx, savedmodel" in again.output
