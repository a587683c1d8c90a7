"""NVIDIA GPUs through NVML (the driver's management library), without a framework and without
creating a CUDA context: listing GPUs this way allocates no device memory and leaves CUDA
uninitialised, so a later ``fork`` or a torchrun launch is unaffected. Side-effect free; callers cache the answer
(``Backend.probe`` holds it per backend).

``libnvidia-ml.so.1`` ships with the NVIDIA driver; where it is missing (no driver, macOS, a CPU
machine) ``gpus()`` returns None and callers fall back to asking their framework.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

LIBRARIES = ("libnvidia-ml.so.1", "libnvidia-ml.so", "nvml.dll")


@dataclass(frozen=True)
class NvidiaGpu:
    index: int  # NVML index (PCI bus order)
    name: str
    uuid: str
    memory_gib: float
    capability: tuple[int, int]


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _load() -> ctypes.CDLL | None:
    for name in LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _query(lib: ctypes.CDLL) -> list[NvidiaGpu]:
    def check(code: int, what: str) -> None:
        if code != 0:
            raise OSError(f"NVML {what} failed with code {code}")

    check(lib.nvmlInit_v2(), "init")
    try:
        count = ctypes.c_uint()
        check(lib.nvmlDeviceGetCount_v2(ctypes.byref(count)), "device count")
        out = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            check(lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)), "device handle")
            name = ctypes.create_string_buffer(96)
            check(lib.nvmlDeviceGetName(handle, name, 96), "device name")
            uuid = ctypes.create_string_buffer(96)
            check(lib.nvmlDeviceGetUUID(handle, uuid, 96), "device uuid")
            memory = _Memory()
            check(lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)), "memory info")
            major, minor = ctypes.c_int(), ctypes.c_int()
            check(lib.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)),
                  "compute capability")
            out.append(NvidiaGpu(i, name.value.decode(errors="replace"), uuid.value.decode(errors="replace"),
                                 round(memory.total / 2**30, 1), (major.value, minor.value)))
        return out
    finally:
        lib.nvmlShutdown()


def visible(all_gpus: list[NvidiaGpu], spec: str | None) -> list[NvidiaGpu]:
    """The GPUs CUDA_VISIBLE_DEVICES (``spec``) leaves visible, in its order: indices or UUID
    prefixes, as CUDA reads them (stopping at the first entry that matches nothing)."""
    if spec is None:
        return list(all_gpus)
    out: list[NvidiaGpu] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            break
        if item.lstrip("-").isdigit():
            match = [g for g in all_gpus if g.index == int(item)]
        else:
            match = [g for g in all_gpus if g.uuid.startswith(item) or g.uuid.startswith(f"GPU-{item}")]
        if len(match) != 1 or match[0] in out:
            break
        out.append(match[0])
    return out


def gpus() -> tuple[NvidiaGpu, ...] | None:
    """The NVIDIA GPUs this process may use, or None when NVML is unavailable."""
    lib = _load()
    if lib is None:
        return None
    try:
        found = _query(lib)
    except (OSError, AttributeError):
        return None
    return tuple(visible(found, os.environ.get("CUDA_VISIBLE_DEVICES")))
