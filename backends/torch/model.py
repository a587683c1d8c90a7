"""The tl Model of the torch backend: a transformers classifier of the checkpoint's family
(``tl_torch.network``) on one device, run in inference mode and saved in the transformers format."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tl.data.batching import Batch, join_logits
from tl.data.tokenization import Tokenizer
from tl.interfaces import HEAD_TOKEN_CLASSIFICATION, Family, HeadSpec, Model
from tl.models.families import family_for
from tl.training.strategies import Strategy
from tl_torch.network import build_module, load_module
from tl_torch.runtime import select_device


def summed_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy summed over the scored labels of a batch, for every head kind: [rows, labels]
    logits with [rows] labels, or [rows, tokens, labels] with [rows, tokens] (-100: not scored). The
    training loop divides by the step's ``Batch.targets``. ``weights`` ([labels], float32): each
    target's cross-entropy times its label's weight (a weighted sum, not torch's weighted mean)."""
    return torch.nn.functional.cross_entropy(logits.flatten(0, -2), labels.flatten(), weight=weights,
                                             reduction="sum", ignore_index=-100)


class TorchModel(Model):
    backend = "torch"

    def __init__(self, module, head: HeadSpec, tokenizer: Tokenizer, info: dict,
                 device: torch.device | None = None) -> None:
        #: Where the module's weights live and its inputs go (the backend's; None: ``select_device()``).
        self.device = select_device() if device is None else device
        self.module = module.to(self.device)
        self.head = head
        self.tokenizer = tokenizer
        self.info = info
        self.precision = "fp32"
        self.strategy = Strategy()
        #: Whether the module takes token type ids (``Family.token_type_ids``; DistilBERT's does not).
        self.token_types = family_of(module).token_type_ids

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def logits(self, batches: Iterable[Batch]) -> np.ndarray | list[np.ndarray]:
        self.module.eval()
        dev = self.device
        with torch.inference_mode(), self.autocast():
            return join_logits(((self.module(**to_inputs(b, dev, self.token_types)).logits.float().cpu().numpy(),
                                 b.attention_mask) for b in batches),
                               self.head.kind == HEAD_TOKEN_CLASSIFICATION, self.head.num_labels)

    def save_weights(self, directory: Path) -> None:
        from transformers.utils import logging as hf_logging

        from tl_torch.strategies import is_lora, save_adapters

        hf_logging.disable_progress_bar()
        if is_lora(self.module):  # LoRA adapters and head alone, PEFT's format; config.json for the labels
            save_adapters(self.module, directory, self.strategy, self.info.get("base_model") or "")
            self.module.get_base_model().config.save_pretrained(directory)
            return
        self.module.save_pretrained(directory, safe_serialization=True)


def family_of(module) -> Family:
    """The family of a transformers module (through PEFT's wrapper under LoRA)."""
    return family_for(module.config.to_dict(), "the model's config")


def to_inputs(b: Batch, dev: torch.device, token_types: bool = True) -> dict[str, torch.Tensor]:
    inputs = {
        "input_ids": torch.from_numpy(b.input_ids).long().to(dev, non_blocking=True),
        "attention_mask": torch.from_numpy(b.attention_mask).long().to(dev, non_blocking=True),
    }
    if token_types:
        inputs["token_type_ids"] = torch.from_numpy(b.token_type_ids).long().to(dev, non_blocking=True)
    return inputs


def build(checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int, info: dict,
          device: torch.device | None = None) -> TorchModel:
    module = build_module(checkpoint, head, init=init, seed=seed)
    return TorchModel(module, head, tokenizer, info, device)


def load(directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict,
         device: torch.device | None = None) -> TorchModel:
    return TorchModel(load_module(directory, head), head, tokenizer, info, device)
