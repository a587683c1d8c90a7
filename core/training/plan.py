"""The training plan: what a run will use, derived from a hardware probe and the user's request.

One table (``DEVICES``) says, per device kind, its priority and how it does bf16/fp16; ``make_plan``
applies design.md's rules: ``auto`` precision is bf16 where the hardware computes it natively, fp16
with loss scaling on GPUs without bf16, else fp32; an impossible request falls back with the reason,
or is an error under ``strict``. The effective batch is kept: per-device batch x accumulation x devices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tl.errors import UsageError
from tl.training.hardware import BF16_FLAGS, CpuInfo, cpu_info


@dataclass(frozen=True)
class Accelerator:
    """One accelerator as a backend's probe reports it (without initialising it where possible)."""

    kind: str  # "cuda" | "xpu" | "tpu" | "mps"
    name: str = ""
    memory_gib: float | None = None
    capability: tuple[int, int] | None = None  # CUDA compute capability
    bf16: bool = False  # computes bf16 natively
    fp16: bool = True


#: device kind -> priority (lower wins) and whether fp16 needs loss scaling there.
DEVICES: dict[str, dict[str, Any]] = {
    "cuda": {"priority": 0, "loss_scaling": True, "label": "CUDA GPU"},
    "tpu": {"priority": 1, "loss_scaling": False, "label": "TPU"},
    "xpu": {"priority": 2, "loss_scaling": True, "label": "Intel XPU"},
    "mps": {"priority": 3, "loss_scaling": False, "label": "Apple MPS"},
    "cpu": {"priority": 9, "loss_scaling": False, "label": "CPU"},
}

#: CUDA GPUs from this compute capability on (Ampere) compute bf16 natively.
CUDA_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Probe:
    cpu: CpuInfo
    accelerators: tuple[Accelerator, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu.to_dict(), "accelerators": [asdict(a) for a in self.accelerators]}


@dataclass(frozen=True)
class PlanRequest:
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    strict: bool = False
    batch_size: int = 32  # effective batch, per optimizer step, over all devices
    grad_accum: int | None = None
    threads: int | None = None
    world_size: int = 1
    local_world_size: int = 1
    distributed: str = "none"  # how the processes were launched, when world_size > 1
    max_device_batch: int | None = None  # the largest per-device batch known to fit
    #: the backend can drive every local device from one process (tf.distribute.MirroredStrategy)
    mirrored: bool = False
    #: CPU cores other processes keep busy (``busy_cores()``); informs a note, never the plan itself
    busy_cores: float = 0.0


@dataclass
class TrainingPlan:
    device: str
    device_name: str
    device_count: int
    precision: str
    precision_reason: str
    loss_scaling: bool
    threads: int
    per_device_batch: int
    grad_accum: int
    effective_batch: int
    world_size: int
    distributed: str
    replicas: int = 1  # devices this process drives (in-process data parallelism)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        dev = f"{self.device_count}x {self.device_name}" if self.device_count > 1 else self.device_name
        devices = f" x {self.replicas} devices" if self.replicas > 1 else ""
        return (f"{dev} | {self.precision} ({self.precision_reason}) | batch {self.effective_batch} = "
                f"{self.per_device_batch} per device x {self.grad_accum} accumulation{devices} x "
                f"{self.world_size} process(es) | {self.threads} threads | distributed: {self.distributed}")


def _native_bf16(device: str, probe: Probe) -> bool:
    if device == "cpu":
        return probe.cpu.native_bf16
    acc = _best(probe)
    return bool(acc and acc.bf16)


def _best(probe: Probe) -> Accelerator | None:
    ranked = sorted(probe.accelerators, key=lambda a: DEVICES.get(a.kind, {"priority": 5})["priority"])
    return ranked[0] if ranked else None


def resolve_precision(requested: str, device: str, probe: Probe, strict: bool = False) -> tuple[str, str, bool]:
    """(precision, reason, loss_scaling) for ``requested`` on ``device``."""
    label = DEVICES.get(device, {"label": device})["label"]
    acc = _best(probe) if device != "cpu" else None
    bf16 = _native_bf16(device, probe)
    fp16 = acc is not None and acc.fp16
    scaling = DEVICES.get(device, {}).get("loss_scaling", False)
    if device == "cpu" and bf16:
        why = ", ".join(f for f in probe.cpu.features if f in BF16_FLAGS)
        native = f"{label} computes bf16 natively ({why})"
    else:
        native = f"{label} computes bf16 natively"
    if requested == "fp32":
        return "fp32", "requested", False
    if requested == "auto":
        if bf16:
            return "bf16", f"auto: {native}", False
        if fp16:
            return "fp16", f"auto: {label} has no native bf16; fp16" + (" with loss scaling" if scaling else ""), scaling
        return "fp32", f"auto: {label} has no native bf16 or fp16 compute", False
    if requested == "bf16":
        if bf16:
            return "bf16", f"requested; {native}", False
        problem = f"bf16 requested but the {label} has no native bf16"
    elif requested == "fp16":
        if fp16:
            return "fp16", "requested" + ("; with loss scaling" if scaling else ""), scaling
        problem = f"fp16 requested but the {label} has no fast fp16"
    else:
        raise UsageError(f"unknown precision {requested!r}")
    if strict:
        raise UsageError(f"{problem}; drop --precision-strict to fall back to fp32, or use --precision auto")
    return "fp32", f"{problem}; falling back to fp32", False


