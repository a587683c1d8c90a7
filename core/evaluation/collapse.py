"""A classifier that collapsed onto one class: found in the final evaluation's confusion matrix, told
in one warning line with the numbers and what to try (README "Small and imbalanced datasets").

A model collapsed when either

- it predicts one class for at least ``DOMINANT_SHARE`` (95%) of the evaluated rows while that class
  is at most ``TRUE_SHARE`` (90%) of their labels: it over-predicts the class by at least 5 points
  and, at best, gets nearly all of the other >= 10% wrong. When one class really is more than 90%
  of the data, predicting it for 95% of rows can be a fair model; the second rule still catches the
  collapse there; or
- a class with at least ``MIN_SUPPORT`` (5) evaluation examples is never predicted: the model cannot
  tell it at all (with fewer examples it is as likely bad luck).

The rules read the confusion matrix tasks put in their metrics (``eval_confusion_matrix``, rows true,
columns predicted): one row per text for single-label heads, one per word for NER's tags, where the
first rule usually means "O for (nearly) every word".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: One class predicted for at least this share of the evaluated rows ...
DOMINANT_SHARE = 0.95
#: ... while it is at most this share of their true labels.
TRUE_SHARE = 0.90
#: A class with at least this many evaluation examples that is never predicted.
MIN_SUPPORT = 5
#: Fewer evaluated rows than this: the first rule is not applied (too few to tell).
MIN_ROWS = 20


def collapse(confusion: Sequence[Sequence[int]], labels: Sequence[str], unit: str = "rows") -> str | None:
    """What collapsed, in words with the numbers (None: nothing did, or the matrix does not fit
    ``labels``)."""
    n = len(labels)
    if n < 2 or len(confusion) != n or any(len(row) != n for row in confusion):
        return None
    true = [sum(int(v) for v in row) for row in confusion]
    predicted = [sum(int(confusion[i][j]) for i in range(n)) for j in range(n)]
    total = sum(true)
    if not total:
        return None
    top = max(range(n), key=lambda j: predicted[j])
    parts = []
    if total >= MIN_ROWS and predicted[top] >= DOMINANT_SHARE * total and true[top] <= TRUE_SHARE * total:
        parts.append(f"the model predicts {labels[top]!r} for {predicted[top] / total:.0%} of the {total} "
                     f"evaluation {unit} ({true[top] / total:.0%} of them are {labels[top]!r})")
    never = [i for i in range(n) if predicted[i] == 0 and true[i] >= MIN_SUPPORT]
    if never and parts:
        names = [f"{labels[i]!r} ({true[i]})" for i in never]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"{listed} {'is' if len(names) == 1 else 'are'} never predicted")
    elif never:
        names = [f"{labels[never[0]]!r} ({true[never[0]]} of the {total} evaluation {unit})",
                 *(f"{labels[i]!r} ({true[i]})" for i in never[1:])]
        parts.append("the model never predicts " + " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1
                                                                 else names))
    return "; ".join(parts) or None


def collapse_warning(metrics: dict[str, Any], labels: Sequence[str], *, unit: str = "rows",
                     config: Any = None, steps: int | None = None) -> str | None:
    """The warning line for a collapsed model (None when it did not): what happened, the headline
    metrics, and what to try given how the run was configured (``config``: its ``RunConfig``;
    ``steps``: the optimizer steps it trained)."""
    what = collapse(metrics.get("eval_confusion_matrix") or [], labels, unit)
    if what is None:
        return None
    scores = ", ".join(f"{name} {metrics[f'eval_{key}']:.3f}"
                       for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("f1", "F1"))
                       if isinstance(metrics.get(f"eval_{key}"), (int, float)))
    tries = []
    if getattr(config, "class_weights", None) != "balanced":
        tries.append("--class-weights balanced")
    steps_note = f"; this run trained {steps}" if steps is not None else ""
    more = max(300, -(-2 * steps // 100) * 100) if steps else 300  # at least twice the steps it trained
    if getattr(config, "max_steps", None):  # it sets the steps: --min-steps and --epochs would not count
        tries.append(f"more optimizer steps (--max-steps {more}{steps_note})")
    else:
        tries.append(f"more optimizer steps (--min-steps {more} or more --epochs{steps_note})")
    lr = getattr(config, "lr", None)
    tries.append(f"another --lr ({'this run: ' + format(lr, '.3g') + '; ' if lr else ''}e.g. 1e-4 or 2e-5)")
    return (f"{what}{f': {scores}' if scores else ''}. Try {', '.join(tries)}, or search them with tl tune "
            f"(README: Small and imbalanced datasets)")
