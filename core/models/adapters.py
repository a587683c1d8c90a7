"""LoRA adapters on disk, in PEFT's format, written and read by every backend.

A model trained with ``--strategy lora`` and saved without ``--merge-adapters`` holds, instead of
``model.safetensors``: ``adapter_model.safetensors`` (LoRA A [rank, in] and B [out, rank] of each
adapted projection, plus the head, under PEFT's key names) and ``adapter_config.json`` (PEFT's
LoraConfig), so ``peft.PeftModel.from_pretrained(base, dir)`` loads it too. tl loads it by merging
W + (alpha / rank) B A into the base checkpoint's weights (numpy, here) and loading the result like
any checkpoint; the base model is recorded in ``tl.json`` by name, source and weights' sha256
(``tl.models.base_model``).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tl.errors import UsageError
from tl.interfaces import Family
from tl.models.base_model import find_base
from tl.models.hf_checkpoint import CONFIG_NAME, checkpoint_family, load_state, save_state, write_json
from tl.training.strategies import Strategy, strip_prefix

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


def modules_to_save(family: Family) -> tuple[str, ...]:
    """The modules PEFT trains in full and saves beside the adapters: the head's, and base-model
    modules only the sequence head uses (BERT's pooler)."""
    return family.head_modules + tuple(p.rstrip(".") for p in family.sequence_only)


def peft_key(key: str, family: Family) -> str:
    """transformers name without the family prefix -> PEFT's saved name (the head is not under the prefix)."""
    return PEFT_PREFIX + family.full_name(key)


def tl_key(key: str, family: Family | None = None) -> str:
    return strip_prefix(key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key, family)


def has_adapters(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_WEIGHTS).is_file()


def write_adapters(directory: Path, tensors: dict[str, np.ndarray], strategy: Strategy, base: str,
                   family: Family, task_type: str = "SEQ_CLS") -> None:
    """``tensors``: transformers names without the family prefix (``...query.lora_A.weight``, head weights)."""
    from safetensors.numpy import save_file

    save_file({peft_key(k, family): np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(Path(directory) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_json(Path(directory) / ADAPTER_CONFIG, {
        "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": base,
        "r": strategy.lora_rank, "lora_alpha": strategy.lora_alpha, "lora_dropout": strategy.lora_dropout,
        "target_modules": list(family.lora), "modules_to_save": list(modules_to_save(family)), "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
    })


def merge(base: dict[str, np.ndarray], adapters: dict[str, np.ndarray], scale: float,
          family: Family | None = None) -> dict[str, np.ndarray]:
    """Base weights (transformers names, the family prefix optional) with every adapter folded in and
    the adapters' head weights replacing the base's."""
    state = {strip_prefix(k, family): v for k, v in base.items()}
    adapters = {tl_key(k, family): v for k, v in adapters.items()}
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


def materialize(directory: Path, base: str | Path | None = None, registry: Any = None) -> Path:
    """A checkpoint directory with the adapters of ``directory`` merged into their base model (a new
    temporary directory), or ``directory`` itself when it holds full weights. The base model is found
    from tl.json's record (``tl.models.base_model.find_base``; ``base``: ``--base DIR``)."""
    directory = Path(directory)
    if not has_adapters(directory):
        return directory
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        meta = json.loads((directory / "tl.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{directory}: unreadable adapter files ({exc})") from None
    checkpoint = find_base(directory, meta, config, base, registry)
    from safetensors.numpy import load_file

    scale = float(config["lora_alpha"]) / float(config["r"])
    family = checkpoint_family(checkpoint)
    state = merge(load_state(checkpoint, family), load_file(str(directory / ADAPTER_WEIGHTS)), scale, family)
    out = Path(tempfile.mkdtemp(prefix="tl-merged-"))
    atexit.register(shutil.rmtree, out, True)
    save_state(state, out, family)
    for name in (CONFIG_NAME, "tokenizer.json", "vocab.txt", "tl.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (directory / name).is_file():
            (out / name).write_bytes((directory / name).read_bytes())
    return out
