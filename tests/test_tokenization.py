from __future__ import annotations

import pytest

from tl.data.tokenization import Tokenizer

EDGE_TEXTS = [
    "A gripping, beautifully acted film!",
    "Café naïve résumé — déjà vu",
    "emoji 😀🎬 and CJK 中文字符 mixed with English",
    "word " * 500,
    "",
    "   leading and trailing   ",
    "UPPER lower MiXeD",
]


def test_ids_match_transformers_fast_tokenizer(tiny_checkpoint):
    transformers = pytest.importorskip("transformers")
    ours = Tokenizer.from_dir(tiny_checkpoint)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    ids, types = ours.encode(EDGE_TEXTS, max_length=32)
    ref = theirs(EDGE_TEXTS, truncation=True, max_length=32)
    assert [list(x) for x in ids] == ref["input_ids"]
    pairs_ids, pair_types = ours.encode(EDGE_TEXTS, EDGE_TEXTS[::-1], max_length=24)
    ref_pairs = theirs(EDGE_TEXTS, EDGE_TEXTS[::-1], truncation=True, max_length=24)
    assert [list(x) for x in pairs_ids] == ref_pairs["input_ids"]
    assert [list(x) for x in pair_types] == ref_pairs["token_type_ids"]


def test_truncation_and_special_tokens(tiny_checkpoint):
    tok = Tokenizer.from_dir(tiny_checkpoint)
    ids, _ = tok.encode(["good " * 100, "bad"], max_length=16)
    assert len(ids[0]) == 16 and len(ids[1]) == 3
    cls, sep = tok._tok.token_to_id("[CLS]"), tok._tok.token_to_id("[SEP]")
    assert ids[0][0] == cls and ids[0][-1] == sep


def test_save_roundtrip(tiny_checkpoint, tmp_path):
    tok = Tokenizer.from_dir(tiny_checkpoint)
    tok.save(tmp_path)
    again = Tokenizer.from_dir(tmp_path)
    a, _ = tok.encode(EDGE_TEXTS, max_length=64)
    b, _ = again.encode(EDGE_TEXTS, max_length=64)
    assert [list(x) for x in a] == [list(x) for x in b]
    assert {p.name for p in tmp_path.iterdir()} >= {"tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                                    "special_tokens_map.json"}
