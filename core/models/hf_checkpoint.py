"""Hugging Face checkpoint directories, read and written without a framework.

The saved-model format of every backend is the one ``transformers`` writes for the family's task
class (``BertForSequenceClassification``, ``RobertaForTokenClassification``, ...: ``Family.architectures``):
``config.json`` (with ``id2label``/``label2id``), ``model.safetensors`` (base-model keys prefixed with
the family's ``prefix``, head keys as the head names them), tokenizer files, plus ``tl.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tl.errors import UsageError
from tl.interfaces import Family, HeadSpec

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
META_NAME = "tl.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack")


def check_checkpoint_dir(directory: str | Path) -> Path:
    """A directory with config.json and model.safetensors, or a one-line reason why not."""
    d = Path(directory)
    if not d.exists():
        raise UsageError(f"checkpoint directory {d} not found")
    if not d.is_dir():
        raise UsageError(f"{d} is not a directory; --model takes a checkpoint directory, an alias or a hub id")
    if not (d / CONFIG_NAME).is_file():
        raise UsageError(f"{d} is not a Hugging Face checkpoint: {CONFIG_NAME} is missing; pass the directory "
                         "save_pretrained wrote (config.json, model.safetensors, tokenizer files)")
    if not (d / WEIGHTS_NAME).is_file():
        if (d / "tf_model.h5").is_file():
            raise UsageError(f"{d} has tf_model.h5 (TensorFlow) but no {WEIGHTS_NAME}: `tl run --model {d}` "
                             "converts it")
        pickled = [n for n in PICKLE_WEIGHTS if (d / n).exists()]
        extra = (
            f" (found {', '.join(pickled)}: pickle files can run code when loaded, so tl reads only safetensors; "
            "pass --allow-pickle to convert a trusted pytorch_model.bin)"
            if pickled else ""
        )
        raise UsageError(f"{d} has no {WEIGHTS_NAME}{extra}")
    return d


def convert_pickled(directory: str | Path, cache: Path) -> Path:
    """``--allow-pickle``: a copy of ``directory`` in ``cache`` with pytorch_model.bin converted to
    model.safetensors. Loads with ``torch.load(weights_only=True)`` (tensors only, no arbitrary
    objects); needs torch."""
    import hashlib
    import importlib.util
    import shutil

    d = Path(directory)
    source = d / "pytorch_model.bin"
    if (d / WEIGHTS_NAME).is_file() or not source.is_file():
        return d
    if importlib.util.find_spec("torch") is None:
        raise UsageError("--allow-pickle converts pytorch_model.bin with torch, which is not installed: "
                         "pip install 'tl[torch]'")
    import torch
    from safetensors.torch import save_file

    digest = hashlib.sha256(str(d.resolve()).encode() + str(source.stat().st_mtime_ns).encode()).hexdigest()[:16]
    target = cache / "converted" / digest
    if (target / WEIGHTS_NAME).is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in d.iterdir():
        if f.is_file() and f.name not in PICKLE_WEIGHTS:
            shutil.copyfile(f, tmp / f.name)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"cannot read {source} as plain tensors ({type(exc).__name__}); refusing it") from None
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def verify_weights(directory: str | Path) -> None:
    """Check model.safetensors' header and size without reading the tensors (catches truncation)."""
    import struct

    path = Path(directory) / WEIGHTS_NAME
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than its header")
            (n,) = struct.unpack("<Q", head)
            if n > min(size, 100 << 20):
                raise ValueError("header length out of range")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise UsageError(f"{path} is corrupted ({exc}); re-download or re-save the model") from None
    if size != 8 + n + end:
        raise UsageError(
            f"{path} is truncated or corrupted ({size} bytes, expected {8 + n + end}); re-download or re-save the model"
        )


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path} is not a JSON object")
    return config


def checkpoint_family(directory: str | Path, config: dict[str, Any] | None = None) -> Family:
    """The family of the checkpoint in ``directory`` (from config.json's ``model_type``)."""
    from tl.models.families import family_for

    config = read_config(directory) if config is None else config
    return family_for(config, Path(directory) / CONFIG_NAME)


def classifier_config(base: dict[str, Any], head: HeadSpec, family: Family) -> dict[str, Any]:
    """config.json of a ``family`` classifier with ``head`` built on ``base`` (the checkpoint's config)."""
    if head.kind not in family.architectures:
        raise UsageError(f"model family {family.name!r} has no {head.kind!r} head (heads: {', '.join(family.heads)})")
    drop = ("_name_or_path", "architectures", "id2label", "label2id")
    config = {k: v for k, v in base.items() if k not in drop}
    config["architectures"] = [family.architectures[head.kind].rpartition(":")[2]]
    config["id2label"] = {str(i): label for i, label in enumerate(head.labels)}
    config["label2id"] = {label: i for i, label in enumerate(head.labels)}
    if head.kind == "sequence_classification":
        config["problem_type"] = "single_label_classification"
    else:
        config.pop("problem_type", None)
    return config


def load_state(directory: str | Path, family: Family | None = None) -> dict[str, np.ndarray]:
    """Weights as numpy arrays, named without the family's base-model prefix (``Family.short_name``;
    None: the family of the directory's config.json)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(directory) / WEIGHTS_NAME
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{path} is corrupted or truncated ({exc}); re-download or re-save the model") from None
    family = checkpoint_family(directory) if family is None else family
    return {family.short_name(key): value for key, value in raw.items()}


def save_state(state: dict[str, np.ndarray], directory: str | Path, family: Family) -> None:
    """Write ``state`` (names without the family prefix) as transformers names it (``Family.full_name``)."""
    from safetensors.numpy import save_file

    out = {family.full_name(key): np.ascontiguousarray(value) for key, value in state.items()}
    save_file(out, str(Path(directory) / WEIGHTS_NAME), metadata={"format": "pt"})


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def validate_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Everything checkable without a framework: layout, a config.json of a known family, an intact
    model.safetensors. Returns the config."""
    check_checkpoint_dir(directory)
    config = read_config(directory)
    checkpoint_family(directory, config)
    verify_weights(directory)
    return config


def read_meta(directory: str | Path) -> dict[str, Any]:
    """tl.json of a saved model, or a one-line reason why it is not a tl model."""
    d = Path(directory)
    path = d / META_NAME
    if not d.is_dir():
        raise UsageError(f"model directory {d} not found" if not d.exists() else f"{d} is not a directory")
    if not path.is_file():
        if (d / "model" / META_NAME).is_file():
            raise UsageError(f"{d} is a run directory; pass --model {d / 'model'}")
        raise UsageError(f"{d} is not a model saved by tl ({META_NAME} is missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        labels = tuple(str(x) for x in meta["labels"])
        meta["labels"] = labels
        meta.setdefault("head", "sequence_classification")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return meta
