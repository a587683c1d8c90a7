"""The NVML GPU probe (no framework, no CUDA context): parsing against a stand-in driver library,
CUDA_VISIBLE_DEVICES filtering, and the plain answer on a machine without the driver."""

from __future__ import annotations

import ctypes

from tl.training import nvml

GPUS = [("NVIDIA A100-SXM4-80GB", "GPU-1111aaaa", 80 * 2**30, (8, 0)),
        ("Tesla T4", "GPU-2222bbbb", 15 * 2**30, (7, 5))]


class FakeNvml:
    """The NVML entry points tl calls, writing through ctypes references as the C library does."""

    def __init__(self, gpus=GPUS, fail: str | None = None):
        self.gpus, self.fail, self.shutdown = gpus, fail, 0

    def _code(self, name):
        return 999 if self.fail == name else 0

    def nvmlInit_v2(self):
        return self._code("init")

    def nvmlShutdown(self):
        self.shutdown += 1
        return 0

    def nvmlDeviceGetCount_v2(self, ref):
        ref._obj.value = len(self.gpus)
        return self._code("count")

    def nvmlDeviceGetHandleByIndex_v2(self, i, ref):
        ref._obj.value = i + 1  # a non-null handle per device
        return 0

    def _gpu(self, handle):
        return self.gpus[handle.value - 1]

    def nvmlDeviceGetName(self, handle, buf, n):
        buf.value = self._gpu(handle)[0].encode()
        return 0

    def nvmlDeviceGetUUID(self, handle, buf, n):
        buf.value = self._gpu(handle)[1].encode()
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle, ref):
        ref._obj.total = self._gpu(handle)[2]
        return 0

    def nvmlDeviceGetCudaComputeCapability(self, handle, major, minor):
        major._obj.value, minor._obj.value = self._gpu(handle)[3]
        return self._code("capability")


def test_query_reads_name_memory_and_capability():
    lib = FakeNvml()
    found = nvml._query(lib)
    assert [(g.index, g.name, g.memory_gib, g.capability) for g in found] == [
        (0, "NVIDIA A100-SXM4-80GB", 80.0, (8, 0)), (1, "Tesla T4", 15.0, (7, 5))]
    assert lib.shutdown == 1


def test_a_failing_call_raises_and_still_shuts_down():
    lib = FakeNvml(fail="capability")
    try:
        nvml._query(lib)
    except OSError as exc:
        assert "compute capability" in str(exc)
    else:
        raise AssertionError("expected OSError")
    assert lib.shutdown == 1


def test_cuda_visible_devices():
    found = nvml._query(FakeNvml())
    assert nvml.visible(found, None) == found
    assert [g.name for g in nvml.visible(found, "1")] == ["Tesla T4"]
    assert [g.index for g in nvml.visible(found, "1,0")] == [1, 0]
    assert [g.index for g in nvml.visible(found, "GPU-2222")] == [1]
    assert nvml.visible(found, "") == [] and nvml.visible(found, "-1") == []
    assert [g.index for g in nvml.visible(found, "0,7,1")] == [0]  # CUDA stops at the first unknown id


def test_no_driver_means_none(monkeypatch):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert nvml.gpus() is None
