"""The base model a saved model was trained from, recorded portably in ``tl.json``, and found again.

``tl.json`` names the base as the user did, never by a local path: ``base_model`` (an alias such as
``minilm``, a hub id such as ``google-bert/bert-base-uncased``, or a local checkpoint's directory name),
``base_source`` (``alias``, ``hub`` or ``local``) and ``base_sha256`` (the sha256 of its
``model.safetensors``). A model saved as LoRA adapters alone needs its base's weights to load; they are
found from that record (``find_base``), and their hash is checked, on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tl.errors import UsageError
from tl.models.hf_checkpoint import WEIGHTS_NAME

SOURCES = ("alias", "hub", "local")


def portable_name(name: str) -> str:
    """``name`` as tl.json records it: a local file or directory by its last component (a path says
    nothing on another machine and tells this one's layout), any other name (alias, hub id) as it is."""
    path = Path(name).expanduser()
    return path.resolve().name if path.exists() else name


def base_reference(model_source: str, name: str) -> dict[str, str]:
    """``base_model`` and ``base_source`` for a base resolved as ``model_source`` (``alias:NAME``,
    ``hub:ID`` or ``local:/abs/path``, from ``tl.assets.resolve.resolve_model``) from ``--model NAME``.
    A local checkpoint is named by its directory's name alone."""
    kind, _, where = model_source.partition(":")
    if kind in ("alias", "hub") and where:
        return {"base_model": where, "base_source": kind}
    return {"base_model": Path(where or name).expanduser().resolve().name, "base_source": "local"}


def weights_sha256(checkpoint: str | Path) -> str:
    """The sha256 of a checkpoint directory's ``model.safetensors``: the catalog's for an offline alias
    as pulled (checked when it was extracted), else computed, streaming."""
    from tl.assets.catalog import known_sha256
    from tl.files import sha256_file

    return known_sha256(Path(checkpoint)) or sha256_file(Path(checkpoint) / WEIGHTS_NAME)


def find_base(directory: Path, meta: dict[str, Any], adapter_config: dict[str, Any], base: str | Path | None = None,
              registry: Any = None) -> Path:
    """The checkpoint directory of the base model of the adapters in ``directory`` (``meta``: its tl.json):
    ``base`` (``--base DIR``) when given; else an alias through the registry, a hub id through the hub
    (its cache first when ``HF_HUB_OFFLINE``), a local base where the run that trained it recorded it
    (``config.json`` beside ``model/``, on the machine that trained it). The weights found must have
    the recorded sha256. A tl.json of an earlier tl (``base_checkpoint``, a local path) is read as it was."""
    name, source, expected = meta.get("base_model"), meta.get("base_source"), meta.get("base_sha256")
    if source is None:  # tl.json written before base_source: the base checkpoint's local path
        path = Path(base or meta.get("base_checkpoint") or adapter_config.get("base_model_name_or_path") or "")
        if not (path / WEIGHTS_NAME).is_file():
            raise UsageError(f"{directory} holds LoRA adapters for the base model {name!r}, whose checkpoint is "
                             f"not at {path}; pass --base DIR (that checkpoint's directory), or save the model "
                             "with --merge-adapters")
        return path
    if base is not None:
        path, what = Path(base).expanduser(), f"--base {base}"
        if not (path / WEIGHTS_NAME).is_file():
            raise UsageError(f"--base {base}: no {WEIGHTS_NAME} there; pass the checkpoint directory of "
                             f"{name!r} (sha256 {expected})")
    elif source == "alias":
        path, what = _alias(name, registry), f"alias {name!r}"
    elif source == "hub":
        from tl.assets.hub import snapshot

        path, what = snapshot(name), f"hub model {name!r}"
    else:
        path, what = _recorded_by_run(directory), "the base checkpoint the run recorded"
        if path is None:
            raise UsageError(f"{directory} holds LoRA adapters for the local base model {name!r} (sha256 "
                             f"{expected}), which is not found here; pass --base DIR (that checkpoint's "
                             "directory), or train with --merge-adapters")
    if expected:
        actual = weights_sha256(path)
        if actual != expected:
            raise UsageError(f"{what} has weights with sha256 {actual}, but {directory} was trained on {name!r} "
                             f"with sha256 {expected}; pass --base DIR with the checkpoint it was trained on")
    return path


def _alias(name: str, registry: Any) -> Path:
    if registry is None:
        from tl.plugins import build_registry, get_plugin_manager

        registry = build_registry(get_plugin_manager())
    if name not in registry.items["model"]:
        known = ", ".join(registry.names("model")) or "none"
        raise UsageError(f"the base model alias {name!r} is not registered here (aliases: {known}); install "
                         "the plugin that provides it, or pass --base DIR")
    return Path(registry.get("model", name).resolve())


def _recorded_by_run(directory: Path) -> Path | None:
    """The base checkpoint the run that saved ``directory`` (``runs/<id>/model``) recorded in its
    ``config.json``, when it is still there."""
    try:
        config = json.loads((Path(directory).resolve().parent / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded = config.get("base_checkpoint") if isinstance(config, dict) else None
    if not isinstance(recorded, str) or not (Path(recorded) / WEIGHTS_NAME).is_file():
        return None
    return Path(recorded)
