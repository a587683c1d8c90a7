"""The TensorFlow backend: Keras 3 classifiers of every model family (``tl_tensorflow.families``), trained with ``fit``.

Importing this module does not import tensorflow, keras or keras_hub: every method that needs them
first calls ``tl_tensorflow.runtime.activate()`` (Keras' backend selection), then imports the
framework modules of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl.data.batching import Batch
from tl.data.tokenization import Tokenizer
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.plan import CUDA_BF16_CAPABILITY, Accelerator

if TYPE_CHECKING:
    from tl.training.distributed import World

#: ``tl run --nproc`` with this backend (kept word for word: the README and users quote it).
LAUNCH_REFUSED = ("--nproc launches torchrun, for the torch backend; to train tensorflow on several workers, "
                  "start one `tl run` per worker with TF_CONFIG (README: distributed training)")


def _activate() -> None:
    from tl_tensorflow.runtime import activate

    activate()


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
        class_weights=True,
    )

    def __init__(self) -> None:
        #: The tf.distribute strategy ``configure`` made (multi-worker or mirrored); None: one device.
        #: Models are built under it and trained with it.
        self.strategy: Any = None
        #: The plan's device kind ("cpu", "cuda"; None: TensorFlow's choice). TensorFlow places ops itself.
        self.device: str | None = None

    def configure(self, threads: int | None, replicas: int = 1, device: str | None = None) -> None:
        """Thread pools first, then the strategy (TF_CONFIG with 2+ workers: join the cluster; several
        local GPUs: MirroredStrategy over ``replicas`` of them); both before TensorFlow runs an op.
        The strategy is made once per backend instance."""
        _activate()
        from tl_tensorflow.distributed import create_strategy
        from tl_tensorflow.runtime import set_threads

        set_threads(threads)
        self.device = device
        if self.strategy is None:
            self.strategy = create_strategy(replicas)

    def process_group(self) -> World:
        """A TF_CONFIG cluster of 2+ tasks (mode ``multi-worker``); otherwise the generic variables."""
        from tl_tensorflow.distributed import cluster_world

        return cluster_world() or super().process_group()

    def launch(self, nproc: int, args: list[str]) -> None:
        from tl.errors import UsageError

        raise UsageError(LAUNCH_REFUSED)

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        _activate()
        from tl_tensorflow.runtime import gpu_devices

        return tuple(
            Accelerator("cuda", name, None, capability,
                        bf16=capability is not None and capability >= CUDA_BF16_CAPABILITY, fp16=True)
            for name, capability in gpu_devices()
        )

    def build_model(self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
                    info: dict) -> Model:
        _activate()
        from tl_tensorflow.model import build

        return build(checkpoint, head, tokenizer, init=init, seed=seed, info=info, strategy=self.strategy)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        _activate()
        from tl_tensorflow.model import load

        return load(directory, head, tokenizer, info)

    def export(self, model: Model, directory: Path, fmt: str, *, quantize: str | None = None,
               tolerance: float | None = None) -> Any:
        if fmt != "savedmodel" or quantize:
            return super().export(model, directory, fmt + (f" ({quantize})" if quantize else ""))
        _activate()
        from tl_tensorflow.export import export_savedmodel

        return export_savedmodel(model, directory, tolerance=tolerance)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> None:
        _activate()
        from tl_tensorflow.train import train

        train(model, train_batches, steps_per_epoch, settings, callbacks, self.strategy)
