"""The TensorFlow backend: a Keras 3 BERT classifier (KerasHub's BertBackbone), trained with ``fit``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from tl.batching import Batch
from tl.config import TrainSettings
from tl.hardware import resolve_cpu_precision
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.tokenization import Tokenizer

#: GPUs from this compute capability on (Ampere) compute bf16 natively.
BF16_COMPUTE_CAPABILITY = (8, 0)


class TensorflowBackend(Backend):
    name = "tensorflow"
    framework = "TensorFlow"
    requires = ("tensorflow", "keras", "keras_hub")
    install_hint = "pip install 'tl[tensorflow]'"
    capabilities = Capabilities(
        heads=("sequence_classification",),
        precisions=("fp32", "bf16"),
        distributed=(),
        exports=("savedmodel",),
    )

    def configure(self, threads: int | None) -> None:
        from tl_tensorflow.train import set_threads

        set_threads(threads)

    def resolve_precision(self, requested: str) -> tuple[str, str]:
        from tl_tensorflow.model import gpu_compute_capability

        capability = gpu_compute_capability()
        if capability is not None:
            native = capability >= BF16_COMPUTE_CAPABILITY
            if requested in ("auto", "bf16") and native:
                return "bf16", f"{requested}: GPU computes bf16 natively"
            if requested == "bf16":
                return "fp32", "bf16 requested but this GPU has no bf16; falling back to fp32"
            return "fp32", requested
        return resolve_cpu_precision(requested)

    def build_model(self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
                    info: dict) -> Model:
        from tl_tensorflow.model import build

        return build(checkpoint, head, tokenizer, init=init, seed=seed, info=info)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        from tl_tensorflow.model import load

        return load(directory, head, tokenizer, info)

    def export(self, model: Model, directory: Path, fmt: str) -> None:
        from tl_tensorflow.export import export_savedmodel

        export_savedmodel(model, directory)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> None:
        from tl_tensorflow.train import train

        train(model, train_batches, steps_per_epoch, settings, callbacks)
