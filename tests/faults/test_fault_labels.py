"""Label ids are the same in every process: each installed task's ``label_order`` is a total order,
independent of the hash seed that randomizes set iteration from one Python process to the next; and
the sentiment task refuses a label column of free text, like ``classify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tl.errors import DataError
from tl.plugins import build_registry, get_plugin_manager

#: label sets whose names tie under a task's ranking: aliases of one polarity, case variants, integers
#: with leading zeros, pair-task synonyms
TIE_PRONE = [
    ["pos", "positive", "neg", "negative", "Positive", "NEG"],
    ["positive", "Positive", "POSITIVE", "negative"],
    ["1", "01", "2", "002", "-1"],
    ["High", "high", "LOW", "low", "medium"],
    ["paraphrase", "Paraphrase", "not_paraphrase", "duplicate"],
    ["entailment", "Entailment", "contradiction", "neutral"],
    ["B-PER", "I-PER", "O", "B-per", "B-LOC"],
]

PROBE = """
import json, sys
from tl.plugins import build_registry, get_plugin_manager
registry = build_registry(get_plugin_manager())
out = {}
for name in registry.names("task"):
    task = registry.items["task"][name]
    out[name] = []
    for names in json.loads(sys.argv[1]):
        try:
            out[name].append(list(task.label_order(names * 3)))
        except Exception as exc:
            out[name].append(type(exc).__name__)
print(json.dumps(out))
"""


@pytest.mark.guarantee(fault="Label names whose order ties (pos/positive, Positive/positive, 1/01) under "
                             "different PYTHONHASHSEED values",
                       tl="a total order: the same label ids in every process, for every installed task",
                       kept="a model's id2label, across processes, resumes and machines")
def test_label_ids_do_not_depend_on_the_hash_seed():
    orders = []
    for seed in ("0", "1", "2", "3", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(TIE_PRONE)], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        orders.append(json.loads(out.stdout))
    assert {"sentiment", "classify"} <= set(orders[0])
    for other in orders[1:]:
        assert other == orders[0]
    sentiment = orders[0]["sentiment"]
    assert sentiment[0] == ["NEG", "neg", "negative", "Positive", "pos", "positive"]
    assert sentiment[1] == ["negative", "POSITIVE", "Positive", "positive"]


def test_sentiment_refuses_free_text_labels_like_classify():
    registry = build_registry(get_plugin_manager())
    free_text = [f"an honest, moving review number {i}" for i in range(80)]
    for name in ("sentiment", "classify"):
        task = registry.items["task"][name]
        with pytest.raises(DataError, match="looks like free text rather than classes; check --label-column"):
            task.label_order(free_text)
        # many rows of a few classes, and many classes with several rows each, are classes
        assert len(task.label_order(["a", "b"] * 40)) == 2
        assert len(task.label_order([f"c{i}" for i in range(60)] * 3)) == 60
