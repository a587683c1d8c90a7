"""The ONNX Runtime backend: runs export directories written by ``tl export --format onnx``
(``--runtime onnx``), with neither torch nor TensorFlow installed. It trains nothing.

Importing this module does not import onnxruntime: every method imports what it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tl.data.batching import Batch
from tl.data.tokenization import Tokenizer
from tl.errors import UsageError
from tl.interfaces import Backend, Capabilities, HeadSpec, Model, TrainCallbacks
from tl.training.config import TrainSettings
from tl.training.plan import Accelerator

RUNS_EXPORTS_ONLY = "the onnx runtime runs exported models only; train with --backend torch or tensorflow"


class OnnxBackend(Backend):
    name = "onnx"
    framework = "ONNX Runtime"
    requires = ("onnxruntime",)
    install_hint = "pip install 'tl[onnx]'"
    capabilities = Capabilities(
        heads=("sequence_classification", "token_classification"),
        precisions=("fp32",),  # the graph computes in float32 (int8 exports: int8 weights, fp32 outputs)
        runs_exports=("onnx",),
        trains=False,
    )

    def __init__(self) -> None:
        self.threads: int | None = None
        #: The plan's device kind ("cpu", "cuda"; None: CUDA where ONNX Runtime has it, else the CPU).
        self.device: str | None = None

    def configure(self, threads: int | None, replicas: int = 1, device: str | None = None) -> None:
        """Threads and device of the sessions ``load_model`` opens from now on."""
        self.threads = threads
        self.device = device

    def probe_accelerators(self) -> tuple[Accelerator, ...]:
        """A CUDA device where this ONNX Runtime build has the CUDA provider (asks onnxruntime only,
        never torch); fp32 only, so ``auto`` precision resolves to fp32 there."""
        from tl_onnx.model import CUDA, available_providers

        if CUDA not in available_providers():
            return ()
        return (Accelerator("cuda", "CUDA GPU (ONNX Runtime)", bf16=False, fp16=False),)

    def build_model(self, checkpoint: Path, head: HeadSpec, tokenizer: Tokenizer, *, init: str, seed: int,
                    info: dict) -> Model:
        raise UsageError(RUNS_EXPORTS_ONLY)

    def load_model(self, directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> Model:
        from tl_onnx.model import load

        return load(Path(directory), head, tokenizer, info, threads=self.threads, device=self.device)

    def train(self, model: Model, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
              settings: TrainSettings, callbacks: TrainCallbacks) -> Any:
        raise UsageError(RUNS_EXPORTS_ONLY)
