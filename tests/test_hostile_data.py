"""Hostile input files: each is handled (documented in README) or rejected with one line naming
file, row and column. A property test feeds random bytes to the loader."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl.data.tables import load_examples
from tl.errors import DataError, TLError


def _load(tmp_path, name: str, content: bytes | str, **kw):
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return load_examples(p, kw.get("text", "text"), kw.get("label", "label"))


def _rejects(tmp_path, name, content, *fragments):
    with pytest.raises(DataError) as info:
        _load(tmp_path, name, content)
    message = str(info.value)
    assert "\n" not in message
    for f in fragments:
        assert f in message, message


def test_handled_inputs(tmp_path):
    long_text = "word " * 20_000  # 100k characters: kept, truncated to --max-length when tokenized
    ex = _load(tmp_path, "ok.csv", "\ufefftext,label\r\n\"quoted\nnewline\",pos\r\n" + f"{long_text},neg\r\n")
    assert ex.texts[0] == "quoted\nnewline" and len(ex.texts[1]) == 100_000 and ex.labels == ["pos", "neg"]
    ex = _load(tmp_path, "blank.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n')
    assert ex.labels == ["1", "0"]  # blank lines in JSON Lines are skipped
    ex = _load(tmp_path, "spaces.csv", "text,label\n  padded  , pos \n")
    assert ex.texts == ["  padded  "] and ex.labels == ["pos"]  # labels are stripped, texts kept as is


def test_rejected_inputs(tmp_path):
    _rejects(tmp_path, "empty_text.csv", "text,label\nfine,pos\n   ,neg\n", "empty_text.csv row 3", "'text'")
    _rejects(tmp_path, "no_label.csv", "text,label\nfine,pos\nsecond,\n", "no_label.csv row 3", "empty label", "'label'")
    _rejects(tmp_path, "latin1.csv", "text,label\nok,pos\ncaf\xe9,neg\n".encode("latin-1"), "latin1.csv line 3",
             "not valid UTF-8")
    _rejects(tmp_path, "header.csv", "text,label\n", "header but no rows")
    _rejects(tmp_path, "dup.csv", "text,label,text\na,b,c\n", "duplicate column names: text")
    _rejects(tmp_path, "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n', "bad.jsonl line 2",
             "not valid JSON")
    _rejects(tmp_path, "list.jsonl", '[1, 2]\n', "list.jsonl line 1", "expected a JSON object")


def test_parquet_with_wrong_types(tmp_path):
    pd.DataFrame({"text": [1.5, 2.0], "label": [True, False]}).to_parquet(tmp_path / "numbers.parquet")
    ex = load_examples(tmp_path / "numbers.parquet", "text", "label")
    assert ex.texts == ["1.5", "2.0"] and ex.labels == ["True", "False"]  # scalars become strings
    pd.DataFrame({"text": [[1, 2], [3]], "label": ["a", "b"]}).to_parquet(tmp_path / "nested.parquet")
    with pytest.raises(DataError, match="nested.parquet row 1: text in column 'text' is a"):
        load_examples(tmp_path / "nested.parquet", "text", "label")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list('text,label\n"\r\t{}[]:xy0 é\\')), max_size=200).map(str.encode),
), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_random_bytes_load_or_raise_our_error(tmp_path, content, suffix):
    p = tmp_path / f"random{suffix}"
    p.write_bytes(content)
    try:
        ex = load_examples(p, "text", "label")
    except TLError as exc:
        assert "\n" not in str(exc)
        return
    assert len(ex.texts) == len(ex.labels) > 0
    assert all(isinstance(t, str) and t.strip() for t in ex.texts)


def test_jsonl_round_trip_of_odd_strings(tmp_path):
    rows = [{"text": s, "label": "x"} for s in ["tab\there", "emoji 😀", "中文", "quote \" and \\ backslash"]]
    (tmp_path / "odd.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    assert load_examples(tmp_path / "odd.jsonl", "text", "label").texts == [r["text"] for r in rows]
