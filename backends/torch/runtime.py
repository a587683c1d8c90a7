"""Process-wide torch set-up: CPU threads and the device models live on. Nothing here runs on import."""

from __future__ import annotations

import os

import torch

from tl.errors import TLError


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def select_device(kind: str | None = None) -> torch.device:
    """The torch device for the plan's device ``kind``: "cuda" is the first GPU, or under torchrun the
    GPU of this process's LOCAL_RANK; "cpu", "mps", ... that device. None: CUDA where torch sees
    it (chosen as for "cuda"), else the CPU."""
    if kind is None:
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise TLError("the plan puts this run on CUDA, but torch sees no CUDA device")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % count)
    return torch.device(kind)
