"""Resolving ``--model`` and ``--dataset``: local path -> registered name -> Hugging Face Hub id.

A hub id contains a slash (``org/name``) or is written ``hf:name``; a bare word must be a
registered alias, so a typo gives "unknown alias" rather than a hub request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tl.data.examples import Examples, Splits, hash_split
from tl.data.tables import load_examples
from tl.errors import UsageError
from tl.plugins import Registry

HUB_PREFIXES = ("hf://", "hf:")
#: Reads a local file: (path, text_column, label_column, text_pair_column) -> Examples (``Task.read``).
Reader = Callable[..., Examples]


def _hub_id(name: str) -> str | None:
    for prefix in HUB_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    if "/" in name and not name.startswith((".", "/", "~")) and not Path(name).suffix:
        return name
    return None


def _looks_like_path(name: str) -> bool:
    """A local path rather than a name: it starts like one, has a file suffix or a backslash, or has
    more slashes than a hub id (``org/name``) has."""
    extra_slashes = name.count("/") > 1 and not name.startswith(HUB_PREFIXES)
    return name.startswith((".", "/", "~")) or Path(name).suffix != "" or "\\" in name or extra_slashes


def resolve_model(name: str, registry: Registry) -> tuple[Path, str]:
    """A local checkpoint directory for ``name`` and a description of where it came from."""
    path = Path(name).expanduser()
    if path.exists():
        return path, f"local:{path.resolve()}"
    if name in registry.items["model"]:
        spec = registry.get("model", name)
        return Path(spec.resolve()), f"alias:{name}"
    hub = _hub_id(name)
    if hub and not _looks_like_path(name):
        from tl.assets.hub import snapshot

        return snapshot(hub), f"hub:{hub}"
    if _looks_like_path(name):
        raise UsageError(f"model directory {name} not found; pass an existing checkpoint directory (config.json, "
                         "model.safetensors, tokenizer files), a model alias (tl plugins) or a hub id (org/name)")
    known = ", ".join(registry.names("model")) or "none"
    raise UsageError(
        f"unknown model {name!r}: not a directory, not an alias ({known}), not a hub id (org/name or hf:name)"
    )


def resolve_dataset(name: str, registry: Registry, text_column: str, label_column: str,
                    text_pair_column: str | None = None, *, read: Reader = load_examples) -> Splits:
    """Train and eval splits for a file (read by ``read``: the task's reader), a registered dataset
    or a hub dataset."""
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        return hash_split(read(path, text_column, label_column, text_pair_column))
    if name in registry.items["dataset"]:
        return registry.get("dataset", name).load()
    hub = _hub_id(name)
    if hub:
        from tl.assets.hub import load_dataset_splits

        return load_dataset_splits(hub, text_column, label_column, text_pair_column)
    known = ", ".join(registry.names("dataset")) or "none"
    raise UsageError(f"unknown dataset {name!r}: not a file, not a registered dataset ({known}), "
                     "not a hub id (org/name or hf:name)")


def resolve_eval_file(name: str, registry: Registry, text_column: str, label_column: str,
                      text_pair_column: str | None = None, *, read: Reader = load_examples) -> Examples:
    """All rows of ``--eval-dataset`` (a file), or the eval split of a named dataset."""
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        return read(path, text_column, label_column, text_pair_column)
    return resolve_dataset(name, registry, text_column, label_column, text_pair_column, read=read).eval