def make_plan(probe: Probe, request: PlanRequest) -> TrainingPlan:
    acc = _best(probe)
    device = acc.kind if acc else "cpu"
    count = sum(1 for a in probe.accelerators if a.kind == device) if acc else 1
    name = (acc.name or DEVICES[device]["label"]) if acc else (probe.cpu.model or "CPU")
    precision, reason, scaling = resolve_precision(request.precision, device, probe, request.strict)
    notes: list[str] = []

    world = max(1, request.world_size)
    replicas = count if world == 1 and count > 1 and device != "cpu" and request.mirrored else 1
    shards = world * replicas
    what = f"{world} processes" if world > 1 else f"{replicas} devices"
    if request.batch_size % shards:
        raise UsageError(f"batch size {request.batch_size} does not split over {what}; use a multiple of {shards}")
    per_shard = request.batch_size // shards
    if request.grad_accum is not None:
        accum = request.grad_accum
        if per_shard % accum:
            raise UsageError(f"batch size {request.batch_size} over {shards} device(s) does not split into "
                             f"{accum} accumulation steps; use a batch size divisible by {shards * accum}")
    elif request.max_device_batch and per_shard > request.max_device_batch:
        accum = -(-per_shard // request.max_device_batch)
        while per_shard % accum:
            accum += 1
        notes.append(f"{per_shard} examples per device do not fit at once; accumulating {accum} steps")
    else:
        accum = 1
    per_device = per_shard // accum

    usable = probe.cpu.usable_cores
    threads = request.threads or max(1, usable // max(1, request.local_world_size))
    if request.threads and request.threads > usable:
        notes.append(f"{request.threads} threads requested on {usable} usable cores (oversubscribed)")
    free = usable - math.ceil(request.busy_cores - 0.25)
    if device == "cpu" and world == 1 and not request.threads and threads > 1 and free < threads:
        notes.append(f"other processes keep about {request.busy_cores:.1f} of the {usable} cores busy, and "
                     f"{threads} threads wait on each other when one is preempted (on a busy 2-core machine "
                     f"2 threads ran 4x slower than 1): --threads {max(1, free)} may be faster")
    distributed = request.distributed if world > 1 else ("mirrored" if replicas > 1 else "none")
    if world == 1 and count > 1 and replicas == 1:
        notes.append(f"{count} devices visible; this run uses one (see README: distributed training)")
    return TrainingPlan(
        device=device, device_name=name, device_count=count if device != "cpu" else 1, precision=precision,
        precision_reason=reason, loss_scaling=scaling, threads=threads, per_device_batch=per_device,
        grad_accum=accum, effective_batch=request.batch_size, world_size=world, distributed=distributed,
        replicas=replicas, notes=notes,
    )


def busy_cores() -> float:
    """Cores kept busy by other processes: the 1-minute load average less this process's own core."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:  # not available on this platform
        return 0.0


def cpu_probe() -> Probe:
    return Probe(cpu_info())


def find_max_batch(fits: Callable[[int], bool], upper: int) -> int:
    """The largest batch (``upper``, halved until it fits) for which ``fits(batch)`` is true;
    ``fits`` runs one forward and backward pass and returns False on out-of-memory."""
    batch = upper
    while batch > 1 and not fits(batch):
        batch //= 2
    if batch == 1 and not fits(1):
        raise UsageError("even a batch of one example does not fit in device memory; lower --max-length")
    return batch


def apply_plan(backend: Any, plan: TrainingPlan) -> None:
    """``backend.configure`` with the plan's threads, replicas and device, before any model is built.
    A backend written before ``configure`` took ``device`` still works, with a DeprecationWarning."""
    import inspect
    import warnings

    params = inspect.signature(backend.configure).parameters
    if "device" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        backend.configure(plan.threads, plan.replicas, device=plan.device)
        return
    warnings.warn(f"backend {backend.name!r}: configure() should accept device= (the plan's device); "
                  "calling it without", DeprecationWarning, stacklevel=2)
    backend.configure(plan.threads, plan.replicas)
