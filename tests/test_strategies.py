"""Transfer strategies (``--strategy``) on each backend: what trains and what stays, parameter counts,
discriminative rates, LoRA adapters saved alone (PEFT format) or merged, and loaded on either backend.
Tiny random encoders learn little when frozen, so these tests check the mechanics; how well each
strategy learns on the real MiniLM is in the README's benchmark table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tl.errors import UsageError
from tl.models.hf_checkpoint import load_state
from tl.models.inference import dataset_logits, encode
from tl.models.saved import load_saved
from tl.plugins import get_plugin_manager
from tl.plugins.registry import get_backend
from tl.training.config import resolve
from tl.training.pipeline import run
from tl.training.strategies import Strategy, depth, lr_scale, trainable_depth

from conftest import BACKENDS, slow_on
from tinybert import synthetic_rows

HIDDEN, LAYERS = 32, 2  # tests/tinybert.py defaults
HEAD = HIDDEN * HIDDEN + HIDDEN + HIDDEN * 2 + 2  # pooler + classifier (2 labels)
TOTAL = 24002


def _run(registry, tmp_path, backend, ckpt, data, name, **over):
    options = {"backend": backend, "model": str(ckpt), "dataset": str(data), "epochs": 2, "batch_size": 16,
               "lr": 5e-3, "max_length": 32, "precision": "fp32", "output": str(tmp_path / name), **over}
    return run(resolve(options, {}, {}), registry, get_plugin_manager(), quiet=True)


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if k in after and not np.array_equal(before[k], after[k])}


def test_groups_depths_and_rates():
    assert [depth(k, 12) for k in ("classifier.weight", "bert.pooler.dense.bias", "encoder.layer.11.output.dense.weight",
                                   "encoder.layer.0.attention.self.query.weight", "embeddings.word_embeddings.weight")] \
        == [0, 0, 1, 12, 13]
    s = Strategy("gradual-unfreeze", layer_lr_decay=0.5)
    assert [trainable_depth(s, e, 12) for e in (0, 1, 5, 20)] == [0, 1, 5, 13]
    assert lr_scale("encoder.layer.10.output.dense.weight", 12, s) == 0.25
    assert trainable_depth(Strategy("freeze"), 3, 12) == trainable_depth(Strategy("lora"), 3, 12) == 0
    assert trainable_depth(Strategy(), 0, 12) == 13


def test_strategy_options_are_checked():
    with pytest.raises(UsageError, match="strategy must be one of"):
        resolve({"strategy": "distill"}, {}, {})
    with pytest.raises(UsageError, match="--merge-adapters applies to --strategy lora only"):
        resolve({"strategy": "freeze", "merge_adapters": True}, {}, {})
    with pytest.raises(UsageError, match="layer-lr-decay must be in"):
        resolve({"layer_lr_decay": 1.5}, {}, {})


def test_freeze_trains_the_head_only(registry, tmp_path, tiny_checkpoint, tiny_data, backend_name):
    result = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "freeze", strategy="freeze")
    m = result.metrics
    assert (m["strategy"], m["trainable_parameters"], m["total_parameters"]) == ("freeze", HEAD, TOTAL)
    changed = _changed(load_state(tiny_checkpoint), load_state(result.run_dir / "model"))
    assert changed == {"pooler.dense.weight", "pooler.dense.bias"}  # the classifier is new: not compared


def test_gradual_unfreeze_unfreezes_from_the_top(registry, tmp_path, tiny_checkpoint, tiny_data, backend_name):
    """Epoch 0 trains the head, epoch 1 also the top layer (layer 1 of 2): layer 0 and the
    embeddings never change."""
    result = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "gradual", strategy="gradual-unfreeze",
                  layer_lr_decay=0.8)
    layer = 4 * (HIDDEN * HIDDEN + HIDDEN) + 4 * HIDDEN + 2 * (2 * HIDDEN * HIDDEN) + 2 * HIDDEN + HIDDEN
    assert result.metrics["trainable_parameters"] == HEAD + layer  # in the last epoch
    changed = _changed(load_state(tiny_checkpoint), load_state(result.run_dir / "model"))
    assert {k.split(".")[0] + "." + k.split(".")[2] for k in changed if k.startswith("encoder.")} == {"encoder.1"}
    assert not any(k.startswith("embeddings.") for k in changed)
    assert {"pooler.dense.weight", "encoder.layer.1.output.dense.weight"} <= changed


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_layer_lr_decay_changes_the_result(registry, tmp_path, tiny_checkpoint, tiny_data, backend_name):
    a = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "d1", epochs=1).metrics
    b = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "d5", epochs=1, layer_lr_decay=0.5).metrics
    c = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "d1b", epochs=1, layer_lr_decay=1.0).metrics
    assert a["eval_loss"] == c["eval_loss"] and a["eval_loss"] != b["eval_loss"]


@pytest.mark.parametrize("merge", [False, True])
def test_lora_saves_adapters_and_loads_on_every_backend(registry, tmp_path, tiny_checkpoint, tiny_data, backend_name,
                                                        merge):
    rank = 4
    result = _run(registry, tmp_path, backend_name, tiny_checkpoint, tiny_data, "lora", strategy="lora", lora_rank=rank,
                  lora_alpha=8.0, merge_adapters=merge or None, lr=2e-2)
    m = result.metrics
    lora = LAYERS * 2 * (HIDDEN * rank + rank * HIDDEN)
    assert (m["trainable_parameters"], m["total_parameters"]) == (HEAD + lora, TOTAL + lora)
    model_dir = result.run_dir / "model"
    names = {p.name for p in model_dir.iterdir()}
    if merge:
        assert "model.safetensors" in names and "adapter_model.safetensors" not in names
        changed = _changed(load_state(tiny_checkpoint), load_state(model_dir))
        encoder = {k for k in changed if k.startswith("encoder.")}
        assert encoder and all(".attention.self.query." in k or ".attention.self.value." in k for k in encoder)
    else:
        assert {"adapter_model.safetensors", "adapter_config.json"} <= names and "model.safetensors" not in names
        config = json.loads((model_dir / "adapter_config.json").read_text())
        assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", rank, 8.0)
    texts = [t for t, _ in synthetic_rows(64, seed=5)]
    logits = {}
    for name in BACKENDS:
        model, meta = load_saved(model_dir, get_backend(registry, name))
        logits[name] = dataset_logits(model, encode(model.tokenizer, texts, None, meta["max_length"]))
    for other in logits.values():  # the adapters changed the model, and every backend reads it the same
        np.testing.assert_allclose(other, logits[backend_name], atol=1e-4)
    assert m["eval_loss"] != pytest.approx(0.6931, abs=1e-4)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_lora_adapters_load_with_peft(registry, tmp_path, tiny_checkpoint, tiny_data):
    """The adapters-alone directory is PEFT's format: peft loads it onto the base model and gives the
    logits tl gives."""
    import torch
    from peft import PeftModel
    from transformers import BertForSequenceClassification

    result = _run(registry, tmp_path, "torch", tiny_checkpoint, tiny_data, "peft", strategy="lora", lr=2e-2)
    model_dir = result.run_dir / "model"
    base = BertForSequenceClassification.from_pretrained(str(tiny_checkpoint), num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(model_dir)).eval()
    model, meta = load_saved(model_dir, get_backend(registry, "torch"))
    enc = encode(model.tokenizer, ["a great film", "a dull mess"], None, 32)
    ours = dataset_logits(model, enc)
    ids = [torch.from_numpy(np.asarray(x, dtype=np.int64))[None] for x in enc.ids]
    theirs = np.concatenate([peft_model(input_ids=i).logits.detach().numpy() for i in ids])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
