"""The Hugging Face Hub path for models and datasets (needs the ``hub`` extra and a network,
or a warm HF cache with ``HF_HUB_OFFLINE=1``). Every failure becomes one actionable line."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from tl.data.examples import Examples, Splits
from tl.errors import AssetError, UsageError

CHECKPOINT_PATTERNS = [
    "config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
    "tokenizer_config.json", "special_tokens_map.json",
]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"the Hugging Face Hub path needs {module}: pip install 'tl[hub]'")


def snapshot(repo_id: str) -> Path:
    """Download (or find in the HF cache) a model repository's checkpoint files."""
    _require("huggingface_hub")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, allow_patterns=CHECKPOINT_PATTERNS)
    except Exception as exc:
        raise AssetError(_hub_failure(f"model {repo_id!r}", exc)) from None
    return Path(path)


def hub_splits(repo_id: str):
    """(train split, evaluation split, its name) of a hub dataset: ``datasets`` Arrow tables, memory-mapped
    from the HF cache; the evaluation split is ``validation``, else ``test``."""
    _require("datasets")
    import datasets

    try:
        ds = datasets.load_dataset(repo_id)
    except Exception as exc:
        raise AssetError(_hub_failure(f"dataset {repo_id!r}", exc)) from None
    if "train" not in ds:
        raise UsageError(f"hub dataset {repo_id!r} has no train split (splits: {', '.join(ds)})")
    eval_name = next((s for s in ("validation", "test") if s in ds), None)
    if eval_name is None:
        raise UsageError(f"hub dataset {repo_id!r} has no validation or test split; pass --eval-dataset")
    return ds["train"], ds[eval_name], eval_name


def load_dataset_splits(repo_id: str, text_column: str, label_column: str,
                        text_pair_column: str | None = None) -> Splits:
    """Train split + test (or validation) split of a hub dataset, in memory."""
    train, evaluation, eval_name = hub_splits(repo_id)
    return Splits(
        _examples(train, repo_id, text_column, label_column, text_pair_column),
        _examples(evaluation, repo_id, text_column, label_column, text_pair_column),
        split=f"hub splits train / {eval_name}",
    )


def iter_split(split, repo_id: str, text_column: str, label_column: str, pair: str | None,
               chunk_rows: int) -> Iterator[Examples]:
    """A hub split's rows as ``Examples`` of at most ``chunk_rows`` rows, read batch by batch from its
    Arrow table (labels of a ``ClassLabel`` column by name)."""
    _check_columns(split, repo_id, text_column, label_column, pair)
    names = getattr(split.features[label_column], "names", None)
    columns = [c for c in (text_column, label_column, pair) if c is not None]
    for batch in split.select_columns(columns).iter(batch_size=chunk_rows):
        labels = [names[v] if names else str(v) for v in batch[label_column]]
        yield Examples([str(t) for t in batch[text_column]], labels,
                       [str(t) for t in batch[pair]] if pair else None, source=repo_id)


def _check_columns(split, repo_id: str, text_column: str, label_column: str, pair: str | None) -> None:
    for option, column in (("--text-column", text_column), ("--label-column", label_column),
                           ("--text-pair-column", pair)):
        if column is not None and column not in split.column_names:
            raise UsageError(f"column {column!r} not found in hub dataset {repo_id!r}; columns are: "
                             f"{', '.join(split.column_names)}. Pass {option}.")


def _examples(split, repo_id: str, text_column: str, label_column: str, pair: str | None) -> Examples:
    _check_columns(split, repo_id, text_column, label_column, pair)
    feature = split.features[label_column]
    names = getattr(feature, "names", None)
    labels = [names[v] if names else str(v) for v in split[label_column]]
    return Examples(list(split[text_column]), labels, list(split[pair]) if pair else None, source=repo_id)


def _hub_failure(what: str, exc: Exception) -> str:
    kind = type(exc).__name__
    if offline() or "Offline" in kind or "LocalEntryNotFound" in kind:
        return (f"{what} is not in the Hugging Face cache and the hub is offline (HF_HUB_OFFLINE); "
                "download it on a connected machine first, or use a local path or an offline alias (tl plugins)")
    if "RepositoryNotFound" in kind or "DatasetNotFound" in kind or "404" in str(exc):
        return f"{what} was not found on the Hugging Face Hub; check the id"
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else kind
    return (f"could not fetch {what} from the Hugging Face Hub ({kind}: {first}); check the network, "
            "or use a local path or an offline alias (tl plugins)")
