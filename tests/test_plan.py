"""The training plan's choices on faked hardware, and gradient accumulation that keeps the result."""

from __future__ import annotations

import dataclasses

import pytest

from tl.errors import UsageError
from tl.plugins import get_plugin_manager
from tl.training.config import resolve
from tl.training.hardware import CpuInfo
from tl.training.pipeline import run
from tl.training.plan import Accelerator, PlanRequest, Probe, cpu_probe, make_plan

from conftest import slow_on
from tinybert import make_checkpoint

PLAIN_CPU = CpuInfo("Old Xeon", "x86_64", 8, 8, ("avx2",), 32.0)
BF16_CPU = CpuInfo("Sapphire Rapids", "x86_64", 16, 16, ("amx_bf16", "avx2", "avx512_bf16", "avx512f"), 64.0)
A100 = Accelerator("cuda", "A100", 80.0, (8, 0), bf16=True)
T4 = Accelerator("cuda", "T4", 16.0, (7, 5), bf16=False)


def plan(cpu=PLAIN_CPU, accelerators=(), **request):
    return make_plan(Probe(cpu, tuple(accelerators)), PlanRequest(**request))


def test_no_gpu_plain_cpu():
    p = plan()
    assert (p.device, p.precision, p.loss_scaling) == ("cpu", "fp32", False)
    assert "no native bf16" in p.precision_reason
    assert (p.threads, p.per_device_batch, p.grad_accum, p.effective_batch) == (8, 32, 1, 32)


def test_a_busy_machine_gets_a_thread_note_but_the_same_plan():
    two = dataclasses.replace(PLAIN_CPU, logical_cores=2, usable_cores=2)
    quiet, busy = plan(two, busy_cores=0.1), plan(two, busy_cores=1.3)
    assert quiet.notes == [] and quiet.threads == busy.threads == 2
    assert busy.notes == ["other processes keep about 1.3 of the 2 cores busy, and 2 threads wait on each other "
                          "when one is preempted (on a busy 2-core machine 2 threads ran 4x slower than 1): "
                          "--threads 1 may be faster"]
    assert plan(two, busy_cores=1.3, threads=2).notes == []  # the user chose
    assert plan(two, busy_cores=3.0, threads=1).notes == []
    assert "--threads 5 may be faster" in plan(busy_cores=2.6).notes[0]  # 8 cores, about 3 busy


def test_bf16_cpu_picks_bf16():
    p = plan(BF16_CPU)
    assert p.precision == "bf16" and "amx_bf16" in p.precision_reason and "avx512_bf16" in p.precision_reason


def test_fp16_only_gpu_uses_fp16_with_loss_scaling():
    p = plan(BF16_CPU, [T4])
    assert (p.device, p.device_name, p.precision, p.loss_scaling) == ("cuda", "T4", "fp16", True)
    fallback = plan(BF16_CPU, [T4], precision="bf16")
    assert fallback.precision == "fp32" and "no native bf16; falling back to fp32" in fallback.precision_reason
    with pytest.raises(UsageError, match="bf16 requested but the CUDA GPU has no native bf16"):
        plan(BF16_CPU, [T4], precision="bf16", strict=True)


def test_bf16_gpu_and_two_gpus():
    p = plan(PLAIN_CPU, [A100, dataclasses.replace(A100)])
    assert (p.device, p.precision, p.device_count) == ("cuda", "bf16", 2)
    assert any("2 devices visible" in n for n in p.notes)
    # a backend that drives all local devices from one process (TF MirroredStrategy) uses both
    m = plan(PLAIN_CPU, [A100, dataclasses.replace(A100)], mirrored=True, batch_size=32, grad_accum=2)
    assert (m.replicas, m.distributed, m.per_device_batch, m.grad_accum, m.effective_batch) == (2, "mirrored", 8, 2, 32)
    assert not any("devices visible" in n for n in m.notes) and "x 2 devices" in m.summary()
    with pytest.raises(UsageError, match="does not split over 2 devices"):
        plan(PLAIN_CPU, [A100, A100], mirrored=True, batch_size=33)
    # under torchrun each process drives one device, whatever the backend could do
    assert plan(PLAIN_CPU, [A100, A100], mirrored=True, world_size=2, local_world_size=2).replicas == 1


