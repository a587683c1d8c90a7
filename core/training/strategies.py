"""Transfer strategies, the same on every backend: which weights train, at which learning rate, when.

Weights are named as in a transformers checkpoint without the family's base-model prefix (``bert.``,
``roberta.``: ``Family.short_name``), and grouped by depth from the top: the head (the family's
``head_modules``, and base-model weights only the sequence head uses such as BERT's ``pooler``, the
[CLS] projection, which exists for pre-training and is re-learned with the head) is depth 0, encoder
layer ``i`` of ``L`` (``Family.layer_pattern``) is depth ``L - i``, the embeddings are depth ``L + 1``.
The family defaults to BERT.

- ``finetune``: every weight trains (``--layer-lr-decay`` < 1 gives lower layers smaller rates).
- ``freeze``: feature extraction. The encoder is frozen and runs in inference mode (no dropout, no
  backward pass through it); only the head trains.
- ``gradual-unfreeze`` (ULMFiT, Howard & Ruder 2018): epoch 0 trains the head, each later epoch
  unfreezes one more layer group from the top down; with discriminative rates, each group's rate
  is the one above it times ``--layer-lr-decay``.
- ``lora`` (Hu et al. 2021): the encoder is frozen; trainable low-rank adapters B·A (rank
  ``--lora-rank``, scaled by ``--lora-alpha / rank``) are added to the attention query and value
  projections; the head trains in full.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl.interfaces import Family

STRATEGIES = ("finetune", "freeze", "gradual-unfreeze", "lora")
#: Projections LoRA adapts in BERT (transformers module names inside ``attention.self``); other
#: families name theirs in ``Family.lora``.
LORA_TARGETS = ("query", "value")


@dataclass(frozen=True)
class Strategy:
    name: str = "finetune"
    layer_lr_decay: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    merge_adapters: bool = False

    @property
    def lora(self) -> bool:
        return self.name == "lora"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _family(family: Family | None) -> Family:
    if family is not None:
        return family
    from tl.models.families import builtin

    return builtin("bert")


def strip_prefix(key: str, family: Family | None = None) -> str:
    """A transformers parameter name without the model's base-model prefix (``bert.``)."""
    return _family(family).short_name(key)


def head_prefixes(family: Family | None = None) -> tuple[str, ...]:
    """Name prefixes of the weights that train with the head (depth 0)."""
    family = _family(family)
    return tuple(f"{m}." for m in family.head_modules) + family.sequence_only


def depth(key: str, num_layers: int, family: Family | None = None) -> int:
    """0 for the head, ``num_layers - i`` for encoder layer ``i``, ``num_layers + 1`` for embeddings."""
    family = _family(family)
    key = family.short_name(key)
    if key.startswith(head_prefixes(family)):
        return 0
    match = re.match(family.layer_pattern, key)
    if match:
        return max(num_layers - int(match.group(1)), 1)
    return num_layers + 1


def lr_scale(key: str, num_layers: int, strategy: Strategy, family: Family | None = None) -> float:
    """The factor on the learning rate of ``key``'s group (discriminative fine-tuning)."""
    return strategy.layer_lr_decay ** depth(key, num_layers, family)


def trainable_depth(strategy: Strategy, epoch: int, num_layers: int) -> int:
    """The deepest group that trains in ``epoch`` (0: the head only); LoRA adapters are separate."""
    if strategy.name == "finetune":
        return num_layers + 1
    if strategy.name == "gradual-unfreeze":
        return min(epoch, num_layers + 1)
    return 0  # freeze, lora: the head (and LoRA's adapters)


def trains(key: str, strategy: Strategy, epoch: int, num_layers: int, family: Family | None = None) -> bool:
    return depth(key, num_layers, family) <= trainable_depth(strategy, epoch, num_layers)


def encoder_inference_mode(strategy: Strategy) -> bool:
    """Whether the encoder runs without dropout and without gradients (feature extraction)."""
    return strategy.name == "freeze"

