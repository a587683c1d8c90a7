"""The encoded store (tl.data.store, tl.data.streaming): a data file read in chunks and encoded once into
memory-mapped Arrow files gives exactly the splits, subsets, labels and token ids of the in-memory path."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from tl import __version__
from tl.data.loading import label_space, load_splits
from tl.data.store import open_store, store_root
from tl.data.streaming import file_store, select
from tl.data.tables import iter_examples, iter_table
from tl.data.tokenization import Tokenizer
from tl.errors import DataError
from tl.training.config import resolve as resolve_config

from tinybert import synthetic_rows, write_csv

CHUNK = 37  # rows per chunk: every file below spans several record batches


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr("tl.data.tables.CHUNK_ROWS", CHUNK)


@pytest.fixture
def store_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TL_ENCODE_CACHE_DIR", str(tmp_path / "stores"))
    return tmp_path / "stores"


def _task_id(task) -> str:
    return f"{task.name}:{type(task).__module__}.{type(task).__qualname__}:{__version__}"


def _streamed(config, registry, checkpoint, truncation="head", warn=None):
    task = registry.get("task", config.task)
    tok = Tokenizer.from_dir(checkpoint)
    tok.truncation = truncation
    columns = (config.text_column, config.label_column, config.text_pair_column)
    stores = [file_store(Path(name), columns, task, _task_id(task), tok, config.max_length, store_root(),
                         lambda _: None, warn)
              for name in (config.dataset, config.eval_dataset) if name]
    return select(config, task, stores[0][0], stores[1][0] if len(stores) > 1 else None), [hit for _, hit in stores]


def _in_memory(config, registry, checkpoint, truncation="head"):
    task = registry.get("task", config.task)
    tok = Tokenizer.from_dir(checkpoint)
    tok.truncation = truncation
    splits = load_splits(config, registry, task)
    labels = label_space(task, splits)
    return (task.encode(tok, splits.train, config.max_length, labels),
            task.encode(tok, splits.eval, config.max_length, labels), labels, splits)


def _same(a, b) -> None:
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.ids, b.ids, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.type_ids, b.type_ids, strict=True))
    assert np.array_equal(a.labels, b.labels) and a.pad_id == b.pad_id
    assert np.array_equal(a.lengths, b.lengths)
    assert a.extra.keys() == b.extra.keys() and all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra)


def _config(tmp_path, checkpoint, data, **options):
    return resolve_config({"model": str(checkpoint), "dataset": str(data), "max_length": 16,
                           "output": str(tmp_path / "run"), **options}, {}, {})


@pytest.mark.parametrize("case", ["hash split", "subsets", "validation", "eval file", "eval file + validation",
                                  "chunks", "pairs"])
def test_streamed_splits_equal_the_in_memory_ones(case, registry, tmp_path, tiny_checkpoint, small_chunks,
                                                  store_dir):
    rows = synthetic_rows(300, seed=3, classes=("negative", "neutral", "positive"))
    data = write_csv(tmp_path / "data.csv", rows)
    options, truncation = {}, "head"
    if case == "subsets":
        options = {"max_train_samples": 101, "max_eval_samples": 23}
    elif case == "validation":
        options = {"validation_split": 0.25, "max_train_samples": 150, "max_eval_samples": 20}
    elif case.startswith("eval file"):
        options = {"eval_dataset": str(write_csv(tmp_path / "eval.csv", synthetic_rows(90, seed=4))),
                   "max_eval_samples": 50}
        if case.endswith("validation"):
            options["validation_split"] = 0.3
    elif case == "chunks":
        data = write_csv(tmp_path / "long.csv", [(" ".join([t] * 6), lab) for t, lab in rows])
        truncation = "chunks"
    elif case == "pairs":
        import pandas as pd

        df = pd.DataFrame({"premise": [t for t, _ in rows], "hypothesis": [t[::-1] for t, _ in rows],
                           "label": [lab for _, lab in rows]})
        data = tmp_path / "pairs.parquet"
        df.to_parquet(data)
        options = {"text_column": "premise", "text_pair_column": "hypothesis"}
    config = _config(tmp_path, tiny_checkpoint, data, **options)
    streamed, hits = _streamed(config, registry, tiny_checkpoint, truncation)
    train, evaluation, labels, splits = _in_memory(config, registry, tiny_checkpoint, truncation)
    assert hits == [False] * len(hits) and streamed.labels == labels
    assert streamed.splits.split == splits.split
    assert (len(streamed.splits.train), len(streamed.splits.eval)) == (len(splits.train), len(splits.eval))
    _same(streamed.train, train)
    _same(streamed.eval, evaluation)
    if case == "chunks":  # several windows per text, pooled per text by owner
        assert len(streamed.train) > len(splits.train)
    again, hits = _streamed(config, registry, tiny_checkpoint, truncation)  # the same store, opened again
    assert hits == [True] * len(hits)
    _same(again.train, train)


def test_a_store_is_read_in_place_not_copied(registry, tmp_path, tiny_checkpoint, small_chunks, store_dir):
    import pyarrow as pa

    config = _config(tmp_path, tiny_checkpoint, write_csv(tmp_path / "d.csv", synthetic_rows(400, seed=5)))
    _streamed(config, registry, tiny_checkpoint)
    (path,) = [p for p in store_dir.iterdir() if p.is_dir()]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["rows"] == manifest["texts"] == 400 and manifest["labels"] == ["negative", "positive"]
    before = pa.total_allocated_bytes()
    store = open_store(path)
    assert pa.total_allocated_bytes() - before < 4096  # Arrow allocated nothing: the buffers are the file's pages
    values, _ = store.ids._parts[0]
    assert not values.flags.owndata and not values.flags.writeable  # a view of the read-only map
    assert len(store.ids._parts) == -(-400 // CHUNK)  # one record batch per chunk read


def test_a_damaged_store_is_reported_and_built_again(registry, tmp_path, tiny_checkpoint, store_dir):
    config = _config(tmp_path, tiny_checkpoint, write_csv(tmp_path / "d.csv", synthetic_rows(120, seed=6)))
    _streamed(config, registry, tiny_checkpoint)
    (path,) = [p for p in store_dir.iterdir() if p.is_dir()]
    tokens = path / "tokens.arrow"  # (a store is never changed in place by tl: this truncates a mapped file)
    tokens.write_bytes(tokens.read_bytes()[: tokens.stat().st_size // 2])  # cut short, as a full disk leaves it
    seen = []
    again, hits = _streamed(config, registry, tiny_checkpoint, warn=lambda p, why: seen.append((p, why)))
    assert hits == [False] and len(seen) == 1 and seen[0][0] == path
    _same(again.train, _in_memory(config, registry, tiny_checkpoint)[0])
    assert open_store(path).manifest["rows"] == 120


def test_a_changed_file_gets_a_new_store(registry, tmp_path, tiny_checkpoint, store_dir):
    data = write_csv(tmp_path / "d.csv", synthetic_rows(60, seed=7))
    config = _config(tmp_path, tiny_checkpoint, data)
    _, hits = _streamed(config, registry, tiny_checkpoint)
    write_csv(data, synthetic_rows(61, seed=7))  # same name, one more row
    streamed, hits2 = _streamed(config, registry, tiny_checkpoint)
    assert hits == hits2 == [False] and len(streamed.splits.train) + len(streamed.splits.eval) == 61
    assert len([p for p in store_dir.iterdir() if p.is_dir()]) == 2


def test_errors_name_the_row_in_a_later_chunk(registry, tmp_path, tiny_checkpoint, small_chunks, store_dir):
    rows = synthetic_rows(200, seed=8)
    rows[150] = (rows[150][0], "")
    config = _config(tmp_path, tiny_checkpoint, write_csv(tmp_path / "d.csv", rows))
    with pytest.raises(DataError, match=r"^d\.csv row 152: empty label in column 'label'"):
        _streamed(config, registry, tiny_checkpoint)
    assert not [p for p in store_dir.iterdir() if p.is_dir()]  # nothing half-written left as a store


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.jsonl.gz", "d.parquet", "d.csv.gz"])
def test_every_format_is_read_in_bounded_chunks(name, tmp_path):
    import pandas as pd

    rows = synthetic_rows(100, seed=9)
    df = pd.DataFrame(rows, columns=["text", "label"])
    path = tmp_path / name
    if ".csv" in name:
        df.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        df.to_csv(path, sep="\t", index=False)
    elif ".jsonl" in name:
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    sizes = [len(chunk) for chunk in iter_table(path, chunk_rows=CHUNK)]
    assert sizes == [37, 37, 26]
    chunks = list(iter_examples(path, "text", "label", chunk_rows=CHUNK))
    assert [t for c in chunks for t in c.texts] == [t for t, _ in rows]


def _build_in_process(args) -> bool:
    root, data, checkpoint = args
    import os

    os.environ["TL_ENCODE_CACHE_DIR"] = root
    from tl.plugins import build_registry, get_plugin_manager

    registry = build_registry(get_plugin_manager())
    task = registry.get("task", "sentiment")
    tok = Tokenizer.from_dir(checkpoint)
    _, hit = file_store(Path(data), ("text", "label", None), task, _task_id(task), tok, 16, Path(root),
                        lambda _: None, None)
    return hit


def test_processes_starting_together_build_one_store(tmp_path, tiny_checkpoint):
    data = write_csv(tmp_path / "d.csv", synthetic_rows(3000, seed=10))
    root = tmp_path / "stores"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        hits = pool.map(_build_in_process, [(str(root), str(data), str(tiny_checkpoint))] * 2)
    assert sorted(hits) == [False, True]  # one built it; the other waited on the lock and opened it
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1


def test_a_hub_dataset_goes_through_the_same_store(registry, tmp_path, tiny_checkpoint, small_chunks, store_dir,
                                                   monkeypatch):
    """A hub dataset (``datasets``' Arrow tables; here built locally and handed out by ``load_dataset``,
    the hub being out of reach) is read split by split in chunks into stores, as its in-memory path reads it."""
    datasets = pytest.importorskip("datasets")
    from tl.data.streaming import hub_stores

    def split(rows):
        return datasets.Dataset.from_dict(
            {"sentence": [t for t, _ in rows], "label": [int(lab == "positive") for _, lab in rows]},
            features=datasets.Features({"sentence": datasets.Value("string"),
                                        "label": datasets.ClassLabel(names=["negative", "positive"])}))

    published = datasets.DatasetDict({"train": split(synthetic_rows(150, seed=11)),
                                      "validation": split(synthetic_rows(40, seed=12))})
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, *a, **k: asked.append(repo) or published)
    config = _config(tmp_path, tiny_checkpoint, "someone/reviews", text_column="sentence", max_train_samples=120)
    train, evaluation, labels, splits = _in_memory(config, registry, tiny_checkpoint)
    task = registry.get("task", "sentiment")
    tok = Tokenizer.from_dir(tiny_checkpoint)
    tok.truncation = "head"
    (train_store, hit), (eval_store, _), name = hub_stores(
        "someone/reviews", ("sentence", "label", None), task, _task_id(task), tok, 16, store_root(),
        lambda _: None, None)
    assert asked[-1] == "someone/reviews" and name == "validation" and not hit
    streamed = select(config, task, train_store, eval_store, f"hub splits train / {name}")
    assert streamed.labels == labels and streamed.splits.split == splits.split == "hub splits train / validation"
    _same(streamed.train, train)
    _same(streamed.eval, evaluation)
    assert len(train_store.ids._parts) == -(-150 // CHUNK)  # read in chunks
    (_, hit), _, _ = hub_stores("someone/reviews", ("sentence", "label", None), task, _task_id(task), tok, 16,
                                store_root(), lambda _: None, None)
    assert hit  # keyed by datasets' own fingerprint of the split
