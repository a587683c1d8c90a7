"""Multi-process training for the torch backend: launching torchrun, joining its process group (gloo on
CPU, NCCL on CUDA), DistributedDataParallel, and the collectives the loop and sharded evaluation use.

torch is imported inside the functions, so ``launch`` can refuse cleanly where torch is missing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from tl.errors import UsageError

if TYPE_CHECKING:
    import torch


def launch(nproc: int, args: list[str]) -> None:
    """Run ``tl`` with ``args`` (cleaned of ``--nproc``) under torchrun with ``nproc`` processes on
    this machine, in place of this process (rank 0 writes the run); does not return."""
    if importlib.util.find_spec("torch") is None:
        raise UsageError("--nproc needs torch (it launches torchrun): pip install 'tl[torch]'")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tl", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    # torchrun takes this process's place: a signal to `tl run` reaches torchrun, which stops its workers
    os.execv(sys.executable, command)


def join_process_group(dev: torch.device) -> None:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA)."""
    import torch
    import torch.distributed as dist

    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # NCCL collectives (and all_gather_object) use the current device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")


def ddp(module: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel: gradients averaged over ranks during backward."""
    from torch.nn.parallel import DistributedDataParallel

    if dev.type == "cuda":
        return DistributedDataParallel(module, device_ids=[dev.index or 0])
    return DistributedDataParallel(module)


def all_reduce_sum(value: float, dev: torch.device) -> float:
    import torch

    t = torch.tensor([value], dtype=torch.float64, device=dev)
    torch.distributed.all_reduce(t)
    return float(t.item())


def all_gather(array: np.ndarray | list[np.ndarray]) -> list:
    """Every rank's ``array`` (a list of per-row arrays for token heads), in rank order."""
    import torch.distributed as dist

    parts: list = [None] * dist.get_world_size()
    mine = [np.ascontiguousarray(a) for a in array] if isinstance(array, list) else np.ascontiguousarray(array)
    dist.all_gather_object(parts, mine)  # token heads: a list of per-row arrays
    return parts
