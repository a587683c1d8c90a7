"""Entry point ``tl = torch``: registers the backend without importing torch."""

from __future__ import annotations

from tl import hookimpl


@hookimpl
def tl_register_backends(register):
    from tl_torch.backend import TorchBackend

    register(TorchBackend())
