"""LoRA adapters on disk, in PEFT's format, written and read by every backend.

A model trained with ``--strategy lora`` and saved without ``--merge-adapters`` holds, instead of
``model.safetensors``: ``adapter_model.safetensors`` (LoRA A [rank, in] and B [out, rank] of each
adapted projection, plus the head, under PEFT's key names) and ``adapter_config.json`` (PEFT's
LoraConfig), so ``peft.PeftModel.from_pretrained(base, dir)`` loads it too. tl loads it by merging
W + (alpha / rank) B A into the base checkpoint's weights (numpy, here) and loading the result like
any checkpoint; the base checkpoint's path is recorded in ``tl.json``.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tl.errors import UsageError
from tl.models.hf_checkpoint import CONFIG_NAME, load_state, save_state, write_json
from tl.training.strategies import LORA_TARGETS, Strategy, strip_prefix

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
MODULES_TO_SAVE = ("classifier", "pooler")


def peft_key(key: str) -> str:
    """transformers name without ``bert.`` -> PEFT's saved name (``classifier.*`` is not under ``bert.``)."""
    return PEFT_PREFIX + (key if key.startswith("classifier.") else f"bert.{key}")


def tl_key(key: str) -> str:
    return strip_prefix(key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key)


def has_adapters(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_WEIGHTS).is_file()


def write_adapters(directory: Path, tensors: dict[str, np.ndarray], strategy: Strategy, base: str,
                   task_type: str = "SEQ_CLS") -> None:
    """``tensors``: transformers names without ``bert.`` (``...query.lora_A.weight``, head weights)."""
    from safetensors.numpy import save_file

    save_file({peft_key(k): np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(Path(directory) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_json(Path(directory) / ADAPTER_CONFIG, {
        "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": base,
        "r": strategy.lora_rank, "lora_alpha": strategy.lora_alpha, "lora_dropout": strategy.lora_dropout,
        "target_modules": list(LORA_TARGETS), "modules_to_save": list(MODULES_TO_SAVE), "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
    })


def merge(base: dict[str, np.ndarray], adapters: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """Base weights (transformers names, ``bert.`` optional) with every adapter folded in and the
    adapters' head weights replacing the base's."""
    state = {strip_prefix(k): v for k, v in base.items()}
    adapters = {tl_key(k): v for k, v in adapters.items()}
    for key, a in adapters.items():
        if ".lora_A." not in key:
            continue
        target = key.split(".lora_A.")[0]
        b = adapters.get(f"{target}.lora_B.weight")
        if b is None or f"{target}.weight" not in state:
            raise UsageError(f"adapter {target}: missing lora_B or no such weight in the base model")
        state[f"{target}.weight"] = (state[f"{target}.weight"] + scale * (b @ a)).astype(np.float32)
    for key, value in adapters.items():
        if ".lora_" not in key:
            state[key] = value
    return state


def materialize(directory: Path) -> Path:
    """A checkpoint directory with the adapters of ``directory`` merged into their base model (a new
    temporary directory), or ``directory`` itself when it holds full weights."""
    directory = Path(directory)
    if not has_adapters(directory):
        return directory
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        meta = json.loads((directory / "tl.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{directory}: unreadable adapter files ({exc})") from None
    base = Path(meta.get("base_checkpoint") or config.get("base_model_name_or_path") or "")
    if not (base / "model.safetensors").is_file():
        raise UsageError(f"{directory} holds LoRA adapters for the base model {meta.get('base_model')!r}, "
                         f"whose checkpoint is not at {base}; `tl pull {meta.get('base_model')}` it, or save "
                         "the model with --merge-adapters")
    from safetensors.numpy import load_file

    scale = float(config["lora_alpha"]) / float(config["r"])
    state = merge(load_state(base), load_file(str(directory / ADAPTER_WEIGHTS)), scale)
    out = Path(tempfile.mkdtemp(prefix="tl-merged-"))
    atexit.register(shutil.rmtree, out, True)
    save_state(state, out)
    for name in (CONFIG_NAME, "tokenizer.json", "vocab.txt", "tl.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (directory / name).is_file():
            (out / name).write_bytes((directory / name).read_bytes())
    return out
