"""The NER task plugin (plugins/ner, distribution tl-ner): found through its installed entry point,
CoNLL/JSONL reading, BIO chunking and entity F1 with seqeval's semantics, word-piece alignment and
windows, and a tiny token-classification model trained on every backend, loaded across backends
and used by `tl predict`."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tl.data.batching import IGNORE_INDEX
from tl.errors import DataError
from tl.plugins import build_registry, get_plugin_manager
from tl.training.config import resolve

from conftest import BACKENDS, slow_on
from tinybert import FILLER, make_checkpoint

pytest.importorskip("tl_ner")

from tl_ner.align import align_labels, encode_words, first_pieces, plan_windows  # noqa: E402
from tl_ner.chunks import entity_scores, get_entities  # noqa: E402
from tl_ner.io import read_ner  # noqa: E402

# Entity words are outside the tiny vocabulary, so they split into several word pieces (b ##o ##b):
# alignment matters. First letters differ between types and from the filler words.
FIRST = ["kim", "bob", "carol", "dave", "erin"]
LAST = ["smith", "jones", "wu"]
CITIES = ["paris", "london", "rome", "madrid", "oslo"]
FAST = {"task": "ner", "epochs": 4, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.1, "precision": "fp32",
        "max_length": 32}
FRAMEWORKS = ("torch", "tensorflow", "keras", "keras_hub", "transformers")


def sentences(n: int, seed: int, long_share: float = 0.1) -> list[list[tuple[str, str]]]:
    """Filler words with a person (B-PER, optionally I-PER) and/or a city (B-LOC); about ``long_share``
    of the sentences are longer than 32 word pieces, so they are windowed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        size = int(rng.integers(20, 30)) if rng.random() < long_share else int(rng.integers(3, 8))
        words = [(str(w), "O") for w in rng.choice(FILLER, size=size)]
        entities = []
        if rng.random() < 0.8:
            entities.append([(str(rng.choice(FIRST)), "B-PER")]
                            + ([(str(rng.choice(LAST)), "I-PER")] if rng.random() < 0.5 else []))
        if rng.random() < 0.7:
            entities.append([(str(rng.choice(CITIES)), "B-LOC")])
        for entity in entities:
            at = int(rng.integers(0, len(words) + 1))
            words[at:at] = entity
        out.append(words)
    return out