def test_requests_that_cannot_be_honoured_on_cpu():
    assert plan(precision="bf16").precision == "fp32"
    assert plan(precision="fp16").precision == "fp32"
    with pytest.raises(UsageError, match="fp16 requested but the CPU has no fast fp16"):
        plan(precision="fp16", strict=True)
    assert plan(BF16_CPU, precision="fp32").precision == "fp32"


def test_batch_arithmetic():
    assert (plan(batch_size=32, grad_accum=4).per_device_batch, plan(batch_size=32, grad_accum=4).grad_accum) == (8, 4)
    p = plan(batch_size=32, max_device_batch=12)
    assert (p.per_device_batch, p.grad_accum) == (8, 4)
    assert (plan(batch_size=32, world_size=2, local_world_size=2).per_device_batch) == 16
    assert plan(batch_size=32, world_size=2, local_world_size=2).threads == 4
    with pytest.raises(UsageError, match="does not split into 3 accumulation steps"):
        plan(batch_size=32, grad_accum=3)


@pytest.mark.parametrize("backend_name", slow_on("tensorflow"))
def test_gradient_accumulation_keeps_the_result(registry, tmp_path, tiny_data, backend_name):
    """Batch 16 in one step or as 2 x 8 accumulated: the same rows per optimizer step, same numbers."""
    ckpt = make_checkpoint(tmp_path / "nodrop", dropout=0.0)
    metrics = {}
    for accum in (1, 2):
        options = {"backend": backend_name, "model": str(ckpt), "dataset": str(tiny_data), "epochs": 2,
                   "batch_size": 16, "grad_accum": accum, "lr": 1e-3, "max_length": 32, "precision": "fp32",
                   "output": str(tmp_path / f"a{accum}")}
        metrics[accum] = run(resolve(options, {}, {}), registry, get_plugin_manager(), quiet=True).metrics
    assert metrics[2]["grad_accum"] == 2 and metrics[2]["train_steps"] == metrics[1]["train_steps"]
    # both backends weight each micro-batch by its share of the step's rows. Measured: ~1e-10 on
    # both (at lr 5e-3 float noise grows to 7e-5 on TF); averaging micro-batch means instead (Keras'
    # own gradient accumulation) moves TF's eval_loss by 1.8e-3.
    assert metrics[1]["eval_loss"] == pytest.approx(metrics[2]["eval_loss"], abs=1e-5)
    assert metrics[1]["eval_accuracy"] == pytest.approx(metrics[2]["eval_accuracy"], abs=0.02)


def test_find_max_batch_halves_until_it_fits():
    from tl.training.plan import find_max_batch

    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= 12

    assert find_max_batch(fits, 64) == 8 and tried == [64, 32, 16, 8]
    with pytest.raises(UsageError, match="even a batch of one"):
        find_max_batch(lambda b: False, 4)


def test_batch_size_auto_on_cpu_keeps_the_batch(registry, tmp_path, tiny_checkpoint, tiny_data):
    import json

    pytest.importorskip("torch")

    from click.testing import CliRunner

    from tl.cli import cli

    out = CliRunner().invoke(cli, ["run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_data), "--epochs", "1",
                                   "--batch-size", "auto", "--max-length", "32", "-o", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    plan = json.loads((tmp_path / "r" / "config.json").read_text())["plan"]
    assert (plan["effective_batch"], plan["per_device_batch"], plan["grad_accum"]) == (32, 32, 1)
    assert any("no memory search on cpu" in n for n in plan["notes"])
    bad = CliRunner().invoke(cli, ["run", "--batch-size", "many"])
    assert bad.exit_code == 2 and "neither a positive integer nor 'auto'" in bad.output


def test_apply_plan_passes_the_device_and_keeps_old_backends_working():
    from tl.interfaces import Backend
    from tl.training.plan import apply_plan

    class New(Backend):
        name = "new"

        def configure(self, threads, replicas=1, device=None):
            self.got = (threads, replicas, device)

    class Old(Backend):  # written before configure took device=
        name = "old"

        def configure(self, threads, replicas=1):
            self.got = (threads, replicas)

    for cls in (New, Old):
        cls.__abstractmethods__ = frozenset()
    plan = make_plan(cpu_probe(), PlanRequest(threads=3))
    new, old = New(), Old()
    apply_plan(new, plan)
    assert new.got == (3, 1, "cpu")
    with pytest.warns(DeprecationWarning, match="device="):
        apply_plan(old, plan)
    assert old.got == (3, 1)
