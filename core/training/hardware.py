"""Hardware facts that need no framework: CPU features, cores, memory. Side-effect free; callers
cache the answer (``Backend.probe`` holds it per backend).

Backends add their own device probes (CUDA, MPS, ...) through the Backend interface.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

#: CPU feature flag -> what it means for training. One table, read by every check below.
CPU_FEATURES = {
    "avx2": "256-bit SIMD",
    "avx512f": "512-bit SIMD",
    "avx512_bf16": "native bf16 dot products (AVX-512 BF16)",
    "amx_bf16": "bf16 matrix tiles (AMX)",
    "amx_tile": "AMX tiles",
}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    machine: str
    logical_cores: int
    usable_cores: int
    features: tuple[str, ...]
    memory_gib: float

    @property
    def native_bf16(self) -> bool:
        return any(f in self.features for f in BF16_FLAGS) or self.machine in ("arm64",) and "Apple" in self.model

    def to_dict(self) -> dict:
        d = asdict(self)
        d["native_bf16"] = self.native_bf16
        return d


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_info() -> CpuInfo:
    text = _read("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    mem = 0.0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 2**20
    return CpuInfo(
        model=model,
        machine=platform.machine(),
        logical_cores=os.cpu_count() or 1,
        usable_cores=usable,
        features=tuple(sorted(f for f in CPU_FEATURES if f in flags)),
        memory_gib=round(mem, 1),
    )


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / (1 << 20 if platform.system() == "Darwin" else 1 << 10), 1)
