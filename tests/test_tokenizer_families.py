"""Tokenizers of every kind (WordPiece, byte-level BPE, SentencePiece Unigram), built by
``tl.testing.tiny_tokenizer`` in the layout of each family's real checkpoints, give transformers'
``AutoTokenizer`` ids for texts, pairs and pre-split words; survive ``Tokenizer.save``; align NER
labels to first pieces; and find word spans without the space markers."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tl.data.batching import IGNORE_INDEX
from tl.data.tokenization import Tokenizer
from tl.errors import UsageError
from tl.testing import TOKENIZER_STYLES, tiny_tokenizer

transformers = pytest.importorskip("transformers")

STYLES = list(TOKENIZER_STYLES)
SUBWORD = [s for s in STYLES if TOKENIZER_STYLES[s]["kind"] != "wordpiece"]
WORDS = ("the actor Bob Smith visited Paris and London , the film was very good . "
         "Café naïve résumé déjà vu said Kim").split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
TEXTS = [
    "the actor Bob Smith visited Paris!",
    "Café naïve résumé — déjà vu",
    "  leading,  double  spaces and trailing   ",
    "",
    "emoji 😀🎬 and CJK 中文字符 mixed",
    "UPPER lower MiXeD: don't (stop)",
    "word " * 40,
]
SENTENCES = [["Bob", "Smith", "visited", "Paris", "!"], ["Café", "naïve", "résumé", ",", "déjà", "vu", "."],
             ["x"], ["Kim", "said", ":", "\"", "Wonderful", "\""]]
#: (pad token, pad id) of each style, as in the family's real checkpoints.
PADS = {"bert": ("[PAD]", 0), "mpnet": ("<pad>", 1), "roberta": ("<pad>", 1), "xlm-roberta": ("<pad>", 1),
        "albert": ("<pad>", 0), "deberta-v2": ("[PAD]", 0)}


def _lists(arrays) -> list[list[int]]:
    return [np.asarray(a).tolist() for a in arrays]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``tiny(style)``: (directory, tl Tokenizer, transformers AutoTokenizer), built once per style."""
    cache = {}

    def get(style: str):
        if style not in cache:
            d = tmp_path_factory.mktemp(style)
            kind = TOKENIZER_STYLES[style]["kind"]
            tiny_tokenizer(d, kind, WORDS + LETTERS if kind == "wordpiece" else WORDS, style=style)
            cache[style] = (d, Tokenizer.from_dir(d), transformers.AutoTokenizer.from_pretrained(str(d)))
        return cache[style]

    return get


def _words_reference(style: str, d, theirs):
    """transformers' tokenizer for pre-split words: RoBERTa needs ``add_prefix_space=True``."""
    if TOKENIZER_STYLES[style]["kind"] == "bpe":
        return transformers.AutoTokenizer.from_pretrained(str(d), add_prefix_space=True)
    return theirs


@pytest.mark.parametrize("style", STYLES)
def test_texts_and_pairs_match_transformers(tiny, style):
    d, ours, theirs = tiny(style)
    assert type(theirs).__name__ == TOKENIZER_STYLES[style]["class"]
    ids, types = ours.encode(TEXTS, max_length=32)
    ref = theirs(TEXTS, truncation=True, max_length=32, return_token_type_ids=True)
    assert _lists(ids) == ref["input_ids"] and _lists(types) == ref["token_type_ids"]
    ids, types = ours.encode(TEXTS, TEXTS[::-1], max_length=24)
    ref = theirs(TEXTS, TEXTS[::-1], truncation=True, max_length=24, return_token_type_ids=True)
    assert _lists(ids) == ref["input_ids"] and _lists(types) == ref["token_type_ids"]
    assert (ours.pad_token, ours.pad_id) == PADS[style] and ours.pad_id == theirs.pad_token_id
    if style == "roberta":  # <s> A </s></s> B </s>
        cls, sep = theirs.cls_token_id, theirs.sep_token_id
        a, _ = ours.encode(["good"])
        pair, _ = ours.encode(["good"], ["bad"])
        body_b = ours.encode(["bad"])[0][0][1:-1].tolist()
        assert pair[0].tolist() == [cls, *a[0][1:-1].tolist(), sep, sep, *body_b, sep]


