"""The tl Model of the ONNX Runtime backend: an ``InferenceSession`` over an export directory's
``model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; output ``logits``).

Providers: CUDA where this onnxruntime build has it (``onnxruntime-gpu``) and the plan's device is
not the CPU, then the CPU. TensorRT is not used: it builds an engine for every new input shape, and
tl's batches vary in length.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tl.data.batching import Batch, join_logits
from tl.data.tokenization import Tokenizer
from tl.errors import UsageError
from tl.interfaces import HEAD_TOKEN_CLASSIFICATION, HeadSpec, Model

MODEL_NAME = "model.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def providers(device: str | None) -> list[str]:
    """CUDA first unless the plan put the run on the CPU, then the CPU."""
    gpu = [CUDA] if device in (None, "cuda") and CUDA in available_providers() else []
    return [*gpu, CPU]


class OnnxModel(Model):
    backend = "onnx"

    def __init__(self, session: ort.InferenceSession, head: HeadSpec, tokenizer: Tokenizer, info: dict) -> None:
        self.session = session
        self.head = head
        self.tokenizer = tokenizer
        self.info = info
        self.precision = "fp32"
        self.inputs = [i.name for i in session.get_inputs()]

    def set_precision(self, precision: str) -> None:
        if precision != "fp32":
            raise UsageError(f"the onnx runtime computes in fp32 (the export's own precision), not {precision}; "
                             "pass --precision fp32 or auto")
        self.precision = precision

    def logits(self, batches: Iterable[Batch]) -> np.ndarray | list[np.ndarray]:
        def run(b: Batch) -> np.ndarray:
            feed = {name: np.asarray(getattr(b, name), dtype=np.int64) for name in self.inputs}
            return self.session.run(["logits"], feed)[0]

        return join_logits(((run(b), b.attention_mask) for b in batches),
                           self.head.kind == HEAD_TOKEN_CLASSIFICATION, self.head.num_labels)

    def save_weights(self, directory: Path) -> None:
        raise UsageError("an ONNX export cannot be saved as a tl model; keep the model it was exported from")


def load(directory: Path, head: HeadSpec, tokenizer: Tokenizer, info: dict, *, threads: int | None = None,
         device: str | None = None) -> OnnxModel:
    path = directory / MODEL_NAME
    if not path.is_file():
        raise UsageError(f"{directory} is not an ONNX export ({MODEL_NAME} is missing); "
                         f"run tl export --format onnx --model <the tl model it came from>")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=providers(device))
    except Exception as exc:  # a truncated or foreign file: onnxruntime's own one-line reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load {path}: {first}") from None
    missing = [n for n in ("input_ids", "attention_mask") if n not in {i.name for i in session.get_inputs()}]
    if missing:
        raise UsageError(f"{path} has no input {missing[0]!r}; is it a tl export?")
    return OnnxModel(session, head, tokenizer, {**info, "providers": session.get_providers()})
