"""The TensorFlow backend (tl_tensorflow): parity with transformers/tl_torch, weight round trips,
training, and lazy imports. Tiny random BERT checkpoints are built in tmp dirs; nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")

from tl.data.batching import Encoded, eval_order, iter_batches, train_order  # noqa: E402
from tl.data.tokenization import Tokenizer  # noqa: E402
from tl.errors import UsageError  # noqa: E402
from tl.interfaces import HeadSpec, TrainCallbacks  # noqa: E402
from tl.training.config import TrainSettings  # noqa: E402

WORDS = [
    "the", "a", "an", "movie", "film", "plot", "acting", "story", "music", "scene", "cast", "was", "is",
    "were", "very", "really", "quite", "not", "and", "but", "so", "too", "good", "bad", "great", "awful",
    "fine", "dull", "fun", "boring", "nice", "poor", "best", "worst", "i", "it", "this", "that", "of",
    "to", "in", "on", "with", "for", "as", "at", "by", "from", "ending", "director", "script", "actor",
    "actress", ".", ",", "!", "?", "'", "-",
]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing", "##ed", "##ly"]
VOCAB += [f"filler{i}" for i in range(100 - len(VOCAB))]
HEAD = HeadSpec("sequence_classification", ("neg", "pos"))
TEXTS = [
    "the movie was good",
    "a very bad film, the plot was dull and the acting was poor!",
    "great",
    "this is not the best ending but the music is nice and the cast is fun",
    "worst script ever",
    "i really like it",  # "like" is unknown: [UNK]
    "the actor's scenes were boring, so boring",
]
PAIRS = ["it was fine", "no", "the story", "acting", "good good good", "plot ?", "the end"]
TINY = dict(
    vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=64,
)


def _write_tokenizer(directory: Path) -> None:
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")


def _randomize(module, seed: int) -> None:
    """Spread every weight (LayerNorm included), so a wrong mapping changes the logits visibly."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)


