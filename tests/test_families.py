"""The parity table: every built-in model family x head kind x direction, on tiny random checkpoints
written from a config (``tl.testing.tiny_checkpoint``; no downloaded weights).

- token ids: tl's tokenizer gives transformers' ``AutoTokenizer`` ids (single texts and pairs);
- logits: a model built on one backend, saved, and loaded on the other gives the same logits
  (fp32, within 1e-4), and loads in plain transformers (``AutoModelFor*``) with the same logits and
  the family's class in config.json's ``architectures``;
- training: one SGD step from the same weights moves the loss the same way on both backends;
- precision: bf16 probabilities within the 2e-2 documented for BERT (tests/test_cli.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tl.data.batching import Encoded
from tl.data.tokenization import Tokenizer
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION, Family, HeadSpec
from tl.models.families import builtin
from tl.models.saved import save_model
from tl.plugins import build_registry, get_plugin_manager
from tl.plugins.registry import get_backend
from tl.testing import tiny_checkpoint

from conftest import BACKENDS

FAMILIES = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v2", "mpnet")
HEADS = (HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION)
DIRECTIONS = (("torch", "tensorflow"), ("tensorflow", "torch"))
WORDS = ["the", "film", "was", "great", "awful", "a", "dull", "mess", "and", "it", "is", "not", "good", "bad",
         "plot", "acting", "##s", "##ing", "story", "music", "café", "naïve", ",", ".", "!", "?"]
TEXTS = ["the film was great", "a dull, awful mess!", "it is not good and the plot is bad",
         "the naïve story; the café music."]
PAIRS = ["the acting was good", "bad", "a great film", "the story is dull"]
LABELS = ("negative", "neutral", "positive")
#: docs/plugins.md's worked example of a family plugin: CamemBERT is RoBERTa under its own model_type.
CAMEMBERT = Family(
    "camembert", "CamemBERT (RoBERTa for French; SentencePiece)", model_types=("camembert",), prefix="roberta",
    architectures={"sequence_classification": "CamembertForSequenceClassification",
                   "token_classification": "CamembertForTokenClassification"},
    tokenizer="unigram", tokenizer_class="CamembertTokenizer", tensorflow="tl_tensorflow.families.roberta",
    token_type_ids=False, ignored_prefixes=("lm_head.", "pooler."),
)


@pytest.fixture(scope="module")
def backends():
    """Both backends: the parity tests need the pair (a machine with torch alone, such as a GPU image
    without TensorFlow, skips them rather than erroring)."""
    if len(BACKENDS) < 2:
        pytest.skip("needs both backends installed (torch and tensorflow)")
    registry = build_registry(get_plugin_manager(autoload=True))
    out = {name: get_backend(registry, name) for name in ("torch", "tensorflow")}
    for backend in out.values():
        backend.configure(threads=1)
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny checkpoint per family, written on first use."""
    made: dict[str, object] = {}

    def get(family: str):
        if family not in made:
            made[family] = tiny_checkpoint(tmp_path_factory.mktemp(family.replace("-", "_")), family, WORDS)
        return made[family]

    return get


def _encoded(tokenizer: Tokenizer, pairs: bool = False) -> Encoded:
    ids, types = tokenizer.encode(TEXTS, PAIRS if pairs else None, max_length=32)
    return Encoded(ids, types, None, pad_id=tokenizer.pad_id)


def _batches(encoded: Encoded):
    return [encoded.collate(range(len(encoded)), pad_to_multiple_of=8)]


