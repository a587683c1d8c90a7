"""The PyTorch backend: transformers' BERT classes, a plain torch training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tl.batching import Batch
from tl.config import TrainSettings
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.plan import CUDA_BF16_CAPABILITY, Accelerator, find_max_batch
from tl.tokenization import Tokenizer


class TorchBackend(Backend):
    name = "torch"
    framework = "PyTorch"
    requires = ("torch", "transformers")
    install_hint = "pip install 'tl[torch]'"
    capabilities = Capabilities(
        heads=("sequence_classification", "token_classification"),
        precisions=("fp32", "bf16", "fp16"),
        distributed=("ddp",),
        checkpoints=True,
        sharded_eval=True,
    )

    def configure(self, threads: int | None, replicas: int = 1) -> None:
        from tl_torch.train import set_threads

        set_threads(threads)

    def max_device_batch(self, model: Model, max_length: int, upper: int) -> int | None:
        from tl_torch.model import device
        from tl_torch.train import fits_in_memory

        if device().type != "cuda":
            return None
        return find_max_batch(lambda batch: fits_in_memory(model, batch, max_length), upper)

    def all_gather(self, array: np.ndarray | list[np.ndarray]) -> list:
        import torch.distributed as dist

        parts: list = [None] * dist.get_world_size()
        mine = [np.ascontiguousarray(a) for a in array] if isinstance(array, list) else np.ascontiguousarray(array)
        dist.all_gather_object(parts, mine)  # token heads: a list of per-row arrays
        return parts

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        """CUDA GPUs from NVML where the driver provides it (no CUDA initialisation, so torchrun's
        workers and forked data loaders start clean); otherwise torch's own query."""
        import torch

        from tl import nvml

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

        return build(checkpoint, head, tokenizer, init=init, seed=seed, info=info)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        from tl_torch.model import load

        return load(directory, head, tokenizer, info)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> None:
        from tl_torch.train import train

        train(model, train_batches, steps_per_epoch, settings, callbacks)