def write_conll(path, sents, docstart: bool = True):
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for s in sents:
        lines += [f"{w} NN I-NP {t}" for w, t in s] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_jsonl(path, sents):
    path.write_text("".join(json.dumps({"tokens": [w for w, _ in s], "tags": [t for _, t in s]}) + "\n"
                            for s in sents), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ner_registry():
    """Entry points on: tl-ner registers only through its installed distribution."""
    return build_registry(get_plugin_manager(autoload=True))


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ner")
    return write_conll(d / "train.conll", sentences(300, 1)), write_jsonl(d / "dev.jsonl", sentences(80, 2))


@pytest.fixture(scope="module")
def trained(ner_registry, ner_files, tiny_checkpoint, tmp_path_factory):
    """One tiny NER model per backend, trained on first use and shared by the tests below."""
    from tl.training.pipeline import run

    cache = {}

    def get(backend: str):
        if backend not in cache:
            train, dev = ner_files
            options = {**FAST, "backend": backend, "model": str(tiny_checkpoint), "dataset": str(train),
                       "eval_dataset": str(dev), "output": str(tmp_path_factory.mktemp("runs") / backend)}
            task = ner_registry.get("task", "ner")
            cache[backend] = run(resolve(options, {}, dict(task.defaults)), ner_registry, get_plugin_manager(),
                                 quiet=True)
        return cache[backend]

    return get


# discovery ---------------------------------------------------------------------------------------

def test_found_only_through_the_tl_ner_distribution(ner_registry):
    ep = {e.name: e for e in importlib.metadata.entry_points(group="tl")}["ner"]
    assert ep.value == "tl_ner.plugin" and ep.dist.name == "tl-ner"
    assert ner_registry.providers[("task", "ner")] == "tl-ner 0.1.0"
    assert "ner" not in build_registry(get_plugin_manager(autoload=False)).names("task")
    code = ("import sys\nfrom tl.cli import main\nsys.argv = ['tl', 'plugins', '--json']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    *listing, loaded = out.stdout.strip().splitlines()
    rows = {(r["kind"], r["name"]): r for r in json.loads("\n".join(listing))["plugins"]}
    assert rows[("task", "ner")]["provider"] == "tl-ner 0.1.0" and rows[("task", "ner")]["status"] == "available"
    assert loaded == "[]"  # listing the NER plugin imports no framework


# reading CoNLL and JSON Lines --------------------------------------------------------------------

def test_conll_reader(tmp_path):
    p = tmp_path / "data.conll"
    p.write_bytes("\ufeff-DOCSTART- -X- -X- O\r\n\r\nBob NNP B-NP B-PER\r\nSmith NNP I-NP I-PER\r\n"
                  "went VBD B-VP O\r\n\r\n\r\n-DOCSTART- -X- O\nParis\tB-LOC\nrocks  O".encode())
    ex = read_ner(p)
    assert ex.words == [("Bob", "Smith", "went"), ("Paris", "rocks")]
    assert ex.labels == [("B-PER", "I-PER", "O"), ("B-LOC", "O")]
    assert ex.texts == ["Bob Smith went", "Paris rocks"] and ex.source == str(p)


def test_jsonl_reader_and_custom_keys(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"tokens": ["Bob", "ran"], "tags": ["B-PER", "O"]}\n\n{"tokens": ["Rome"], "tags": ["S-LOC"]}\n')
    assert read_ner(p).labels == [("B-PER", "O"), ("S-LOC",)]
    q = tmp_path / "e.jsonl"
    q.write_text('{"words": ["Oslo"], "ner": ["B-LOC"]}\n')
    assert read_ner(q, "words", "ner").words == [("Oslo",)]


@pytest.mark.parametrize("name, content, message", [
    ("a.conll", "Bob B-PER\nSmith\n", "a.conll line 2: expected a token and its tag separated by whitespace, got 'Smith'"),
    ("b.conll", "Bob B-PER\n\nParis LOC\n", "b.conll line 3: 'LOC' is not a BIO tag"),
    ("c.conll", "-DOCSTART- O\n\n\n", "holds no sentences"),
    ("d.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"]\n', "d.jsonl line 2: not valid JSON"),
    ("e.jsonl", '["a", "O"]\n', "e.jsonl line 1: expected a JSON object, got list"),
    ("f.jsonl", '{"text": "a b", "tags": ["O", "O"]}\n', "f.jsonl line 1: no 'tokens' field (fields: text, tags); pass --text-column"),
    ("g.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', "g.jsonl line 1: 2 tokens but 1 tags"),
    ("h.jsonl", '{"tokens": ["a"], "tags": [3]}\n', "h.jsonl line 1: 'tags' must be a list of strings (tag names like B-PER, not ids)"),
    ("i.jsonl", '{"tokens": [], "tags": []}\n', "i.jsonl line 1: no tokens"),
    ("j.jsonl", '{"tokens": ["a"], "tags": ["X-PER"]}\n', "j.jsonl line 1: 'X-PER' is not a BIO tag"),
])
def test_malformed_input_is_one_line_naming_file_and_line(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_ner(p)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_utf8_names_its_line(tmp_path):
    p = tmp_path / "bad.conll"
    p.write_bytes(b"Bob B-PER\n\nna\xefve O\n")
    with pytest.raises(DataError, match=r"bad.conll line 3 is not valid UTF-8"):
        read_ner(p)


def test_label_set_checks(ner_registry, tmp_path):
    task = ner_registry.get("task", "ner")
    assert task.label_order(["I-PER", "O", "B-LOC", "B-PER", "I-LOC"]) == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    with pytest.raises(DataError, match="no entity tags"):
        task.validate_labels(("O",), "x.conll")
    from tl.data.examples import Splits
    from tl.data.loading import label_space

    train, held = read_ner(write_conll(tmp_path / "t.conll", [[("bob", "B-PER")]])), \
        read_ner(write_conll(tmp_path / "e.conll", [[("rome", "B-LOC")]]))
    with pytest.raises(DataError, match="evaluation labels 'B-LOC' never occur in the training data"):
        label_space(task, Splits(train, held))


# chunking and entity F1, checked against seqeval 1.2.2's default mode ----------------------------

@pytest.mark.parametrize("tags, entities", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),  # I- without B- starts an entity (non-strict)
    (["I-PER"], [("PER", 0, 0)]),
    (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),  # a type change ends one, starts another
    (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),
    (["O", "B-LOC", "I-LOC"], [("LOC", 1, 2)]),  # entity at the sentence end
    (["S-PER", "B-LOC", "E-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # IOBES
    (["B-PER", "I-PER", "I-LOC", "O", "I-LOC"], [("PER", 0, 1), ("LOC", 2, 2), ("LOC", 4, 4)]),
    (["O", "O"], []),
])
def test_bio_chunking(tags, entities):
    assert get_entities(tags) == entities


def test_entity_scores_hand_computed():
    # seqeval's documentation example: one of two entities is right; 8 of 10 words
    r = entity_scores([["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
                      [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]])
    assert (r["precision"], r["recall"], r["f1"], r["accuracy"], r["macro_f1"]) == (0.5, 0.5, 0.5, 0.8, 0.5)
    assert r["per_type"] == {"MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
                             "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    # entities never span sentences: a sentence starting with I-PER starts a new entity
    assert entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]])["f1"] == 1.0
    # non-strict: I- tags without B- still make the right entities
    assert entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["I-PER", "I-PER", "O", "I-LOC"]])["f1"] == 1.0
    # a type change inside a predicted entity: two wrong entities; LOC appears only in the prediction
    r = entity_scores([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # mixed: 1 of 3 predicted and 1 of 3 gold entities right; per type PER p=1/2 r=1, LOC and ORG 0
    r = entity_scores([["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]],
                      [["B-PER", "I-PER", "O", "B-PER", "O"], ["B-ORG", "I-ORG"]])
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(1 / 3) and r["accuracy"] == pytest.approx(5 / 7)
    assert r["per_type"]["PER"]["f1"] == pytest.approx(2 / 3) and r["macro_f1"] == pytest.approx(2 / 9)
    assert (r["entities"], r["predicted_entities"]) == (3, 3)


# word-piece alignment and windows ----------------------------------------------------------------

def test_first_word_piece_carries_the_tag(tiny_checkpoint):
    from tl.data.tokenization import Tokenizer

    tok = Tokenizer.from_dir(tiny_checkpoint)
    enc = encode_words(tok, [["bob", "the", "smith"]], 32, [np.array([2, 0, 3])])
    ids, labels, words = enc.ids[0], enc.labels[0], enc.extra["word_ids"][0]
    pieces = tok._tok.decode(ids.tolist(), skip_special_tokens=False).split()
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert words.tolist() == [-1, 0, 0, 0, 1, 2, 2, 2, 2, 2, -1]  # b ##o ##b the s ##m ##i ##t ##h
    I = IGNORE_INDEX  # noqa: E741
    assert labels.tolist() == [I, 2, I, I, 0, 3, I, I, I, I, I]
    assert first_pieces(words).tolist() == [1, 4, 5]
    assert align_labels(np.array([-1, 0, 1, 1, -1]), np.array([5, 6])).tolist() == [I, 5, 6, I, I]
    batch = enc.collate([0], pad_to_multiple_of=8)  # token labels are padded with -100
    assert batch.labels.shape == (1, 16) and (batch.labels[0, 11:] == I).all()
    assert batch.targets == 3


def test_windows_cover_every_word_once(tiny_checkpoint):
    assert plan_windows([1, 1, 1], 5) == [(0, 3)]
    windows = plan_windows([1] * 10, 4)
    assert windows[0] == (0, 4) and windows[-1][1] == 10
    assert all(b[0] < a[1] for a, b in zip(windows, windows[1:], strict=False))  # consecutive windows overlap
    assert plan_windows([2, 9, 1], 4) == [(0, 1), (1, 2), (2, 3)]  # an over-long word gets its own window
    from tl.data.tokenization import Tokenizer

    tok = Tokenizer.from_dir(tiny_checkpoint)
    words = [["the"] * 12 + ["bob"] + ["the"] * 12 + ["abcdefghijklmnopqrstu"], ["bob"]]
    tags = [np.array([0] * 12 + [2] + [0] * 12 + [1]), np.array([2])]
    enc = encode_words(tok, words, 10, tags)
    assert max(len(i) for i in enc.ids) <= 10 and enc.extra["example"].tolist().count(0) > 2
    for k, sentence in enumerate(words):  # every word has exactly one home position
        homes = [w for r in np.flatnonzero(enc.extra["example"] == k)
                 for w in enc.extra["word_ids"][r][enc.extra["home"][r]].tolist()]
        assert sorted(homes) == list(range(len(sentence)))
    last = [r for r in range(len(enc)) if 25 in enc.extra["word_ids"][r].tolist()][0]
    assert enc.labels[last][enc.extra["word_ids"][last].tolist().index(25)] == 1  # the cut word keeps its tag


# training on every backend -------------------------------------------------------------------------

def test_tiny_ner_model_learns(trained, backend_name):
    result = trained(backend_name)
    m = result.metrics
    assert m["eval_f1"] >= 0.95, {k: v for k, v in m.items() if k != "eval_confusion_matrix"}
    assert m["task"] == "ner" and m["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]
    assert set(m["eval_per_type"]) == {"LOC", "PER"} and m["eval_per_type"]["PER"]["support"] > 0
    assert 0 <= m["eval_loss"] < 0.2 and m["num_eval_samples"] == 80
    history = [json.loads(line) for line in (result.run_dir / "history.jsonl").read_text().splitlines()]
    epochs = [h for h in history if h["event"] == "epoch"]
    assert list(epochs[-1])[-4:] == ["eval_loss", "eval_f1", "eval_precision", "eval_recall"]
    hf = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert hf["architectures"] == ["BertForTokenClassification"] and hf["id2label"]["2"] == "B-PER"
    meta = json.loads((result.run_dir / "model" / "tl.json").read_text())
    assert meta["head"] == "token_classification" and meta["task"] == "ner"


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs both torch and tensorflow")
@pytest.mark.parametrize("trained_on, other", [("torch", "tensorflow"), ("tensorflow", "torch")])
def test_ner_model_loads_on_the_other_backend(trained, ner_registry, ner_files, trained_on, other):
    from tl.models.inference import dataset_logits
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    model_dir = trained(trained_on).run_dir / "model"
    task = ner_registry.get("task", "ner")
    examples = read_ner(ner_files[1])
    out = {}
    for name in (trained_on, other):
        model, meta = load_saved(model_dir, get_backend(ner_registry, name))
        assert model.head.kind == "token_classification"
        enc = task.encode(model.tokenizer, examples, meta["max_length"], model.head.labels)
        logits = dataset_logits(model, enc)
        out[name] = (logits, task.evaluate(logits, enc, model.head.labels))
    (a, ma), (b, mb) = out[trained_on], out[other]
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)) < 1e-3
    assert all((x.argmax(-1) == y.argmax(-1)).all() for x, y in zip(a, b, strict=True))
    assert ma["f1"] == mb["f1"] and ma["loss"] == pytest.approx(mb["loss"], abs=1e-4)


def test_predict_prints_entity_spans(trained, backend_name):
    from tl.cli import cli

    model_dir = str(trained(backend_name).run_dir / "model")
    text = "the actor Bob Smith and the cast was Paris"
    long_text = " ".join(["the film"] * 14) + " Erin was " + " ".join(["a movie"] * 12) + " and Rome"
    out = CliRunner().invoke(cli, ["predict", "--model", model_dir, "--json", text, long_text, "it is"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    found = [[(e["type"], e["text"], e["start"], e["end"]) for e in r["entities"]] for r in rows]
    assert found[0] == [("PER", "Bob Smith", 10, 19), ("LOC", "Paris", 37, 42)]
    erin, rome = long_text.index("Erin"), long_text.index("Rome")  # 40+ word pieces: windows
    assert found[1] == [("PER", "Erin", erin, erin + 4), ("LOC", "Rome", rome, rome + 4)]
    assert found[2] == [] and all(0.5 < e["score"] <= 1 for r in rows for e in r["entities"])
    table = CliRunner().invoke(cli, ["predict", "--model", model_dir, text, "it is"])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines() == [text, f"  PER  {rows[0]['entities'][0]['score']:.3f}  10-19  Bob Smith",
                                         f"  LOC  {rows[0]['entities'][1]['score']:.3f}  37-42  Paris",
                                         "it is", "  (no entities)"]


def test_savedmodel_export_serves_per_token_logits(trained, tmp_path):
    """A token head exports too: ``logits``/``probabilities`` are [batch, length, labels], equal to the
    model's own logits on the real tokens."""
    tf = pytest.importorskip("tensorflow")
    from tl.cli import cli
    from tl.data.batching import unpad
    from tl.models.inference import encode
    from tl.models.saved import load_saved
    from tl.plugins.registry import get_backend

    model_dir = trained(BACKENDS[0]).run_dir / "model"
    out = CliRunner().invoke(cli, ["export", "--model", str(model_dir), "--format", "savedmodel",
                                   "-o", str(tmp_path / "served")])
    assert out.exit_code == 0, out.output
    model, meta = load_saved(model_dir, get_backend(build_registry(get_plugin_manager(autoload=True)), BACKENDS[0]))
    batch = encode(model.tokenizer, ["the actor Bob Smith", "it is Paris and the cast was Rome"], None, 32).collate([0, 1])
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    got = served(input_ids=tf.constant(batch.input_ids), attention_mask=tf.constant(batch.attention_mask),
                 token_type_ids=tf.constant(batch.token_type_ids))
    width, labels = batch.input_ids.shape[1], len(meta["labels"])
    assert got["logits"].shape == (2, width, labels) and got["probabilities"].shape == (2, width, labels)
    expected = model.logits([batch])
    for row, want in zip(unpad(got["logits"].numpy(), batch.attention_mask), expected, strict=True):
        assert np.abs(row - want).max() < 1e-4
    assert np.allclose(got["probabilities"].numpy().sum(axis=-1), 1, atol=1e-5)


def test_evaluate_command_scores_a_jsonl_file(trained, ner_files, tmp_path):
    from tl.cli import cli

    model_dir = str(trained(BACKENDS[0]).run_dir / "model")
    out = CliRunner().invoke(cli, ["evaluate", "--model", model_dir, "--dataset", str(ner_files[1]),
                                   "-o", str(tmp_path / "ev.json")])
    assert out.exit_code == 0, out.output
    first = out.output.splitlines()[0]
    assert first.startswith("eval_f1 ") and "| eval_loss " in first and "| 80 examples |" in first
    assert "  PER " in out.output and json.loads((tmp_path / "ev.json").read_text())["eval_f1"] >= 0.95


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_gradient_accumulation_weights_by_labelled_tokens(ner_registry, ner_files, tmp_path, backend_name):
    """Batch 16 in one step or 2 x 8 accumulated: each micro-batch's loss is divided by the labelled
    tokens of the whole step (micro-batches hold different numbers), so the runs agree."""
    from tl.training.pipeline import run

    ckpt = make_checkpoint(tmp_path / "nodrop", dropout=0.0)
    metrics = {}
    for accum in (1, 2):
        options = {**FAST, "backend": backend_name, "model": str(ckpt), "dataset": str(ner_files[0]),
                   "eval_dataset": str(ner_files[1]), "epochs": 1, "lr": 1e-3, "grad_accum": accum,
                   "max_train_samples": 128, "output": str(tmp_path / f"a{accum}")}
        metrics[accum] = run(resolve(options, {}, {"text_column": "tokens", "label_column": "tags"}), ner_registry,
                             get_plugin_manager(), quiet=True).metrics
    assert metrics[2]["grad_accum"] == 2 and metrics[1]["train_steps"] == metrics[2]["train_steps"]
    assert metrics[1]["eval_loss"] == pytest.approx(metrics[2]["eval_loss"], abs=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_for_a_token_head(ner_files, tmp_path):
    """NER under DDP: each rank trains on its shard with the step's labelled tokens summed over both
    ranks, and evaluates half the sentences; the result equals one process."""
    pytest.importorskip("torch")
    ckpt = make_checkpoint(tmp_path / "nodrop", dropout=0.0)
    common = ["--task", "ner", "--backend", "torch", "--model", str(ckpt), "--dataset", str(ner_files[0]),
              "--eval-dataset", str(ner_files[1]), "--text-column", "tokens", "--label-column", "tags",
              "--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--max-length", "32", "--precision", "fp32",
              "--max-train-samples", "128", "-q", "--json"]
    results = {}
    for n in (1, 2):
        out = subprocess.run([sys.executable, "-m", "tl", "run", *common, "--nproc", str(n), "-o", str(tmp_path / f"r{n}")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        results[n] = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
    assert (results[1]["world_size"], results[2]["world_size"], results[2]["eval_shards"]) == (1, 2, 2)
    assert results[2]["train_steps"] == results[1]["train_steps"]
    assert results[2]["eval_loss"] == pytest.approx(results[1]["eval_loss"], abs=1e-4)
    assert results[2]["eval_f1"] == pytest.approx(results[1]["eval_f1"], abs=1e-9)


def test_token_loss_sums_over_labelled_tokens(tiny_checkpoint, backend_name):
    """The training loss of a token head: cross-entropy summed over tokens whose label is not -100
    (the loops divide by the step's ``Batch.targets``); the same function serves sequence heads."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 4)).astype(np.float32)
    labels = np.array([[IGNORE_INDEX, 1, 3, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 0, 2, 2, IGNORE_INDEX]])
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -sum(log_p[i, j, labels[i, j]] for i, j in zip(*np.nonzero(labels != IGNORE_INDEX), strict=True))
    if backend_name == "torch":
        import torch

        from tl_torch.model import summed_loss

        got = float(summed_loss(torch.from_numpy(logits), torch.from_numpy(labels)))
        seq = float(summed_loss(torch.from_numpy(logits[:, 0]), torch.tensor([1, 3])))
    else:
        from tl_tensorflow.runtime import activate

        activate()  # Keras on TensorFlow, before keras is imported
        import tensorflow as tf

        from tl.models.families import builtin
        from tl_tensorflow.network import build_network

        bert = builtin("bert")
        net = build_network(json.loads((tiny_checkpoint / "config.json").read_text()), bert, 4, tiny_checkpoint,
                            "token_classification")
        total, count = net.summed_loss(tf.constant(labels), tf.constant(logits))
        got = float(total)
        assert float(count) == 5
        seq_net = build_network(json.loads((tiny_checkpoint / "config.json").read_text()), bert, 4, tiny_checkpoint)
        seq = float(seq_net.summed_loss(tf.constant([1, 3]), tf.constant(logits[:, 0]))[0])
    assert got == pytest.approx(expected, rel=1e-5)
    assert seq == pytest.approx(-(log_p[0, 0, 1] + log_p[1, 0, 3]), rel=1e-5)


def test_sharded_evaluation_of_token_logits(ner_registry, ner_files, tiny_checkpoint):
    """Per-row token logits gathered from 3 shards give the metrics of one process."""
    pytest.importorskip("torch")
    from tl.data.tokenization import Tokenizer
    from tl.evaluation.evaluate import evaluate
    from tl.interfaces import HeadSpec
    from tl.models.inference import dataset_logits
    from tl.plugins.registry import get_backend
    from tl.training.distributed import World

    task = ner_registry.get("task", "ner")
    labels = ("O", "B-LOC", "B-PER", "I-PER")
    tokenizer = Tokenizer.from_dir(tiny_checkpoint)
    enc = task.encode(tokenizer, read_ner(ner_files[1]), 32, labels)
    model = get_backend(ner_registry, "torch").build_model(
        tiny_checkpoint, HeadSpec("token_classification", labels), tokenizer, init="pretrained", seed=0, info={})
    whole = evaluate(model, enc, labels, task, 32)
    shards = [dataset_logits(model, enc.take(np.arange(r, len(enc), 3))) for r in range(3)]
    sharded = evaluate(model, enc, labels, task, 32, lambda mine: shards, World(rank=1, size=3, mode="ddp"))
    assert sharded["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    assert sharded["eval_f1"] == whole["eval_f1"] and sharded["eval_accuracy"] == whole["eval_accuracy"]