@pytest.mark.parametrize("style", STYLES)
def test_pre_split_words_match_transformers(tiny, style):
    d, ours, theirs = tiny(style)
    ref = _words_reference(style, d, theirs)(SENTENCES, is_split_into_words=True)
    ids, _, word_ids = ours.encode_words(SENTENCES)
    assert _lists(ids) == ref["input_ids"]
    assert _lists(word_ids) == [[-1 if w is None else w for w in ref.word_ids(i)]
                                for i in range(len(SENTENCES))]
    kind = TOKENIZER_STYLES[style]["kind"]
    if kind != "wordpiece":  # every word starts with the word-initial marker, as mid-sentence
        marker = "Ġ" if kind == "bpe" else "\u2581"
        pieces = ours._tok.encode(SENTENCES[0], is_pretokenized=True).tokens  # the plain pipeline
        words = ours.encode_words(SENTENCES[:1])
        tokens = [ours._tok.id_to_token(int(i)) for i in words[0][0]]
        firsts = [tokens[p] for p in range(len(tokens))
                  if words[2][0][p] >= 0 and (p == 0 or words[2][0][p - 1] != words[2][0][p])]
        assert len(firsts) == len(SENTENCES[0]) and all(t.startswith(marker) for t in firsts)
        if kind == "bpe":
            assert not pieces[1].startswith(marker)  # tl's pipeline for texts is left as it is
        assert ours.encode(["Bob"])[0][0].tolist() == theirs("Bob")["input_ids"]


@pytest.mark.parametrize("style", STYLES)
def test_save_loads_in_transformers_with_the_same_ids(tiny, tmp_path, style):
    _, ours, _ = tiny(style)
    expected, _ = ours.encode(TEXTS, TEXTS[::-1], max_length=24)
    for name, tokenizer_class in (("family", TOKENIZER_STYLES[style]["class"]), ("source", None)):
        out = tmp_path / name
        ours.save(out, tokenizer_class=tokenizer_class)
        config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
        special = json.loads((out / "special_tokens_map.json").read_text(encoding="utf-8"))
        assert config["tokenizer_class"] == TOKENIZER_STYLES[style]["class"]
        assert special["pad_token"] == PADS[style][0]
        assert special["cls_token"] == ours.special_tokens()["cls_token"]
        loaded = transformers.AutoTokenizer.from_pretrained(str(out))
        assert type(loaded).__name__ == TOKENIZER_STYLES[style]["class"]
        assert loaded(TEXTS, TEXTS[::-1], truncation=True, max_length=24)["input_ids"] == _lists(expected)
        again = Tokenizer.from_dir(out)
        assert _lists(again.encode(TEXTS, TEXTS[::-1], max_length=24)[0]) == _lists(expected)
        assert (again.pad_token, again.pad_id) == PADS[style]


@pytest.mark.parametrize("style", ["roberta", "xlm-roberta"])
def test_tokenizer_json_alone(tiny, tmp_path, style):
    """No tokenizer_config.json: the pad token is found in the vocabulary, and the saved config names
    the special tokens and a class that reads tokenizer.json as it is."""
    d, ours, _ = tiny(style)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tokenizer.json").write_bytes((d / "tokenizer.json").read_bytes())
    bare = Tokenizer.from_dir(tmp_path / "src")
    assert (bare.pad_token, bare.pad_id) == PADS[style]
    roles = ("cls_token", "sep_token", "unk_token", "pad_token", "mask_token")
    assert bare.special_tokens() == {k: v for k, v in ours.special_tokens().items() if k in roles}
    bare.save(tmp_path / "out")
    loaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    expected, _ = ours.encode(TEXTS, TEXTS[::-1], max_length=24)
    assert loaded(TEXTS, TEXTS[::-1], truncation=True, max_length=24)["input_ids"] == _lists(expected)
    assert loaded.pad_token_id == PADS[style][1]


