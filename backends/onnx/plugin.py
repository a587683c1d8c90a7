"""Entry point ``tl = onnx``: registers the ONNX Runtime backend without importing onnxruntime."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_backends(register):
    from tl_onnx.backend import OnnxBackend

    register(OnnxBackend())
