"""The ``classify`` task: one text, one of N classes (topics, intents, categories, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tl.interfaces import Task


class ClassifyTask(Task):
    name = "classify"
    description = "Multi-class text classification: any 2+ label names (topics, intents, categories)"
    default_model = "minilm"
    default_dataset = ""
    defaults = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "max_length": 128, "warmup_ratio": 0.1}
    #: How many of the most frequent confusions ``metrics`` lists.
    top_confusions = 5

    def label_order(self, observed: Iterable[str]) -> tuple[str, ...]:
        """Integer labels in numeric order, other names alphabetically ignoring case (``Business``,
        ``sports``, ``World``); ids are positions in this order."""
        names = self.label_names(observed)  # refuses free text (tl.interfaces.Task.label_names)
        if names and all(n.lstrip("-").isdigit() for n in names):
            return tuple(sorted(names, key=lambda n: (int(n), n)))
        return tuple(sorted(names, key=lambda n: (n.casefold(), n)))

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """tl's classification report (accuracy, macro-F1, per-class precision/recall/F1/support,
        confusion matrix) plus support-weighted F1, balanced accuracy (mean per-class recall) and the
        most frequent confusions as ``{"true", "predicted", "count"}`` rows."""
        out = super().metrics(y_true, y_pred, labels)
        per_class = [out["per_class"][lab] for lab in labels]
        support = np.array([c["support"] for c in per_class], dtype=np.float64)
        f1 = np.array([c["f1"] for c in per_class])
        recall = np.array([c["recall"] for c in per_class])
        present = support > 0
        out["weighted_f1"] = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
        out["balanced_accuracy"] = float(recall[present].mean()) if present.any() else 0.0
        cm = np.asarray(out["confusion_matrix"])
        off = [(int(cm[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and cm[i, j]]
        off.sort(key=lambda t: (-t[0], t[1], t[2]))
        out["top_confusions"] = [{"true": labels[i], "predicted": labels[j], "count": n}
                                 for n, i, j in off[: self.top_confusions]]
        return out
