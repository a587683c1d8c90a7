"""Transfer strategies on torch (semantics in ``tl.training.strategies``): which parameters train in each
epoch, discriminative learning rates, and LoRA through ``peft``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from tl.interfaces import Family
from tl.models.adapters import modules_to_save, write_adapters
from tl.training.strategies import (
    Strategy,
    depth,
    encoder_inference_mode,
    lr_scale,
    strip_prefix,
    trains,
)

PEFT_PARTS = ("base_model.model.", "modules_to_save.default.", "base_layer.")

# peft reads transformers' deprecated ``is_gradient_checkpointing``; not the user's concern
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def hf_name(name: str, family: Family | None = None) -> str:
    """A (possibly peft-wrapped) parameter name as in a transformers checkpoint, without the family's
    base-model prefix."""
    for part in PEFT_PARTS:
        name = name.replace(part, "")
    return strip_prefix(name.replace(".default.", "."), family)  # lora_A.default.weight -> lora_A.weight


def num_layers(module: torch.nn.Module) -> int:
    """The layer groups of layer-wise strategies (``Family.depth_key``: layers, or ALBERT's groups)."""
    return int(getattr(module.config, family(module).depth_key))


def family(module: torch.nn.Module) -> Family:
    from tl_torch.model import family_of

    return family_of(module)


def is_lora(module: torch.nn.Module) -> bool:
    return hasattr(module, "peft_config")


def _counted(name: str) -> bool:
    return "original_module" not in name  # peft's untouched copy of a modules_to_save layer


def _lora_trains(name: str, layers: int, fam: Family) -> bool:
    """Under LoRA: the adapters and the head (peft's trained copy of it)."""
    return _counted(name) and ("lora_" in name or depth(hf_name(name, fam), layers, fam) == 0)


def prepare(module: torch.nn.Module, strategy: Strategy) -> torch.nn.Module:
    """The module to train: ``module`` itself, or for ``lora`` a peft model with adapters on the
    attention query/value projections and the head (pooler + classifier) trained in full."""
    if not strategy.lora:
        return module
    from peft import LoraConfig, TaskType, get_peft_model

    fam = family(module)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=strategy.lora_rank, lora_alpha=strategy.lora_alpha,
                        lora_dropout=strategy.lora_dropout, target_modules=list(fam.lora),
                        modules_to_save=list(modules_to_save(fam)), bias="none")
    return get_peft_model(module, config)


def set_epoch(module: torch.nn.Module, strategy: Strategy, epoch: int) -> None:
    """Freeze and unfreeze for ``epoch``; call after ``module.train()``."""
    layers, fam = num_layers(module), family(module)
    for name, p in module.named_parameters():
        if strategy.lora:
            p.requires_grad = _lora_trains(name, layers, fam)
        else:
            p.requires_grad = trains(hf_name(name, fam), strategy, epoch, layers, fam)
    if encoder_inference_mode(strategy):
        getattr(module, fam.prefix).eval()  # the base model: embeddings and encoder (and BERT's pooler)
        for name in fam.head_modules:
            getattr(module, name).train()


def optimizer_groups(module: torch.nn.Module, strategy: Strategy, weight_decay: float) -> list[dict]:
    """One AdamW group per (layer depth, decays or not), at ``lr x layer_lr_decay ** depth``
    (``lr_scale``, multiplied into the group's rate by the caller). No weight decay on biases and
    LayerNorm weights (the BERT recipe). Parameters frozen now but unfrozen later are included:
    AdamW skips a parameter without a gradient."""
    layers, fam = num_layers(module), family(module)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in module.named_parameters():
        if strategy.lora and not _lora_trains(name, layers, fam):
            continue
        key = hf_name(name, fam)
        decays = not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
        group = groups.setdefault((depth(key, layers, fam), decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr_scale": lr_scale(key, layers, strategy, fam),
        })
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def parameter_counts(module: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for n, p in module.named_parameters() if _counted(n))
    trainable = sum(p.numel() for n, p in module.named_parameters() if _counted(n) and p.requires_grad)
    return {"trainable_parameters": int(trainable), "total_parameters": int(total)}


def finish(module: torch.nn.Module, strategy: Strategy) -> torch.nn.Module:
    """After training: LoRA with ``merge_adapters`` folds the adapters into a plain transformers model."""
    if strategy.lora and strategy.merge_adapters and is_lora(module):
        return module.merge_and_unload()
    return module


def save_adapters(module: torch.nn.Module, directory: Path, strategy: Strategy, base: str) -> None:
    """The adapters and head alone, in PEFT's format (``tl.models.adapters``)."""
    layers, fam = num_layers(module), family(module)
    tensors = {hf_name(n, fam): p.detach().float().cpu().numpy() for n, p in module.named_parameters()
               if _lora_trains(n, layers, fam)}
    write_adapters(directory, {k: np.asarray(v) for k, v in tensors.items()}, strategy, base, fam)
