"""A run's labelled data: the train and evaluation splits of ``--dataset`` (and ``--eval-dataset``),
subsets, the text-pair check and the label space."""

from __future__ import annotations

from pathlib import Path

from tl.assets.resolve import resolve_dataset, resolve_eval_file
from tl.data.examples import Examples, Splits, subset, validation_split
from tl.errors import DataError
from tl.interfaces import Task
from tl.plugins.registry import Registry
from tl.training.config import RunConfig


def load_splits(config: RunConfig, registry: Registry, task: Task | None = None) -> Splits:
    """Train and eval examples; local files are read by ``task.read`` (default: a table)."""
    read = (task or Task()).read
    splits = resolve_dataset(config.dataset, registry, config.text_column, config.label_column,
                             config.text_pair_column, read=read)
    if config.validation_split:
        return _validation(config, splits, task)
    if config.eval_dataset:
        eval_examples = resolve_eval_file(config.eval_dataset, registry, config.text_column,
                                          config.label_column, config.text_pair_column, read=read)
        # with a separate eval set, the whole of --dataset trains
        train = splits.train if not Path(config.dataset).exists() else _all(splits)
        splits = Splits(train, eval_examples, split=f"eval from {config.eval_dataset}")
    if task is not None:
        for examples in (splits.train, splits.eval):
            require_pairs(task, examples)
    return Splits(subset(splits.train, config.max_train_samples), subset(splits.eval, config.max_eval_samples),
                  splits.split)


def _validation(config: RunConfig, splits: Splits, task: Task | None) -> Splits:
    """``validation_split``: the training data (--max-train-samples' subset of it first) split again by
    a salted hash into train and validation; the evaluation split (or --eval-dataset) is not read."""
    # with a separate eval set, the whole of a local --dataset is training data
    train = _all(splits) if config.eval_dataset and Path(config.dataset).exists() else splits.train
    if task is not None:
        require_pairs(task, train)
    held = validation_split(subset(train, config.max_train_samples), config.validation_split)
    return Splits(held.train, subset(held.eval, config.max_eval_samples), held.split)


def require_pairs(task: Task, examples: Examples) -> None:
    """A one-line error when ``task`` classifies text pairs and ``examples`` are single texts."""
    if task.requires_text_pair and examples.pairs is None:
        source = examples.source or "the data"
        default = task.defaults.get("text_pair_column")
        raise DataError(f"task {task.name!r} classifies text pairs, but {source} has no second text; pass "
                        f"--text-pair-column" + (f" (default: {default})" if default else ""))


def _all(splits: Splits) -> Examples:
    return splits.train + splits.eval


def label_space(task: Task, splits: Splits) -> tuple[str, ...]:
    labels = task.label_order(task.observed_labels(splits.train))
    task.validate_labels(labels, splits.train.source or "training data")
    unseen = sorted(set(task.observed_labels(splits.eval)) - set(labels))
    if unseen:
        raise DataError(
            f"evaluation labels {', '.join(map(repr, unseen))} never occur in the training data "
            f"(training labels: {', '.join(labels)}); fix the label column or the split"
        )
    return labels
