"""The PyTorch backend: transformers' BERT classes, a plain torch training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from tl.batching import Batch
from tl.config import TrainSettings
from tl.hardware import resolve_cpu_precision
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.tokenization import Tokenizer


class TorchBackend(Backend):
    name = "torch"
    framework = "PyTorch"
    requires = ("torch", "transformers")
    install_hint = "pip install 'tl[torch]'"
    capabilities = Capabilities(
        heads=("sequence_classification",),
        precisions=("fp32", "bf16"),
        distributed=(),
    )

    def configure(self, threads: int | None) -> None:
        from tl_torch.train import set_threads

        set_threads(threads)

    def resolve_precision(self, requested: str) -> tuple[str, str]:
        import torch

        if torch.cuda.is_available():
            if requested in ("auto", "bf16") and torch.cuda.is_bf16_supported():
                return "bf16", f"{requested}: GPU computes bf16 natively"
            if requested == "bf16":
                return "fp32", "bf16 requested but this GPU has no bf16; falling back to fp32"
            return "fp32", requested
        return resolve_cpu_precision(requested)

    def build_model(self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
                    info: dict) -> Model:
        from tl_torch.model import build

        return build(checkpoint, head, tokenizer, init=init, seed=seed, info=info)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        from tl_torch.model import load

        return load(directory, head, tokenizer, info)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> None:
        from tl_torch.train import train

        train(model, train_batches, steps_per_epoch, settings, callbacks)
