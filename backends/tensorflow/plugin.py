"""Entry point ``tl = tensorflow``: registers the backend without importing tensorflow."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_backends(register):
    from tl_tensorflow.backend import TensorflowBackend

    register(TensorflowBackend())
