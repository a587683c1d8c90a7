import numpy as np
import pytest

from tl.evaluation.metrics import classification_metrics, cross_entropy, softmax


def test_classification_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, ["neg", "neu", "pos"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # neg: p=1, r=2/3 ; neu: p=1/2, r=1/2 ; pos: p=1/2, r=1
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["per_class"]["neu"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_cross_entropy_matches_definition():
    logits = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 4.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    p = softmax(logits)
    assert cross_entropy(logits, labels) == pytest.approx(-np.mean(np.log(p[np.arange(3), labels])))
    assert np.allclose(p.sum(axis=1), 1)
