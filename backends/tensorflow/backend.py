"""The TensorFlow backend: a Keras 3 BERT classifier (KerasHub's BertBackbone), trained with ``fit``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from tl.batching import Batch
from tl.config import TrainSettings
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.plan import CUDA_BF16_CAPABILITY, Accelerator
from tl.tokenization import Tokenizer


class TensorflowBackend(Backend):
    name = "tensorflow"
    framework = "TensorFlow"
    requires = ("tensorflow", "keras", "keras_hub")
    install_hint = "pip install 'tl[tensorflow]'"
    capabilities = Capabilities(
        heads=("sequence_classification", "token_classification"),
        precisions=("fp32", "bf16", "fp16"),
        distributed=("multi-worker", "mirrored"),
        exports=("savedmodel",),
        checkpoints=True,
    )

    def configure(self, threads: int | None, replicas: int = 1) -> None:
        """Thread pools first, then the strategy (TF_CONFIG with 2+ workers: join the cluster; several
        local GPUs: MirroredStrategy over ``replicas`` of them); both before TensorFlow runs an op."""
        from tl_tensorflow.distributed import setup
        from tl_tensorflow.train import set_threads

        set_threads(threads)
        setup(replicas)

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        from tl_tensorflow.model import gpu_devices

        return tuple(
            Accelerator("cuda", name, None, capability,
                        bf16=capability is not None and capability >= CUDA_BF16_CAPABILITY, fp16=True)
            for name, capability in gpu_devices()
        )

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