def _rows(logits) -> np.ndarray:
    """Sequence logits as they are; token logits (one array per row) stacked."""
    return np.concatenate(logits) if isinstance(logits, list) else np.asarray(logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_ids_are_transformers(family, checkpoints):
    transformers = pytest.importorskip("transformers")
    directory = checkpoints(family)
    ours = Tokenizer.from_dir(directory)
    theirs = transformers.AutoTokenizer.from_pretrained(str(directory))
    ids, _ = ours.encode(TEXTS, max_length=32)
    assert [list(x) for x in ids] == theirs(TEXTS)["input_ids"]
    pair_ids, _ = ours.encode(TEXTS, PAIRS, max_length=32)
    assert [list(x) for x in pair_ids] == theirs(TEXTS, PAIRS)["input_ids"]
    assert ours.pad_id == theirs.pad_token_id


@pytest.mark.parametrize("source,target", DIRECTIONS, ids=["torch-to-tf", "tf-to-torch"])
@pytest.mark.parametrize("head_kind", HEADS, ids=["seq", "tok"])
@pytest.mark.parametrize("family", FAMILIES)
def test_parity(family, head_kind, source, target, backends, checkpoints, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    checkpoint = checkpoints(family)
    tokenizer = Tokenizer.from_dir(checkpoint)
    head = HeadSpec(head_kind, LABELS)
    built = backends[source].build_model(checkpoint, head, tokenizer, init="pretrained", seed=0, info={})
    saved = save_model(built, tmp_path / "model", {"task": "parity", "max_length": 32})
    loaded = backends[target].load_model(saved, head, Tokenizer.from_dir(saved), info={})
    batches = _batches(_encoded(tokenizer, pairs=head_kind == HEAD_SEQUENCE_CLASSIFICATION))
    expected = _rows(built.logits(batches))
    got = _rows(loaded.logits(batches))
    assert np.abs(got - expected).max() < 1e-4, f"{family} {source} -> {target}"

    config = json.loads((saved / "config.json").read_text())
    assert config["architectures"] == [builtin(family).architectures[head_kind]]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert json.loads((saved / "tl.json").read_text())["family"] == family
    auto = (transformers.AutoModelForSequenceClassification if head_kind == HEAD_SEQUENCE_CLASSIFICATION
            else transformers.AutoModelForTokenClassification)
    plain = auto.from_pretrained(str(saved)).eval()
    assert type(plain).__name__ == builtin(family).architectures[head_kind]
    b = batches[0]
    inputs = {"input_ids": torch.tensor(b.input_ids, dtype=torch.long),
              "attention_mask": torch.tensor(b.attention_mask, dtype=torch.long)}
    if builtin(family).token_type_ids:
        inputs["token_type_ids"] = torch.tensor(b.token_type_ids, dtype=torch.long)
    with torch.no_grad():
        reference = plain(**inputs).logits.numpy()
    if head_kind == HEAD_TOKEN_CLASSIFICATION:
        reference = np.concatenate([r[m == 1] for r, m in zip(reference, b.attention_mask, strict=True)])
    assert np.abs(reference - expected).max() < 1e-4


def _torch_step(model, batch, lr: float) -> tuple[float, float]:
    import torch

    from tl_torch.model import to_inputs

    module = model.module
    module.eval()  # no dropout: the step is deterministic on both backends
    inputs = to_inputs(batch, model.device, model.token_types)
    labels = torch.tensor(batch.labels, dtype=torch.long)

    def loss():
        return torch.nn.functional.cross_entropy(module(**inputs).logits, labels)

    before = loss()
    module.zero_grad()
    before.backward()
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad
        after = loss()
    return float(before.detach()), float(after)


def _tf_step(model, batch, lr: float) -> tuple[float, float]:
    import tensorflow as tf

    from tl_tensorflow.network import to_inputs

    net = model.network
    x, y = to_inputs(batch), tf.constant(batch.labels)

    def loss():
        logits = net(x, training=False)
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    variables = [v.value for v in net.trainable_variables]
    with tf.GradientTape() as tape:
        before = loss()
    for v, g in zip(variables, tape.gradient(before, variables), strict=True):
        if g is not None:
            v.assign_sub(lr * tf.convert_to_tensor(g))
    return float(before), float(loss())


@pytest.mark.parametrize("family", FAMILIES)
def test_one_training_step_moves_the_loss_alike(family, backends, checkpoints, tmp_path):
    checkpoint = checkpoints(family)
    tokenizer = Tokenizer.from_dir(checkpoint)
    head = HeadSpec(HEAD_SEQUENCE_CLASSIFICATION, LABELS)
    built = backends["torch"].build_model(checkpoint, head, tokenizer, init="pretrained", seed=0, info={})
    saved = save_model(built, tmp_path / "model", {"task": "parity", "max_length": 32})
    encoded = _encoded(tokenizer)
    encoded.labels = np.array([2, 0, 0, 1])
    batch = _batches(encoded)[0]
    steps = {}
    for name, step in (("torch", _torch_step), ("tensorflow", _tf_step)):
        model = backends[name].load_model(saved, head, Tokenizer.from_dir(saved), info={})
        steps[name] = step(model, batch, lr=0.5)
    (t0, t1), (f0, f1) = steps["torch"], steps["tensorflow"]
    assert f0 == pytest.approx(t0, abs=1e-5)
    assert t1 < t0 and f1 < f0, steps
    assert f1 == pytest.approx(t1, abs=1e-4), steps


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_stays_within_the_documented_tolerance(family, backends, checkpoints, tmp_path):
    checkpoint = checkpoints(family)
    tokenizer = Tokenizer.from_dir(checkpoint)
    head = HeadSpec(HEAD_SEQUENCE_CLASSIFICATION, LABELS)
    built = backends["torch"].build_model(checkpoint, head, tokenizer, init="pretrained", seed=0, info={})
    saved = save_model(built, tmp_path / "model", {"task": "parity", "max_length": 32})
    batches = _batches(_encoded(tokenizer))
    for name in ("torch", "tensorflow"):
        model = backends[name].load_model(saved, head, Tokenizer.from_dir(saved), info={})
        probs = {}
        for precision in ("fp32", "bf16"):
            model.set_precision(precision)
            logits = np.asarray(model.logits(batches), dtype=np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs[precision] = e / e.sum(axis=1, keepdims=True)
        assert np.abs(probs["bf16"] - probs["fp32"]).max() < 2e-2, name


def test_a_plugin_family_trains_and_saves_on_both_backends(monkeypatch, backends, tmp_path):
    """A family registered by a plugin (here the docs' CamemBERT example, found the way the backends
    look families up) is built by both backends and saved in transformers' Camembert format."""
    transformers = pytest.importorskip("transformers")
    import torch

    from tl.models import families
    from tl.testing import tiny_tokenizer

    builtins = families.available({})
    monkeypatch.setattr(families, "available", lambda registered=None: {**builtins, "camembert": CAMEMBERT})
    checkpoint = tmp_path / "camembert"
    vocab = tiny_tokenizer(checkpoint, "unigram", WORDS, style="xlm-roberta", tokenizer_class="CamembertTokenizer")
    config = transformers.CamembertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
                                          pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(checkpoint)
    tokenizer = Tokenizer.from_dir(checkpoint)
    head = HeadSpec(HEAD_SEQUENCE_CLASSIFICATION, LABELS)
    built = backends["tensorflow"].build_model(checkpoint, head, tokenizer, init="pretrained", seed=0, info={})
    saved = save_model(built, tmp_path / "model", {"task": "parity", "max_length": 32})
    assert json.loads((saved / "config.json").read_text())["architectures"] == ["CamembertForSequenceClassification"]
    loaded = backends["torch"].load_model(saved, head, Tokenizer.from_dir(saved), info={})
    assert type(loaded.module).__name__ == "CamembertForSequenceClassification"
    batches = _batches(_encoded(tokenizer, pairs=True))
    assert np.abs(loaded.logits(batches) - built.logits(batches)).max() < 1e-4


def test_an_unsupported_model_type_is_one_line(tmp_path, tiny_checkpoint, tiny_data):
    import shutil

    from test_cli import _one_line_error, tl

    gpt2 = tmp_path / "gpt2"
    shutil.copytree(tiny_checkpoint, gpt2)
    config = json.loads((gpt2 / "config.json").read_text())
    (gpt2 / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    _one_line_error(tl("run", "--model", str(gpt2), "--dataset", str(tiny_data)), 2,
                    "model_type 'gpt2' is not supported (supported: albert, bert, deberta-v2, distilbert, electra, "
                    "mpnet, roberta, xlm-roberta)", "tl_register_families")


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_weights_that_do_not_match_config_name_the_first_tensor(backend, backends, checkpoints, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from tl.errors import UsageError

    def variant(name: str, edit):
        d = tmp_path / name
        shutil.copytree(checkpoints("roberta"), d)
        state = load_file(str(d / "model.safetensors"))
        edit(state)
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
        return d

    head = HeadSpec(HEAD_SEQUENCE_CLASSIFICATION, LABELS)
    build = backends[backend].build_model
    gone = variant("gone", lambda s: s.pop("encoder.layer.1.output.dense.weight"))
    with pytest.raises(UsageError, match=r"lacks 1 .*the first being roberta\.encoder\.layer\.1\.output\.dense\.weight"):
        build(gone, head, Tokenizer.from_dir(gone), init="pretrained", seed=0, info={})
    bent = variant("bent", lambda s: s.update({"embeddings.LayerNorm.bias": np.zeros(31, np.float32)}))
    with pytest.raises(UsageError, match=r"do not match config.json, the first being roberta\.embeddings\.LayerNorm"):
        build(bent, head, Tokenizer.from_dir(bent), init="pretrained", seed=0, info={})
    extra = variant("extra", lambda s: s.update({"encoder.layer.0.attention.self.distance_embedding.weight":
                                                 np.zeros((3, 32), np.float32)}))
    with pytest.raises(UsageError, match=r"does not use, the first being .*distance_embedding"):
        build(extra, head, Tokenizer.from_dir(extra), init="pretrained", seed=0, info={})


@pytest.mark.parametrize("backend", ["torch", pytest.param("tensorflow", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family,strategy", [("roberta", "finetune"), ("distilbert", "lora"),
                                             ("deberta-v2", "gradual-unfreeze")])
def test_tl_run_trains_each_family(family, strategy, backend, checkpoints, tiny_data, tmp_path):
    """The whole pipeline on families other than BERT, with their own LoRA targets and layer names;
    the saved model gives the same logits on both backends."""
    from tl.models.inference import dataset_logits, encode
    from tl.models.saved import load_saved
    from tl.training.config import resolve
    from tl.training.pipeline import run

    from tinybert import synthetic_rows

    pm = get_plugin_manager(autoload=True)
    registry = build_registry(pm)
    options = {"backend": backend, "model": str(checkpoints(family)), "dataset": str(tiny_data), "epochs": 2,
               "batch_size": 16, "lr": 5e-3, "max_length": 32, "precision": "fp32", "strategy": strategy,
               "output": str(tmp_path / "run")}
    result = run(resolve(options, {}, {}), registry, pm, quiet=True)
    assert result.metrics["model_family"] == family and result.metrics["strategy"] == strategy
    model_dir = result.run_dir / "model"
    if strategy == "lora":  # PEFT's format, with the family's projections and head modules
        config = json.loads((model_dir / "adapter_config.json").read_text())
        assert config["target_modules"] == list(builtin(family).lora)
        assert set(config["modules_to_save"]) == {"pre_classifier", "classifier"}
    else:  # the encoder's top layer trained (gradual-unfreeze unfreezes it in the second epoch)
        import re

        from tl.models.hf_checkpoint import load_state

        fam = builtin(family)
        before, after = load_state(checkpoints(family), fam), load_state(model_dir, fam)
        top = [k for k in before if (m := re.match(fam.layer_pattern, k)) and int(m.group(1)) == 1]
        assert top and any(not np.array_equal(before[k], after[k]) for k in top)
    texts = [t for t, _ in synthetic_rows(32, seed=5)]
    logits = {}
    for name in BACKENDS:  # the saved model reloads on each installed backend; with both, alike
        model, meta = load_saved(model_dir, get_backend(registry, name))
        logits[name] = dataset_logits(model, encode(model.tokenizer, texts, None, meta["max_length"]))
        assert np.isfinite(logits[name]).all() and logits[name].shape == (len(texts), 2)
    if len(logits) == 2:
        np.testing.assert_allclose(logits["tensorflow"], logits["torch"], atol=1e-4)
