"""Saving and loading tl models (a Hugging Face folder plus ``tl.json``), the same for every backend:
a model saved on one backend loads on any other."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any

from tl import __version__, faults
from tl.data.tokenization import Tokenizer
from tl.errors import UsageError
from tl.files import replace_dir
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, Backend, HeadSpec, Model, Task
from tl.models.adapters import materialize
from tl.models.base_model import weights_sha256
from tl.models.hf_checkpoint import META_NAME, checkpoint_family, read_meta, validate_checkpoint, write_json

#: Export formats as users know them, for messages.
FORMAT_NAMES = {"onnx": "ONNX", "savedmodel": "SavedModel"}


def save_model(model: Model, directory: Path, meta: dict[str, Any]) -> Path:
    """Write weights, tokenizer and tl.json into ``directory`` atomically: into a temporary sibling
    directory, renamed into place once complete (an existing ``directory`` is replaced only then). A
    failed write (no space, read-only, ...) removes the temporary directory and raises; no
    half-written model is left behind."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    try:
        for stale in directory.parent.glob(f".{directory.name}.tmp-*"):  # of a process killed mid-save
            if stale.name.rpartition("-")[2].isdigit() and stale.is_dir():
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
        model.save_weights(tmp)
        family = checkpoint_family(tmp)
        model.tokenizer.save(tmp, tokenizer_class=family.tokenizer_class)
        faults.hit("model", 0, tmp / META_NAME)  # the fault suite's switch (TL_INJECT_FAULT); nothing otherwise
        full = {
            "format": 1,
            "task": meta.get("task"),
            "head": model.head.kind,
            "labels": list(model.head.labels),
            "backend": model.backend,
            "family": family.name,
            "max_length": meta.get("max_length", 128),
            "base_model": model.info.get("base_model"),
            "base_source": model.info.get("base_source"),
            # the base weights' hash, never their local path: tl.json travels (tl.models.base_model)
            "base_sha256": weights_sha256(model.info["base_checkpoint"]) if model.info.get("base_checkpoint") else None,
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"tl": __version__, **meta.get("versions", {})},
        }
        full.update({k: v for k, v in meta.items() if k not in full and k != "versions"})
        write_json(tmp / META_NAME, full)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_saved(directory: str | Path, backend: Backend, *, base: str | Path | None = None,
               registry: Any = None) -> tuple[Model, dict[str, Any]]:
    """Load a tl model directory on ``backend`` (any backend can load any backend's model). ``base``
    (``--base DIR``): the base checkpoint of a model saved as LoRA adapters alone, where tl.json's
    record does not find it (a local base on another machine)."""
    d = Path(directory)
    if not d.exists():
        raise UsageError(f"model directory {d} not found")
    meta = read_meta(d)
    exported = (meta.get("export") or {}).get("format")
    runs = backend.capabilities.runs_exports
    if runs:  # e.g. onnx: runs export directories, reads no weights
        if exported not in runs:
            raise UsageError(f"{d} is not an {FORMAT_NAMES.get(runs[0], runs[0])} export; "
                             f"run tl export --format {runs[0]} --model {d}")
        weights = d
    elif exported:
        raise UsageError(f"{d} is an {FORMAT_NAMES.get(exported, exported)} export; use --runtime {exported}")
    else:
        weights = materialize(d, base, registry)  # LoRA adapters saved alone: merged into their base model
        validate_checkpoint(weights)
    tokenizer = Tokenizer.from_dir(d)
    tokenizer.truncation = meta.get("truncation", "head")
    head = HeadSpec(meta["head"], meta["labels"])
    if head.kind not in backend.capabilities.heads:
        raise UsageError(f"backend {backend.name!r} cannot run a {head.kind} model (heads: "
                         f"{', '.join(backend.capabilities.heads)}); pass another --backend")
    info = {"base_model": meta.get("base_model"), "trained_with": meta.get("backend"), "path": str(d)}
    return backend.load_model(weights, head, tokenizer, info), meta


def pick_runtime(registry, requested: str | None, model_dir: str | Path) -> str:
    """The runtime (a backend name) to run a saved model on: ``requested``; else ``onnx`` for an ONNX
    export directory; else the backend that trained the model, if installed; else any installed one."""
    if requested:
        return requested
    meta = read_meta(model_dir)
    if meta.get("export", {}).get("format") == "onnx":
        return "onnx"
    trained = meta.get("backend")
    names = registry.names("backend")
    if trained in names and registry.get("backend", trained).is_available():
        return trained
    for name in names:
        backend = registry.get("backend", name)
        if backend.is_available() and not backend.capabilities.runs_exports:
            return name
    raise UsageError("no backend that runs tl models is installed: pip install 'tl[torch]' or 'tl[tensorflow]' "
                     "(or, where one is, tl export --format onnx, then run the export with 'tl[onnx]' alone)")


def open_model(model_dir: str | Path, runtime: str | None = None, *, precision: str = "auto",
               threads: int | None = None, registry=None,
               base: str | Path | None = None) -> tuple[Model, dict[str, Any], Task]:
    """A saved model (or an export directory) ready to predict: loaded on ``runtime`` (a backend
    name; None: ``pick_runtime``), computing in the precision the training plan would pick here
    (``auto``: bf16 where the hardware computes it natively, as the run's own evaluation did), with
    its metadata and the task that trained it. Used by ``tl predict``, ``tl evaluate`` and ``tl serve``."""
    from tl.plugins import build_registry, get_plugin_manager
    from tl.plugins.registry import get_backend
    from tl.training.plan import PlanRequest, apply_plan, make_plan

    registry = registry if registry is not None else build_registry(get_plugin_manager())
    meta = read_meta(model_dir)  # a missing or non-tl directory is a one-line error before any probing
    task = task_of(meta, registry)
    backend = get_backend(registry, pick_runtime(registry, runtime, model_dir))
    plan = make_plan(backend.probe(), PlanRequest(precision=precision, batch_size=1, threads=threads))
    apply_plan(backend, plan)  # before the framework starts its thread pools
    model, meta = load_saved(model_dir, backend, base=base, registry=registry)
    model.set_precision(supported_precision(backend, plan.precision, precision))
    return model, meta, task


def supported_precision(backend: Backend, planned: str, requested: str) -> str:
    """The plan's precision where ``backend`` computes in it; else fp32 for ``auto`` (the onnx
    runtime computes in fp32 only), and a one-line error for a precision asked for by name."""
    if planned in backend.capabilities.precisions:
        return planned
    if requested == "auto":
        return "fp32"
    raise UsageError(f"the {backend.name} runtime computes in {', '.join(backend.capabilities.precisions)}, "
                     f"not {requested}; pass --precision auto")


def task_of(meta: dict[str, Any], registry) -> Task:
    """The task that trained a saved model (its plugin must be installed); a model of a sequence
    classification task whose plugin is gone is still served by the default Task."""
    name = meta.get("task")
    if name in registry.items["task"]:
        return registry.get("task", name)
    if meta.get("head", HEAD_SEQUENCE_CLASSIFICATION) == HEAD_SEQUENCE_CLASSIFICATION:
        return Task()
    raise UsageError(f"this model was trained by task {name!r} ({meta.get('head')} head), which no installed "
                     "plugin provides; install the plugin that registers it (see `tl plugins`)")
