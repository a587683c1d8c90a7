"""The PyTorch backend: transformers' classes of each model family, a plain torch training loop.

Importing this module does not import torch: every method imports what it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tl.data.batching import Batch
from tl.data.tokenization import Tokenizer
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.plan import CUDA_BF16_CAPABILITY, Accelerator, find_max_batch

if TYPE_CHECKING:
    import torch


class TorchBackend(Backend):
    name = "torch"
    framework = "PyTorch"
    requires = ("torch", "transformers")
    install_hint = "pip install 'tl[torch]'"
    capabilities = Capabilities(
        heads=("sequence_classification", "token_classification"),
        precisions=("fp32", "bf16", "fp16"),
        distributed=("ddp",),
        exports=("onnx",),
        checkpoints=True,
        class_weights=True,
        sharded_eval=True,
    )

    def __init__(self) -> None:
        self._device: Any = None  # torch.device, decided once: configure(), or the first model built

    @property
    def device(self) -> torch.device:
        """The device models are built, loaded and trained on: the one ``configure`` chose from the
        plan, or (never configured) CUDA where torch sees it, else the CPU."""
        if self._device is None:
            from tl_torch.runtime import select_device

            self._device = select_device(None)
        return self._device

    def configure(self, threads: int | None, replicas: int = 1, device: str | None = None) -> None:
        from tl_torch.runtime import select_device, set_threads

        set_threads(threads)
        self._device = select_device(device)

    def launch(self, nproc: int, args: list[str]) -> None:
        """torchrun with ``nproc`` processes in place of this process (``tl run --nproc``)."""
        from tl_torch.distributed import launch

        launch(nproc, args)

    def max_device_batch(self, model: Model, max_length: int, upper: int) -> int | None:
        if model.device.type != "cuda":
            return None
        from tl_torch.train import fits_in_memory

        return find_max_batch(lambda batch: fits_in_memory(model, batch, max_length), upper)

    def all_gather(self, array: np.ndarray | list[np.ndarray]) -> list:
        from tl_torch.distributed import all_gather

        return all_gather(array)

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        """CUDA GPUs from NVML where the driver provides it (no CUDA initialisation, so torchrun's
        workers and forked data loaders start clean); otherwise torch's own query."""
        import torch

        from tl.training import nvml

        if torch.version.cuda is None:  # a CPU (or ROCm/XPU) build of torch
            return ()
        found = nvml.gpus()
        if found is not None:
            return tuple(Accelerator("cuda", g.name, g.memory_gib, g.capability,
                                     bf16=g.capability >= CUDA_BF16_CAPABILITY, fp16=True) for g in found)
        if not torch.cuda.is_available():
            return ()
        out = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            capability = (props.major, props.minor)
            out.append(Accelerator("cuda", props.name, round(props.total_memory / 2**30, 1), capability,
                                   bf16=capability >= CUDA_BF16_CAPABILITY, fp16=True))
        return tuple(out)

    def build_model(self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
                    info: dict) -> Model:
        from tl_torch.model import build

        return build(checkpoint, head, tokenizer, init=init, seed=seed, info=info, device=self.device)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        from tl_torch.model import load

        return load(directory, head, tokenizer, info, device=self.device)

    def export(self, model: Model, directory: Path, fmt: str, *, quantize: str | None = None,
               tolerance: float | None = None) -> Any:
        if fmt != "onnx":
            return super().export(model, directory, fmt)
        from tl_torch.export import export_onnx

        return export_onnx(model, directory, quantize=quantize, tolerance=tolerance)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> None:
        from tl_torch.train import train

        train(model, train_batches, steps_per_epoch, settings, callbacks)
