from __future__ import annotations

import json

import pandas as pd
import pytest

from tl.data.examples import hash_split
from tl.data.tables import load_examples
from tl.errors import DataError


def test_formats_load_the_same_rows(tmp_path):
    rows = [{"text": f"text number {i}", "label": "positive" if i % 2 else "negative"} for i in range(20)]
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv.gz", index=False)
    loaded = [load_examples(tmp_path / f"d.{ext}", "text", "label") for ext in ("csv", "tsv", "jsonl", "parquet", "csv.gz")]
    for ex in loaded:
        assert ex.texts == df.text.tolist()
        assert ex.labels == df.label.tolist()


def test_integer_labels_become_strings(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]}).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    assert load_examples(tmp_path / "d.parquet", "text", "label").labels == ["0", "1", "2"]
    assert load_examples(tmp_path / "d.jsonl", "text", "label").labels == ["0", "1"]


def test_custom_columns_and_bom_crlf(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes('\ufeffreview,sentiment\r\n"multi\nline, quoted",pos\r\nplain,neg\r\n'.encode())
    ex = load_examples(p, "review", "sentiment")
    assert ex.texts == ["multi\nline, quoted", "plain"]
    assert ex.labels == ["pos", "neg"]


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "is empty"),
        (b"text,label\n", "header but no rows"),
        (b"review,sentiment\nx,pos\n", "column 'text' not found in d.csv; columns are: review, sentiment. Pass --text-column"),
        (b"text,label\nx,pos\n,neg\n", "row 3: empty text"),
        (b"text,label\nx,pos\ny,\n", "row 3: empty label"),
        (b"text,text,label\nx,y,pos\n", "duplicate column"),
        (b"text,label\n\xff\xfe bad,pos\n", "not valid UTF-8"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, match):
    p = tmp_path / "d.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_examples(p, "text", "label")
    assert "\n" not in str(info.value)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_examples(tmp_path / "nope.csv", "text", "label")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_examples(tmp_path / "d.xlsx", "text", "label")


def test_hash_split_is_fixed_and_about_twenty_percent(tmp_path):
    from tl.data.examples import Examples

    texts = [f"review {i}" for i in range(5000)]
    ex = Examples(texts, ["a"] * 5000)
    s1 = hash_split(ex)
    s2 = hash_split(Examples(texts[::-1], ["a"] * 5000))  # row order does not matter
    assert set(s1.eval.texts) == set(s2.eval.texts)
    assert 0.18 < len(s1.eval) / 5000 < 0.22
    assert not set(s1.train.texts) & set(s1.eval.texts)


def test_hash_split_needs_enough_rows():
    from tl.data.examples import Examples

    with pytest.raises(DataError, match="too few rows"):
        hash_split(Examples(["only one"], ["a"], source="one.csv"))


def test_a_pair_task_refuses_single_texts_before_training(tmp_path):
    """``Task.requires_text_pair``: the core refuses data without a second text, naming the option."""
    from tl.data.loading import load_splits
    from tl.errors import DataError
    from tl.interfaces import Task
    from tl.plugins import Registry
    from tl.training.config import RunConfig

    class Pairs(Task):
        name = "pairs"
        requires_text_pair = True
        defaults = {"text_pair_column": "second"}

    rows = tmp_path / "rows.csv"
    rows.write_text("text,second,label\n" + "".join(f"a{i},b{i},{i % 2}\n" for i in range(20)))
    config = RunConfig(dataset=str(rows), text_column="text", label_column="label")
    with pytest.raises(DataError, match=r"^task 'pairs' classifies text pairs, but .*rows.csv has no second text; "
                                        r"pass --text-pair-column \(default: second\)$"):
        load_splits(config, Registry(), Pairs())
    paired = load_splits(RunConfig(dataset=str(rows), text_column="text", label_column="label",
                                   text_pair_column="second"), Registry(), Pairs())
    assert paired.train.pairs is not None and len(paired.train) + len(paired.eval) == 20
    assert len(load_splits(config, Registry(), Task()).train.pairs or []) == 0  # single texts are fine elsewhere
