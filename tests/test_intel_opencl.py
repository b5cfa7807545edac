"""Registration of Intel's CPU runtime with the ICD loader (espresso_cl/intel_opencl.py)."""

import os
import subprocess
import sys

import pyopencl as cl
import pytest

from espresso_cl import intel_opencl
from espresso_cl.device import all_devices


def _intel_installed():
    return intel_opencl.find_library() is not None


def test_intel_registration_was_decided():
    # The first device query leaves a status either way; with the wheel and no user override
    # it registers (or a parent process did, or the system already lists it).
    all_devices()
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
    code = ("import espresso_cl.device as d, pyopencl as cl; d.all_devices(); "
            "print('|'.join(p.name for p in cl.get_platforms())); print(d.intel_opencl.status)")
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


def test_importing_espresso_cl_registers_nothing():
    code = ("import espresso_cl, espresso_cl.runtime, espresso_cl.intel_opencl as m; print(m.status); "
            "espresso_cl.select_device(); print(m.status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout.splitlines()
    assert out[0] == "not attempted" and out[1] != "not attempted", out
