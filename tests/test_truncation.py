"""Long-document truncation (``--truncation``): which tokens each mode keeps, chunk coverage, pooling,
and runs on each backend where only some modes can see the label."""

from __future__ import annotations

import numpy as np
import pytest

from tl.data.truncation import apply, cut, pool
from tl.errors import UsageError
from tl.models.inference import predict
from tl.models.saved import load_saved
from tl.plugins import get_plugin_manager
from tl.plugins.registry import get_backend
from tl.training.config import resolve
from tl.training.pipeline import run

from conftest import slow_on
from tinybert import make_checkpoint, synthetic_rows, write_csv

CLS, SEP = 101, 102


def doc(n: int) -> np.ndarray:
    return np.concatenate([[CLS], np.arange(1000, 1000 + n), [SEP]]).astype(np.int32)


def body(row: np.ndarray) -> list[int]:
    assert row[0] == CLS and row[-1] == SEP
    return row[1:-1].tolist()


def test_short_texts_are_untouched():
    for mode in ("head", "tail", "head+tail", "chunks"):
        (row,) = cut(doc(5), 16, mode)
        assert body(row) == list(range(1000, 1005))


def test_head_tail_and_head_plus_tail():
    (h,) = cut(doc(100), 18, "head")
    (t,) = cut(doc(100), 18, "tail")
    (ht,) = cut(doc(100), 18, "head+tail")
    assert body(h) == list(range(1000, 1016)) and body(t) == list(range(1084, 1100))
    assert body(ht) == list(range(1000, 1004)) + list(range(1088, 1100))  # a quarter of 16 from the head
    assert len(h) == len(t) == len(ht) == 18


def test_chunks_cover_everything_with_overlap():
    rows = cut(doc(100), 18, "chunks")
    seen = sorted({x for r in rows for x in body(r)})
    assert seen == list(range(1000, 1100))
    assert all(len(r) <= 18 for r in rows)
    assert body(rows[1])[0] == 1008  # stride: half a window of 16
    assert body(rows[-1])[-1] == 1099


def test_apply_and_pool():
    rows, owner = apply([doc(3), doc(40), doc(2)], 18, "chunks")
    assert owner.tolist() == [0, 1, 1, 1, 1, 2]
    logits = np.arange(12, dtype=np.float32).reshape(6, 2)
    pooled = pool(logits, owner, 3)
    np.testing.assert_allclose(pooled, [[0, 1], [5, 6], [10, 11]])


def test_truncation_option_is_checked():
    with pytest.raises(UsageError, match="truncation must be one of"):
        resolve({"truncation": "middle"}, {}, {})


# tensorflow with -m slow: cutting, chunking and pooling are the core's (tested above), which hands
# every backend the same rows
@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_long_documents_by_truncation_mode(registry, tmp_path, backend_name):
    """Documents longer than max length with the label word near the end: head truncation never sees
    it; tail and chunks (windows, logits averaged per document) do. (A 64-wide tiny BERT: the 32-wide
    one learns this data erratically.)"""
    ckpt = make_checkpoint(tmp_path / "ck64", hidden=64)
    rows = [(" ".join(["the film"] * 10) + " " + text, label) for text, label in synthetic_rows(300, seed=4)]
    data = write_csv(tmp_path / "long.csv", rows)
    results = {}
    for mode in ("head", "tail", "chunks"):
        options = {"backend": backend_name, "model": str(ckpt), "dataset": str(data), "epochs": 6,
                   "batch_size": 16, "lr": 1e-3, "max_length": 20, "precision": "fp32", "truncation": mode,
                   "output": str(tmp_path / mode)}
        results[mode] = run(resolve(options, {}, {}), registry, get_plugin_manager(), quiet=True)
    accuracy = {mode: r.metrics["eval_accuracy"] for mode, r in results.items()}
    # measured (both backends): head 0.47, tail 1.0, chunks 0.98
    assert accuracy["head"] <= 0.65 and accuracy["tail"] >= 0.9 and accuracy["chunks"] >= 0.9, accuracy
    assert results["chunks"].metrics["num_eval_samples"] == results["head"].metrics["num_eval_samples"]
    # the saved model reads long texts the way it was trained (tl.json), also through predict
    model, meta = load_saved(results["chunks"].run_dir / "model", get_backend(registry, backend_name))
    assert meta["truncation"] == "chunks" and model.tokenizer.truncation == "chunks"
    texts = [t for t, _ in rows[:40]]
    predicted = [p.label for p in predict(model, texts, meta["max_length"])]
    assert np.mean([p == label for p, (_, label) in zip(predicted, rows[:40], strict=True)]) >= 0.9
