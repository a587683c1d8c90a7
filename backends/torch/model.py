"""Building, loading, running and saving transformers BERT classifiers: ``BertForSequenceClassification``
for sequence heads, ``BertForTokenClassification`` for token heads (``HEADS``)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tl.batching import Batch, unpad
from tl.checkpoint import check_checkpoint_dir, classifier_config, read_config
from tl.errors import UsageError
from tl.interfaces import HEAD_SEQUENCE_CLASSIFICATION, HEAD_TOKEN_CLASSIFICATION, HeadSpec, Model
from tl.strategies import Strategy
from tl.tokenization import Tokenizer

#: Head kind -> the transformers class (same weight names ``classifier.weight/bias``, and id2label in
#: config.json). A new head kind is a new entry here and in ``Capabilities.heads``.
HEADS = {
    HEAD_SEQUENCE_CLASSIFICATION: "BertForSequenceClassification",
    HEAD_TOKEN_CLASSIFICATION: "BertForTokenClassification",
}


def head_class(head: HeadSpec):
    import transformers

    try:
        return getattr(transformers, HEADS[head.kind])
    except KeyError:
        raise UsageError(f"the torch backend cannot build a {head.kind!r} head (heads: {', '.join(HEADS)})") from None


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the scored labels of a batch, for every head kind: [rows, labels]
    logits with [rows] labels, or [rows, tokens, labels] with [rows, tokens] (-100: not scored). The
    training loop divides by the step's ``Batch.targets``."""
    return torch.nn.functional.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="sum",
                                             ignore_index=-100)


def device() -> torch.device:
    """The first GPU, or under torchrun the GPU of this process's LOCAL_RANK; else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


class TorchModel(Model):
    backend = "torch"

    def __init__(self, module, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> None:
        self.module = module.to(device())
        self.head = head
        self.tokenizer = tokenizer
        self.info = info
        self.precision = "fp32"
        self.strategy = Strategy()

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=device().type, dtype=dtype)
        return contextlib.nullcontext()

    def logits(self, batches: Iterable[Batch]) -> np.ndarray | list[np.ndarray]:
        self.module.eval()
        outs = []
        dev = device()
        per_token = self.head.kind == HEAD_TOKEN_CLASSIFICATION
        with torch.inference_mode(), self.autocast():
            for b in batches:
                out = self.module(**to_inputs(b, dev)).logits.float().cpu().numpy()
                if per_token:
                    outs.extend(unpad(out, b.attention_mask))
                else:
                    outs.append(out)
        if per_token:
            return outs
        if not outs:
            return np.zeros((0, self.head.num_labels), dtype=np.float32)
        return np.concatenate(outs)

    def save_weights(self, directory: Path) -> None:
        from transformers.utils import logging as hf_logging

        from tl_torch.strategies import is_lora, save_adapters

        hf_logging.disable_progress_bar()
        if is_lora(self.module):  # LoRA adapters and head alone, PEFT's format; config.json for the labels
            save_adapters(self.module, directory, self.strategy, self.info.get("base_checkpoint") or "")
            self.module.get_base_model().config.save_pretrained(directory)
            return
        self.module.save_pretrained(directory, safe_serialization=True)


def to_inputs(b: Batch, dev: torch.device) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(b.input_ids).long().to(dev, non_blocking=True),
        "attention_mask": torch.from_numpy(b.attention_mask).long().to(dev, non_blocking=True),
        "token_type_ids": torch.from_numpy(b.token_type_ids).long().to(dev, non_blocking=True),
    }


def _hf_config(checkpoint: Path, head: HeadSpec):
    from transformers import BertConfig

    base = read_config(checkpoint)
    return BertConfig(**classifier_config(base, head))


def build(checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int, info: dict) -> TorchModel:
    cls = head_class(head)
    check_checkpoint_dir(checkpoint)
    config = _hf_config(checkpoint, head)
    torch.manual_seed(seed)  # the fresh head (and scratch weights) are seeded
    module = cls(config) if init == "scratch" else _from_pretrained(cls, checkpoint, config, head_is_new=True)
    return TorchModel(module, head, tokenizer, info)


def load(directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> TorchModel:
    cls = head_class(head)
    config = _hf_config(directory, head)
    module = _from_pretrained(cls, directory, config, head_is_new=False)
    return TorchModel(module, head, tokenizer, info)


def _from_pretrained(cls, directory: Path, config, head_is_new: bool):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "newly initialized classifier" notice is expected
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module, loading = cls.from_pretrained(
                str(directory), config=config, use_safetensors=True, output_loading_info=True,
                trust_remote_code=False,
            )
    except UsageError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load weights from {directory}: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in loading.get("missing_keys", []) if not (head_is_new and k.startswith("classifier."))]
    if missing:
        raise UsageError(
            f"{directory}/model.safetensors lacks {len(missing)} BERT weights (e.g. {missing[0]}); "
            "is it a BERT checkpoint?"
        )
    mismatched = loading.get("mismatched_keys", [])
    if mismatched:
        raise UsageError(f"{directory}: weights with unexpected shapes: {mismatched[:3]}")
    return module
