"""Small and imbalanced training sets (issue 16): the end-of-run collapse warning, ``--class-weights
balanced`` (the same weighted loss on both backends) and ``--min-steps`` (more epochs, kept by --resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tl.data.batching import IGNORE_INDEX, accumulation_split, train_order
from tl.evaluation.collapse import collapse, collapse_warning
from tl.training.config import resolve
from tl.training.small_data import DEFAULT_MIN_STEPS, balanced_weights, min_steps_epochs, steps_per_epoch

from conftest import BACKENDS, slow_on
from tinybert import synthetic_rows, write_csv


def test_steps_per_epoch_counts_as_the_training_stage():
    """The closed form the plan stage uses equals the optimizer steps of the training stage's batch order
    (``train_order`` then ``accumulation_split``: a short last batch is dropped when it cannot be split)."""
    for rows in (1, 5, 16, 17, 31, 33, 100):
        for batch in (1, 4, 16, 32):
            for accum in (1, 2, 3):
                for world, replicas in ((1, 1), (2, 1), (1, 2), (2, 2)):
                    order = accumulation_split(train_order(np.ones(rows, dtype=np.int64), batch, 0, 0), accum,
                                               world, 0, replicas)
                    assert steps_per_epoch(rows, batch, accum, world * replicas) == \
                        len(order) // (accum * replicas), (rows, batch, accum, world, replicas)
    assert steps_per_epoch(0, 32) == 0
    assert [min_steps_epochs(3, m, per) for m, per in ((None, 19), (200, 19), (200, 100), (200, 0), (57, 19))] == \
        [3, 11, 3, 3, 3]


def test_balanced_weights_have_mean_one_over_the_training_targets():
    rows = np.array([0] * 6 + [1] * 3 + [2])
    w = balanced_weights(rows, 4)  # label 3 never occurs: weight 1, and k counts the 3 present labels
    assert w == pytest.approx((10 / 18, 10 / 9, 10 / 3, 1.0))
    assert np.mean([w[y] for y in rows]) == pytest.approx(1.0)
    tokens = [np.array([IGNORE_INDEX, 0, 0, 1, IGNORE_INDEX]), np.array([IGNORE_INDEX, 0, 2, IGNORE_INDEX])]
    assert balanced_weights(tokens, 3) == pytest.approx((5 / 9, 5 / 3, 5 / 3))  # labelled tokens only


def test_min_steps_default_applies_only_when_epochs_are_a_default():
    assert resolve({}, {}, {"epochs": 3}).min_steps == DEFAULT_MIN_STEPS  # tl's or the task's epochs
    assert resolve({"epochs": 2}, {}, {}).min_steps is None  # --epochs: exactly that many
    assert resolve({}, {"epochs": 2}, {}).min_steps is None  # a recipe's epochs too
    assert resolve({"epochs": 2, "min_steps": 50}, {}, {}).min_steps == 50


LABELS = ("negative", "neutral", "positive")


@pytest.mark.parametrize("confusion, expected", [
    ([[640, 0, 0], [270, 0, 0], [90, 0, 0]],  # the majority class for every row
     "the model predicts 'negative' for 100% of the 1000 evaluation rows (64% of them are 'negative'); "
     "'neutral' (270) and 'positive' (90) are never predicted"),
    ([[600, 40, 0], [100, 170, 0], [50, 40, 0]], "the model never predicts 'positive' (90 of the 1000 evaluation rows)"),
    ([[640, 0, 0], [250, 20, 0], [90, 0, 0]],  # 98% 'negative', the rare class never
     "the model predicts 'negative' for 98% of the 1000 evaluation rows (64% of them are 'negative'); "
     "'positive' (90) is never predicted"),
    ([[600, 30, 10], [100, 160, 10], [50, 30, 10]], None),  # poor, but every class predicted
    ([[950, 5, 0], [20, 20, 0], [3, 0, 2]], None),  # 97% predicted 'negative' where 95% are: fair
    ([[950, 0, 0], [46, 0, 0], [4, 0, 0]], "the model never predicts 'neutral' (46 of the 1000 evaluation rows)"),
    ([[30, 0, 0], [0, 30, 0], [4, 0, 0]], None),  # 4 'positive' rows are too few to tell
    ([[10, 0, 0], [5, 0, 0], [0, 0, 0]], "the model never predicts 'neutral' (5 of the 15 evaluation rows)"),
])
def test_collapse_rules(confusion, expected):
    assert collapse(confusion, LABELS) == expected


def test_collapse_warning_says_what_to_try():
    metrics = {"eval_confusion_matrix": [[640, 0, 0], [270, 0, 0], [90, 0, 0]], "eval_accuracy": 0.64,
               "eval_macro_f1": 0.26}
    line = collapse_warning(metrics, LABELS, config=resolve({}, {}, {}), steps=57)
    assert ": accuracy 0.640, macro-F1 0.260. Try --class-weights balanced, more optimizer steps" in line
    assert "--min-steps 300 or more --epochs; this run trained 57" in line and "--lr (this run: 5e-05" in line and "tl tune" in line
    weighted = collapse_warning(metrics, LABELS, config=resolve({"class_weights": "balanced"}, {}, {}))
    assert "--class-weights" not in weighted  # already used: not suggested again
    assert "--min-steps 900 or more --epochs; this run trained 450" in collapse_warning(metrics, LABELS, steps=450)
    assert collapse_warning({"eval_confusion_matrix": [[5, 0], [0, 5]]}, ("a", "b")) is None
    assert collapse_warning({}, LABELS) is None  # a task without a confusion matrix


def test_no_warning_on_a_healthy_run(fast_run):
    m = fast_run(BACKENDS[0]).metrics
    assert m["eval_accuracy"] >= 0.9 and not m.get("warnings")
    assert collapse(m["eval_confusion_matrix"], m["labels"]) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_loss_is_the_same_on_both_backends(tiny_checkpoint, backend):
    """sum_i w[y_i] CE_i over the scored targets (not divided by the weights' sum), for [rows] labels and
    for per-token labels (-100 not scored), on each backend's own loss function."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 5, 4)).astype(np.float32)
    tokens = np.array([[IGNORE_INDEX, 1, 3, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 0, 2, 2, IGNORE_INDEX],
                       [IGNORE_INDEX, 0, 0, 0, 3]])
    rows = np.array([1, 3, 0])
    weights = (0.5, 2.0, 1.25, 4.0)
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want_tokens = -sum(weights[tokens[i, j]] * log_p[i, j, tokens[i, j]] for i, j in zip(*np.nonzero(tokens != IGNORE_INDEX),
                                                                                         strict=True))
    want_rows = -sum(weights[y] * log_p[i, 0, y] for i, y in enumerate(rows))
    if backend == "torch":
        import torch

        from tl_torch.model import summed_loss

        w = torch.tensor(weights)
        got_tokens = float(summed_loss(torch.from_numpy(logits), torch.from_numpy(tokens), w))
        got_rows = float(summed_loss(torch.from_numpy(logits[:, 0]), torch.from_numpy(rows), w))
        plain = float(summed_loss(torch.from_numpy(logits[:, 0]), torch.from_numpy(rows)))
    else:
        from tl_tensorflow.runtime import activate

        activate()  # Keras on TensorFlow, before keras is imported
        import tensorflow as tf

        from tl.models.families import builtin
        from tl_tensorflow.network import build_network

        config = json.loads((tiny_checkpoint / "config.json").read_text())
        token_net = build_network(config, builtin("bert"), 4, tiny_checkpoint, "token_classification")
        row_net = build_network(config, builtin("bert"), 4, tiny_checkpoint)
        plain = float(row_net.summed_loss(tf.constant(rows), tf.constant(logits[:, 0]))[0])
        token_net.class_weights = row_net.class_weights = weights
        total, count = token_net.summed_loss(tf.constant(tokens), tf.constant(logits))
        got_tokens = float(total)
        assert float(count) == 9  # the count of scored targets, not the weights' sum
        got_rows = float(row_net.summed_loss(tf.constant(rows), tf.constant(logits[:, 0]))[0])
    assert got_tokens == pytest.approx(want_tokens, rel=1e-5)
    assert got_rows == pytest.approx(want_rows, rel=1e-5)
    assert plain == pytest.approx(-sum(log_p[i, 0, y] for i, y in enumerate(rows)), rel=1e-5)


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """400 training rows at 95/5 negative/positive, 80 evaluation rows at 50/50."""
    rows = synthetic_rows(2000, seed=3)
    neg = [r for r in rows if r[1] == "negative"]
    pos = [r for r in rows if r[1] == "positive"]
    train = neg[:380] + pos[:20]
    np.random.default_rng(0).shuffle(train)
    d = tmp_path_factory.mktemp("imbalanced")
    return write_csv(d / "train.csv", train), write_csv(d / "eval.csv", neg[380:420] + pos[20:60])


@pytest.mark.parametrize("backend", slow_on("tensorflow"))
def test_balanced_weights_predict_the_minority_class(imbalanced, tiny_checkpoint, tmp_path, backend):
    """75 steps on 95/5 data: unweighted, the tiny model predicts 'negative' for every row (and the run
    says so); balanced, it finds the positives (measured over 2 data orders x 3 seeds: unweighted
    collapsed in 6 of 6, balanced found positives in 5 of 6). The weighted run asks for 1 epoch with
    --min-steps 70: it trains 3 (25 steps each), records why, and --resume knows it finished all 3."""
    from tl.cli import cli
    from tl.plugins import build_registry, get_plugin_manager
    from tl.training.pipeline import run

    pm = get_plugin_manager()
    registry = build_registry(pm)
    train, evaluation = imbalanced
    common = {"backend": backend, "model": str(tiny_checkpoint), "dataset": str(train), "eval_dataset": str(evaluation),
              "batch_size": 16, "lr": 5e-3, "max_length": 16, "precision": "fp32", "seed": 2}
    plain = run(resolve({**common, "epochs": 3, "output": str(tmp_path / "plain")}, {}, {}), registry, pm,
                quiet=True).metrics
    weighted = run(resolve({**common, "epochs": 1, "min_steps": 70, "class_weights": "balanced",
                            "output": str(tmp_path / "balanced")}, {}, {}), registry, pm, quiet=True).metrics
    assert plain["eval_confusion_matrix"] == [[40, 0], [40, 0]] and plain["class_weights"] is None
    assert plain["warnings"][0].startswith("the model predicts 'negative' for 100% of the 80 evaluation rows")
    assert weighted["eval_confusion_matrix"][1][1] > 0 and weighted["eval_macro_f1"] > plain["eval_macro_f1"]
    assert not weighted.get("warnings")
    assert weighted["class_weights"] == {"negative": pytest.approx(400 / 760), "positive": 10.0}
    record = {"min_steps": 70, "steps_per_epoch": 25, "epochs_asked": 1, "epochs": 3}
    assert (weighted["epochs"], weighted["train_steps"], weighted["min_steps"]) == (3, 75, record)
    saved = json.loads((tmp_path / "balanced" / "config.json").read_text())
    assert (saved["config"]["epochs"], saved["min_steps"]) == (3, record)
    assert saved["class_weights"] == weighted["class_weights"]
    assert any(note.startswith("--min-steps 70: 25 optimizer steps per epoch, so 3 epochs instead of 1")
               for note in saved["plan"]["notes"])
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "balanced"), "-q"])
    assert resumed.exit_code == 2 and "already finished all 3 epochs" in resumed.output, resumed.output