@pytest.mark.parametrize("style", SUBWORD)
def test_ner_labels_go_to_the_first_piece_of_each_word(tiny, style):
    pytest.importorskip("tl_ner")
    from tl_ner.align import encode_words

    d, ours, theirs = tiny(style)
    tags = [np.arange(len(s)) + 1 for s in SENTENCES]
    enc = encode_words(ours, SENTENCES, 64, tags)
    ref = _words_reference(style, d, theirs)(SENTENCES, is_split_into_words=True)
    several = 0
    for k in range(len(SENTENCES)):
        words = ref.word_ids(k)
        expected = [IGNORE_INDEX if w is None or (p > 0 and words[p - 1] == w) else int(tags[k][w])
                    for p, w in enumerate(words)]
        assert enc.ids[k].tolist() == ref["input_ids"][k] and enc.labels[k].tolist() == expected
        assert sorted(set(enc.labels[k].tolist()) - {IGNORE_INDEX}) == tags[k].tolist()  # each word once
        several += sum(words.count(w) > 1 for w in set(words) - {None})
    assert several >= 5  # accents, punctuation and unseen words split into several pieces


@pytest.mark.parametrize("style", STYLES)
def test_word_spans_leave_out_spaces_and_markers(tiny, style):
    _, ours, _ = tiny(style)
    text = "  Bob  Smith visited Paris, naïve!\tCafé  (déjà) "
    words = ["Bob", "Smith", "visited", "Paris", ",", "naïve", "!", "Café", "(", "déjà", ")"]
    expected, at = [], 0
    for w in words:
        at = text.index(w, at)
        expected.append((at, at + len(w)))
        at += len(w)
    assert ours.word_spans(text) == expected
    assert ours.word_spans("") == [] and ours.word_spans("   ") == []


def test_sentencepiece_model_without_tokenizer_json(tmp_path, monkeypatch):
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    text = " ".join(WORDS)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([text] * 10), model_prefix=str(tmp_path / "spiece"), vocab_size=40,
        model_type="unigram", pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>",
        bos_piece="[CLS]", eos_piece="[SEP]", user_defined_symbols=["[MASK]"], hard_vocab_limit=False,
        minloglevel=2)
    (tmp_path / "spiece.vocab").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "albert"}))
    tok = Tokenizer.from_dir(tmp_path)  # converted by transformers, as AutoTokenizer reads it
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))(TEXTS[:3], TEXTS[3:6])
    assert _lists(tok.encode(TEXTS[:3], TEXTS[3:6])[0]) == ref["input_ids"]
    assert (tok.pad_token, tok.pad_id) == ("<pad>", 0)
    monkeypatch.setitem(sys.modules, "transformers", None)  # without transformers: say how to make one
    with pytest.raises(UsageError, match="no tokenizer.json") as err:
        Tokenizer.from_dir(tmp_path)
    assert "save_pretrained" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("model_type", ["roberta", pytest.param("deberta-v2", marks=pytest.mark.slow),
                                        pytest.param("mpnet", marks=pytest.mark.slow)])
def test_tiny_checkpoint_of_a_family(tmp_path, model_type):
    torch = pytest.importorskip("torch")
    from tl.models.families import family_for
    from tl.testing import tiny_checkpoint

    words = WORDS + LETTERS if model_type == "mpnet" else WORDS
    d = tiny_checkpoint(tmp_path / model_type, model_type, words, seed=3)
    config = json.loads((d / "config.json").read_text())
    tok = Tokenizer.from_dir(d)
    family = family_for(config)
    model = transformers.AutoModel.from_pretrained(str(d)).eval()
    assert family.name == model_type and config["architectures"] == [type(model).__name__]  # a base model
    assert (config["vocab_size"], config["pad_token_id"]) == (tok.vocab_size, tok.pad_id)
    assert config["max_position_embeddings"] == 64 + (2 if model_type in ("roberta", "mpnet") else 0)
    assert json.loads((d / "tokenizer_config.json").read_text())["tokenizer_class"] == family.tokenizer_class
    ids, _ = tok.encode(["the actor Bob Smith visited Paris"], ["and London"], max_length=64)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids[0][None].astype(np.int64))).last_hidden_state
    assert out.shape == (1, len(ids[0]), 32) and bool(torch.isfinite(out).all())
