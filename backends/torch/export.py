"""ONNX export (``tl export --format onnx``) of any saved tl model: models trained on TensorFlow
are saved in the same transformers format and load here too.

The graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, [batch, length],
both dynamic; all three always, also for families that read no token type ids) and returns
``logits`` and ``probabilities`` (float32, [batch, labels], or [batch, length, labels] for a token
head), computed in float32. It is written by ``torch.onnx.export(dynamo=True)`` at opset
``OPSET``; ``--quantize int8`` then quantizes the weights with ONNX Runtime's ``quantize_dynamic``
(int8 weights with a scale per channel, activations quantized on the fly). The written file is run by ONNX Runtime and
compared with the torch model (``tl.models.export.self_check``) before the directory appears.

Import this module only where torch, onnx, onnxscript and onnxruntime are installed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tl.data.batching import Batch
from tl.models.export import CheckResult, export_meta, sample_batches, self_check, staged
from tl.models.hf_checkpoint import CONFIG_NAME, META_NAME, read_meta, write_json
from tl_torch.model import TorchModel, family_of, to_inputs

OPSET = 18
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("logits", "probabilities")


class Exported(torch.nn.Module):
    """The module the graph is traced from: token ids in, float32 logits and probabilities out."""

    def __init__(self, module: torch.nn.Module, token_types: bool) -> None:
        super().__init__()
        self.module = module
        self.token_types = token_types

    def forward(self, input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.token_types:
            inputs["token_type_ids"] = token_type_ids
        logits = self.module(**inputs).logits.float()
        return logits, torch.softmax(logits, dim=-1)


def _tensors(b: Batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.asarray(getattr(b, n), dtype=np.int64)) for n in INPUTS)


def _exportable(model: TorchModel) -> torch.nn.Module:
    """The float32 module on the CPU, LoRA adapters merged (``load_saved`` merges saved adapters
    already; a model straight from training may still wear PEFT's wrapper)."""
    from tl_torch.strategies import is_lora

    module = model.module
    if is_lora(module):
        module = module.merge_and_unload()
    return module.to("cpu", dtype=torch.float32).eval()


@contextlib.contextmanager
def _quiet():
    """torch.onnx's progress lines, warnings and log records are noise on the command line."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def write_onnx(wrapper: Exported, example: Batch, path: Path) -> None:
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    dims = {name: {0: batch, 1: length} for name in INPUTS}
    with _quiet():
        torch.onnx.export(wrapper, _tensors(example), str(path), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamo=True, dynamic_shapes=dims, opset_version=OPSET,
                          external_data=False, verbose=False)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic quantization: int8 weights of the MatMul/Gemm (and Gather) nodes, one scale per output
    channel, after ONNX Runtime's pre-processing (shape inference and graph optimization). Per
    channel, measured on MiniLM fine-tuned on Rotten Tomatoes (400 held-out snippets): probabilities
    within 0.13 of fp32 (mean 0.015), the top label agreeing on 99%; one scale per tensor: 0.51
    (mean 0.034), 97%."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name("prepared.onnx")
    with _quiet():
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True)
    prepared.unlink()


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(model: TorchModel, directory: Path, *, quantize: str | None = None,
                tolerance: float | None = None) -> CheckResult:
    """Write ``model`` (a saved tl model loaded on torch) as an ONNX export directory: model.onnx,
    config.json, tokenizer files and tl.json with its ``export`` block; self-checked first."""
    import onnxruntime

    source = Path(model.info.get("path", ""))
    meta = read_meta(source)
    module, token_types = _exportable(model), family_of(model.module).token_type_ids
    wrapper = Exported(module, token_types).eval()
    batches = sample_batches(model.tokenizer, int(meta.get("max_length", 128)))
    with staged(Path(directory)) as tmp:
        fp32 = tmp / ("model.fp32.onnx" if quantize else "model.onnx")
        write_onnx(wrapper, batches[1], fp32)
        wrapper.eval()  # torch.onnx.export puts the module back in the mode it found: keep dropout off
        if quantize:
            quantize_int8(fp32, tmp / "model.onnx")
            fp32.unlink()
        run = session(tmp / "model.onnx")

        def reference(b: Batch) -> np.ndarray:  # the model as tl runs it, not through the wrapper
            with torch.inference_mode():
                return module(**to_inputs(b, torch.device("cpu"), token_types)).logits.float().numpy()

        def candidate(b: Batch) -> tuple[np.ndarray, np.ndarray]:
            feed = {n: np.asarray(getattr(b, n), dtype=np.int64) for n in INPUTS}
            logits, probabilities = run.run(list(OUTPUTS), feed)
            return logits, probabilities

        result = self_check(reference, candidate, batches, quantize=quantize, tolerance=tolerance,
                            reference_name="torch")
        shutil.copyfile(source / CONFIG_NAME, tmp / CONFIG_NAME)
        model.tokenizer.save(tmp, tokenizer_class=family_of(model.module).tokenizer_class)
        block: dict[str, Any] = {
            "format": "onnx", "quantize": quantize, "opset": OPSET, "inputs": list(INPUTS),
            "outputs": list(OUTPUTS), "self_check": result.to_dict(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        }
        write_json(tmp / META_NAME, export_meta(meta, block))
    return result