@pytest.fixture(scope="module")
def torch_checkpoints(tmp_path_factory):
    """(prefixed, unprefixed): BertForSequenceClassification saved by transformers 5 (keys ``bert.*`` and
    ``classifier.*``) and a bare BertModel (unprefixed keys, like sentence-transformers checkpoints)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    prefixed, bare = root / "prefixed", root / "bare"
    cls = BertForSequenceClassification(BertConfig(**TINY, num_labels=2))
    _randomize(cls, 1)
    cls.save_pretrained(prefixed)
    model = BertModel(BertConfig(**TINY))
    _randomize(model, 2)
    model.save_pretrained(bare)
    for d in (prefixed, bare):
        _write_tokenizer(d)
    return prefixed, bare


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    _write_tokenizer(directory)
    return Tokenizer.from_dir(directory)


@pytest.fixture(scope="module")
def scratch_checkpoint(tmp_path_factory, tf_backend):
    """A tiny random BERT written by the tensorflow backend itself (no torch needed)."""
    from tl_tensorflow.runtime import activate

    activate()  # Keras on TensorFlow, before keras is imported
    import keras

    from tl_tensorflow.model import TensorflowModel
    from tl_tensorflow.network import build_network

    directory = tmp_path_factory.mktemp("scratch")
    config = {"model_type": "bert", "hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2,
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, **TINY}
    keras.utils.set_random_seed(0)
    from tl.models.families import builtin

    TensorflowModel(build_network(config, builtin("bert"), 2, directory), config, HEAD, None, {}).save_weights(directory)
    _write_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def tf_backend():
    from tl_tensorflow.backend import TensorflowBackend

    return TensorflowBackend()


@pytest.fixture(scope="module")
def torch_backend():
    pytest.importorskip("torch")
    from tl_torch.backend import TorchBackend

    return TorchBackend()


def _encoded(tokenizer: Tokenizer, pairs: bool = False) -> Encoded:
    ids, types = tokenizer.encode(TEXTS, PAIRS if pairs else None, max_length=32)
    return Encoded(ids, types, None, tokenizer.pad_id)


def _logits(model, enc: Encoded, batch_size: int = 3) -> np.ndarray:
    """Logits in dataset row order (batches are length-sorted and padded)."""
    order = eval_order(enc.lengths, batch_size)
    out = model.logits(iter_batches(enc, order))
    restored = np.empty_like(out)
    restored[np.concatenate(order)] = out
    return restored


def _safetensors_keys(directory: Path) -> list[str]:
    from safetensors.numpy import load_file

    return sorted(load_file(str(directory / "model.safetensors")))


def _set_head(tf_model, torch_model, seed: int = 0) -> None:
    """The same fixed classification head (in torch layout) on both models."""
    import torch

    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 1.0, (2, 32)).astype(np.float32)
    bias = np.array([0.1, -0.2], np.float32)
    with torch.no_grad():
        torch_model.module.classifier.weight.copy_(torch.from_numpy(weight))
        torch_model.module.classifier.bias.copy_(torch.from_numpy(bias))
    state = tf_model.state()
    state["classifier.weight"], state["classifier.bias"] = weight, bias
    tf_model.load_state(state)


# --- 1. parity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["prefixed", "unprefixed"])
def test_logits_match_torch(which, torch_checkpoints, tokenizer, tf_backend, torch_backend):
    checkpoint = torch_checkpoints[0 if which == "prefixed" else 1]
    keys = _safetensors_keys(checkpoint)
    assert any(k.startswith("bert.") for k in keys) == (which == "prefixed")

    pt = torch_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    tf_model = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    assert tf_model.backend == "tensorflow"
    _set_head(tf_model, pt)
    for pairs in (False, True):
        enc = _encoded(tokenizer, pairs)
        expected = _logits(pt, enc)
        got = _logits(tf_model, enc)
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), 2)
        assert expected.std() > 0.05, "weights too small for the comparison to mean anything"
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
        # row order does not depend on batching
        np.testing.assert_allclose(_logits(tf_model, enc, batch_size=len(TEXTS)), got, atol=1e-5, rtol=0)


def test_encoder_weights_are_loaded_exactly(torch_checkpoints, tokenizer, tf_backend):
    from tl.models.hf_checkpoint import load_state

    checkpoint = torch_checkpoints[1]
    tf_model = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    source, state = load_state(checkpoint), tf_model.state()
    source.pop("embeddings.position_ids", None)
    assert set(state) == set(source) | {"classifier.weight", "classifier.bias"}
    for key, value in source.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    assert state["classifier.weight"].shape == (2, 32) and state["classifier.bias"].shape == (2,)


def test_head_init_is_seeded_and_scratch_ignores_weights(scratch_checkpoint, tokenizer, tf_backend):
    checkpoint = scratch_checkpoint
    a = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=3, info={}).state()
    b = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=3, info={}).state()
    c = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=4, info={}).state()
    np.testing.assert_array_equal(a["classifier.weight"], b["classifier.weight"])
    assert not np.array_equal(a["classifier.weight"], c["classifier.weight"])
    s1 = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="scratch", seed=3, info={}).state()
    s2 = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="scratch", seed=3, info={}).state()
    for key in s1:
        np.testing.assert_array_equal(s1[key], s2[key], err_msg=key)
    assert not np.array_equal(s1["encoder.layer.0.attention.self.query.weight"],
                              a["encoder.layer.0.attention.self.query.weight"])


# --- 2. round trips --------------------------------------------------------------------------------------


def test_tensorflow_save_loads_in_transformers(tmp_path, torch_checkpoints, tokenizer, tf_backend):
    import torch
    from transformers import BertForSequenceClassification

    tf_model = tf_backend.build_model(torch_checkpoints[1], HEAD, tokenizer, init="pretrained", seed=5, info={})
    out = tmp_path / "saved"
    tf_model.save_weights(out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert all(k.startswith(("bert.", "classifier.")) for k in _safetensors_keys(out))

    module, info = BertForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    module.eval()
    enc = _encoded(tokenizer, pairs=True)
    b = enc.collate(np.arange(len(enc)))
    with torch.no_grad():
        expected = module(
            input_ids=torch.from_numpy(b.input_ids).long(),
            attention_mask=torch.from_numpy(b.attention_mask).long(),
            token_type_ids=torch.from_numpy(b.token_type_ids).long(),
        ).logits.numpy()
    np.testing.assert_allclose(tf_model.logits([b]), expected, atol=1e-4, rtol=0)

    again = tf_backend.load_model(out, HEAD, tokenizer, info={})
    np.testing.assert_array_equal(again.logits([b]), tf_model.logits([b]))


def test_torch_save_loads_in_tensorflow(tmp_path, torch_checkpoints, tokenizer, tf_backend, torch_backend):
    pt = torch_backend.build_model(torch_checkpoints[0], HEAD, tokenizer, init="pretrained", seed=6, info={})
    pt.save_weights(tmp_path)
    _write_tokenizer(tmp_path)
    tf_model = tf_backend.load_model(tmp_path, HEAD, tokenizer, info={})
    enc = _encoded(tokenizer)
    np.testing.assert_allclose(_logits(tf_model, enc), _logits(pt, enc), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(tf_model.state()["classifier.weight"],
                                  pt.module.classifier.weight.detach().numpy())


def test_loading_reports_missing_unexpected_and_misshapen_weights(tmp_path, torch_checkpoints, tokenizer,
                                                                  tf_backend):
    import shutil

    from safetensors.numpy import load_file, save_file

    def variant(name: str, edit) -> Path:
        d = tmp_path / name
        shutil.copytree(torch_checkpoints[1], d)
        state = load_file(str(d / "model.safetensors"))
        edit(state)
        save_file(state, str(d / "model.safetensors"))
        return d

    gone = variant("missing", lambda s: s.pop("encoder.layer.1.output.dense.weight"))
    with pytest.raises(UsageError, match=r"lacks 1 of the 39 weights a bert model.*has, the first being "
                                        r"bert\.encoder\.layer\.1\.output\.dense\.weight"):
        tf_backend.build_model(gone, HEAD, tokenizer, init="pretrained", seed=0, info={})
    extra = variant("extra", lambda s: s.update({"encoder.layer.0.attention.self.distance_embedding.weight":
                                                 np.zeros((3, 32), np.float32)}))
    with pytest.raises(UsageError, match="distance_embedding"):
        tf_backend.build_model(extra, HEAD, tokenizer, init="pretrained", seed=0, info={})
    bent = variant("shape", lambda s: s.update({"pooler.dense.bias": np.zeros(31, np.float32)}))
    with pytest.raises(UsageError, match=r"do not match config.json, the first being bert\.pooler\.dense\.bias \(31,\)"):
        tf_backend.build_model(bent, HEAD, tokenizer, init="pretrained", seed=0, info={})
    # a fine-tuned model must bring its head
    with pytest.raises(UsageError, match="classifier.weight"):
        tf_backend.load_model(torch_checkpoints[1], HEAD, tokenizer, info={})

    # old checkpoints name LayerNorm parameters gamma/beta; pre-training heads (cls.*) are ignored
    def old_style(s):
        for key in [k for k in s if ".LayerNorm." in k]:
            s[key.replace(".weight", ".gamma").replace(".bias", ".beta")] = s.pop(key)
        s["cls.predictions.bias"] = np.zeros(len(VOCAB), np.float32)

    old = variant("old", old_style)
    a = tf_backend.build_model(old, HEAD, tokenizer, init="pretrained", seed=0, info={})
    b = tf_backend.build_model(torch_checkpoints[1], HEAD, tokenizer, init="pretrained", seed=0, info={})
    enc = _encoded(tokenizer)
    np.testing.assert_array_equal(_logits(a, enc), _logits(b, enc))


def test_bf16_logits_are_float32_and_close(scratch_checkpoint, tokenizer, tf_backend):
    tf_model = tf_backend.build_model(scratch_checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    enc = _encoded(tokenizer)
    fp32 = _logits(tf_model, enc)
    tf_model.set_precision("bf16")
    assert tf_model.network.encoder.get_layer("transformer_layer_0").compute_dtype == "bfloat16"
    assert tf_model.network.classifier.compute_dtype == "float32"
    bf16 = _logits(tf_model, enc)
    assert bf16.dtype == np.float32
    assert 0 < np.abs(bf16 - fp32).max() < 0.1
    tf_model.set_precision("fp32")
    np.testing.assert_array_equal(_logits(tf_model, enc), fp32)


# --- 3. training -----------------------------------------------------------------------------------------


def _sentiment_data(tokenizer: Tokenizer, n: int = 96, seed: int = 0) -> Encoded:
    rng = np.random.default_rng(seed)
    filler = [w for w in WORDS if w not in ("good", "bad", "great", "awful", "best", "worst", "not")]
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, size=rng.integers(2, 12)))
        words.insert(int(rng.integers(0, len(words) + 1)), "good" if label else "bad")
        texts.append(" ".join(words))
        labels.append(label)
    ids, types = tokenizer.encode(texts, max_length=32)
    return Encoded(ids, types, np.asarray(labels, dtype=np.int64), tokenizer.pad_id)


def _train(tf_backend, checkpoint, tokenizer, enc: Encoded, settings: TrainSettings):
    model = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="scratch", seed=settings.seed, info={})
    steps, epochs, asked = [], [], []

    def batches(epoch):
        asked.append(epoch)
        return iter_batches(enc, train_order(enc.lengths, settings.batch_size, settings.seed, epoch))

    per_epoch = -(-len(enc) // settings.batch_size)
    tf_backend.train(model, batches, per_epoch, settings,
                     TrainCallbacks(on_step=lambda *a: steps.append(a), on_epoch_end=lambda *a: epochs.append(a)))
    return model, steps, epochs, asked


def test_training_learns_and_is_deterministic(scratch_checkpoint, tokenizer, tf_backend):
    enc = _sentiment_data(tokenizer)
    settings = TrainSettings(epochs=10, batch_size=16, lr=3e-3, weight_decay=0.01, warmup_ratio=0.1, seed=0,
                             precision="fp32")
    model, steps, epochs, asked = _train(tf_backend, scratch_checkpoint, tokenizer, enc, settings)
    per_epoch = len(enc) // 16
    assert asked == list(range(settings.epochs))
    assert [s[0] for s in steps] == list(range(1, per_epoch * settings.epochs + 1))
    assert sum(s[2] for s in steps) == len(enc) * settings.epochs
    assert [e[0] for e in epochs] == list(range(settings.epochs))
    for e, (_, mean) in enumerate(epochs):
        np.testing.assert_allclose(mean, np.mean([s[1] for s in steps[e * per_epoch:(e + 1) * per_epoch]]))
    accuracy = (_logits(model, enc, 32).argmax(-1) == enc.labels).mean()
    assert accuracy >= 0.95, (accuracy, epochs)

    _, steps_again, epochs_again, _ = _train(tf_backend, scratch_checkpoint, tokenizer, enc, settings)
    assert [s[1] for s in steps_again] == [s[1] for s in steps]
    assert epochs_again == epochs


def test_training_bf16_runs(scratch_checkpoint, tokenizer, tf_backend):
    enc = _sentiment_data(tokenizer, n=32)
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e-3, weight_decay=0.01, warmup_ratio=0.0, seed=1,
                             precision="bf16")
    model, steps, epochs, _ = _train(tf_backend, scratch_checkpoint, tokenizer, enc, settings)
    assert len(steps) == 2 and all(np.isfinite(s[1]) for s in steps)
    assert model.precision == "bf16"
    assert _logits(model, enc).dtype == np.float32


def test_data_errors_surface_unchanged(scratch_checkpoint, tokenizer, tf_backend):
    from tl.errors import DataError, TLError

    enc = _sentiment_data(tokenizer, n=16)
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_ratio=0.0, seed=0,
                             precision="fp32")
    model = tf_backend.build_model(scratch_checkpoint, HEAD, tokenizer, init="scratch", seed=0, info={})

    def short(epoch):  # one batch where steps_per_epoch says two
        return iter_batches(enc, train_order(enc.lengths, 8, 0, epoch)[:1])

    with pytest.raises(TLError, match="epoch 0 had 1 batches, expected steps_per_epoch=2"):
        tf_backend.train(model, short, 2, settings, TrainCallbacks())

    # an exception from the batches comes out as itself, before training starts
    def broken(epoch):
        yield from iter_batches(enc, train_order(enc.lengths, 8, 0, epoch)[:1])
        raise DataError("row 9 is not text")

    with pytest.raises(DataError, match="row 9 is not text"):
        tf_backend.train(model, broken, 2, settings, TrainCallbacks())


def test_dataset_yields_the_core_batches_in_order(scratch_checkpoint, tokenizer, tf_backend):
    from tl_tensorflow.train import make_dataset

    enc = _sentiment_data(tokenizer, n=40)

    def batches(epoch):
        return iter_batches(enc, train_order(enc.lengths, 8, 3, epoch))

    expected = [b for e in range(2) for b in batches(e)]
    got = list(make_dataset(batches, 2, len(expected) // 2))
    assert len(got) == len(expected)
    for (x, y), b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(x["token_ids"].numpy(), b.input_ids)
        np.testing.assert_array_equal(x["segment_ids"].numpy(), b.token_type_ids)
        np.testing.assert_array_equal(x["padding_mask"].numpy(), b.attention_mask)
        np.testing.assert_array_equal(y.numpy(), b.labels)


@pytest.mark.parametrize("grouped", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_freeze_builds_no_backward_pass_through_the_encoder(scratch_checkpoint, tokenizer, tf_backend, grouped):
    """Under ``--strategy freeze`` the train step differentiates the head alone: its graph has no
    gradient op for an encoder layer or the embeddings (Keras' ``trainable = False`` does not keep a
    plain GradientTape from recording them), while ``finetune``'s has them. Both train steps: plain,
    and grouped (gradient accumulation)."""
    import tensorflow as tf

    from tl.training.strategies import Strategy
    from tl_tensorflow.model import INPUT_SIGNATURE

    enc = _sentiment_data(tokenizer, n=16)
    labels = tf.TensorSpec([None], tf.int64)
    data = ((INPUT_SIGNATURE, labels),) * 2 if grouped else (INPUT_SIGNATURE, labels)
    encoder_grads = {}
    for name in ("freeze", "finetune"):
        settings = TrainSettings(epochs=1, batch_size=8, lr=1e-3, weight_decay=0.01, warmup_ratio=0.0, seed=0,
                                 precision="fp32", strategy=Strategy(name), grad_accum=2 if grouped else 1)
        net = _train(tf_backend, scratch_checkpoint, tokenizer, enc, settings)[0].network
        graph = tf.function(net.train_step).get_concrete_function(data).graph
        encoder_grads[name] = [op.name for op in graph.get_operations() if op.name.startswith("gradient_tape/")
                               and ("transformer_layer" in op.name or "embedding" in op.name)]
    assert encoder_grads["finetune"]  # the check sees encoder gradients where there are some
    assert encoder_grads["freeze"] == []


def test_schedule_and_decay_groups_match_torch(torch_checkpoints, tokenizer, tf_backend, torch_backend):
    from tl.training.schedule import linear_schedule
    from tl.training.strategies import Strategy
    from tl_tensorflow.train import LinearSchedule
    from tl_tensorflow.weights import weight_map
    from tl_torch.strategies import optimizer_groups

    for total, warmup in ((10, 2), (7, 0), (5, 5)):
        factor = linear_schedule(total, warmup)
        schedule = LinearSchedule(2.0, total, warmup)
        for step in range(total + 2):
            assert float(schedule(step)) == pytest.approx(2.0 * factor(step), abs=1e-6), (total, warmup, step)

    checkpoint = torch_checkpoints[0]
    pt = torch_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    names = {id(p): n.removeprefix("bert.") for n, p in pt.module.named_parameters()}
    torch_decayed = {names[id(p)] for g in optimizer_groups(pt.module, Strategy(), 0.01) if g["weight_decay"]
                     for p in g["params"]}
    tf_model = tf_backend.build_model(checkpoint, HEAD, tokenizer, init="pretrained", seed=0, info={})
    assert {s.key for s in weight_map(tf_model.network) if s.decays} == torch_decayed


def test_fused_adamw_steps_like_torch_adamw(tf_backend):
    """TLAdamW's fused update (``ResourceApplyAdam`` after decoupled decay, the step's scalars computed
    once, clipping by global norm) takes the same steps as torch.optim.AdamW with clip_grad_norm_: per
    variable rates (factors 1 and 0.5), decay on one variable and not the other, gradients large enough
    that the clip acts."""
    import keras
    import tensorflow as tf
    import torch

    from tl_tensorflow.train import ADAM_EPSILON, MAX_GRAD_NORM, TLAdamW

    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    grads = [[rng.normal(scale=2.0, size=w.shape).astype(np.float32) for w in start] for _ in range(5)]
    lr, wd, factors = 0.05, 0.1, [1.0, 0.5]

    variables = [keras.Variable(w) for w in start]
    opt = TLAdamW(decays={id(variables[0]): True}, weight_decay_rate=wd, learning_rate=lr, beta_1=0.9,
                  beta_2=0.999, epsilon=ADAM_EPSILON, global_clipnorm=MAX_GRAD_NORM)
    opt.build(variables)
    opt.set_factors(factors)
    step = tf.function(lambda gs: opt.apply(gs, variables))
    for gs in grads:
        step([tf.constant(g) for g in gs])

    params = [torch.nn.Parameter(torch.tensor(w)) for w in start]
    ref = torch.optim.AdamW([{"params": [params[0]], "lr": lr * factors[0], "weight_decay": wd},
                             {"params": [params[1]], "lr": lr * factors[1], "weight_decay": 0.0}],
                            betas=(0.9, 0.999), eps=ADAM_EPSILON)
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        ref.step()
    for v, p, w in zip(variables, params, start, strict=True):
        assert not np.allclose(v.numpy(), w, atol=1e-3)  # it moved
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert int(opt.iterations.numpy()) == len(grads)


# --- 4. lazy imports, registration, Keras backend selection ----------------------------------------------


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TL_DISABLE_PLUGIN_AUTOLOAD": "1", **env})


def test_plugin_and_backend_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "import tl_tensorflow, tl_tensorflow.plugin, tl_tensorflow.backend\n"
        "found = []\n"
        "tl_tensorflow.plugin.tl_register_backends(found.append)\n"
        "b = found[0]\n"
        "assert (b.name, b.requires, b.install_hint) == ('tensorflow', ('tensorflow', 'keras', 'keras_hub'), "
        "\"pip install 'tl[tensorflow]'\"), b\n"
        "assert b.is_available() and b.versions()['tensorflow'] != 'missing'\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub', 'torch') if m in sys.modules))\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_keras_on_another_backend_is_refused():
    pytest.importorskip("torch")
    code = (
        "import keras\n"
        "from tl.errors import TLError\n"
        "try:\n"
        "    from tl_tensorflow.backend import TensorflowBackend\n"
        "    TensorflowBackend().configure(1)\n"
        "except TLError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = _run(code, KERAS_BACKEND="torch")
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "'torch' backend" in result.stdout


def test_onednn_is_on_unless_the_user_chose():
    """activate() turns TensorFlow's oneDNN kernels on before TensorFlow is imported (TensorFlow reads
    the variable once, at import), and leaves a value the user set alone."""
    code = ("import os, sys\nfrom tl_tensorflow.runtime import activate\nactivate()\n"
            "print('tensorflow' in sys.modules, os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["True", "1"]
    chosen = _run(code, TF_ENABLE_ONEDNN_OPTS="0")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.split() == ["True", "0"]


def test_importing_the_backend_changes_nothing_until_it_is_used():
    """Keras' backend is selected (and TensorFlow imported) when the backend is first used, not on import."""
    code = (
        "import os, sys\n"
        "import tl_tensorflow.backend, tl_tensorflow.distributed, tl_tensorflow.runtime\n"
        "assert 'KERAS_BACKEND' not in os.environ and 'tensorflow' not in sys.modules\n"
        "b = tl_tensorflow.backend.TensorflowBackend()\n"
        "b.process_group()\n"
        "assert 'KERAS_BACKEND' not in os.environ and 'tensorflow' not in sys.modules\n"
        "b.configure(1, device='cpu')\n"
        "import keras\n"
        "print(os.environ['KERAS_BACKEND'], keras.backend.backend(), b.strategy)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TF_CONFIG")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**env, "TL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tensorflow", "tensorflow", "None"]
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr


def test_graph_rewrites_are_off_for_the_step_and_back_for_the_ledger():
    """On CPU, tl trains with Grappler's rewrites off (graph_rewrites_off), gives the user's setting back
    inside ``restored()`` (evaluation, checkpoints) and on exit, and changes nothing where the user
    turned them off already."""
    import tensorflow as tf

    from tl_tensorflow.runtime import graph_rewrites_off

    def off() -> bool:
        return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))

    assert not off()
    with graph_rewrites_off() as restored:
        assert off()
        with restored():
            assert not off()
        assert off()
    assert not off()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # the user's choice
    try:
        with graph_rewrites_off() as restored:
            assert off()
            with restored():
                assert off()
        assert off()
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})


def test_gelu_matches_torch_value_and_gradient():
    """tl's GELU for the TensorFlow families (erf form, derivative written out) gives torch's values and
    gradients, in the tails as well as around zero, and in bfloat16."""
    import tensorflow as tf
    import torch

    from tl_tensorflow.network import gelu_exact

    x = np.concatenate([np.linspace(-12, 12, 4001), [-30.0, 0.0, 30.0]]).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.gelu(tx).backward(torch.full_like(tx, 0.5))
    value = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(value)
        y = gelu_exact(value)
    grad = tape.gradient(y, value, output_gradients=tf.fill(value.shape, 0.5))
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.gelu(tx).detach().numpy(), atol=3e-6)
    np.testing.assert_allclose(grad.numpy(), tx.grad.numpy(), atol=3e-6)
    half = gelu_exact(tf.cast(value, tf.bfloat16))
    assert half.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(half, tf.float32).numpy(), y.numpy(), rtol=2e-2, atol=2e-2)
