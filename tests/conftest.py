"""Shared fixtures: every test runs on the device ``ESPRESSO_DEVICE`` names (default auto).

``runtime`` is the device's shared runtime with the device's own tuning profile.
``profiled_runtime`` is the same device once per tuning profile (``params.PROFILES``), so the
GPU's local-memory configuration is tested on the CPU too; ``ESPRESSO_PARAMS=<profile>``
narrows it to that one profile (the Oclgrind check runs one profile per process).

``ESPRESSO_KERNEL_LOG=<file>`` appends the kernels launched in the session to that file, one
``<file>:<kernel>`` a line (see ``tests/oclgrind_check.py``); with pytest-xdist each worker
appends its own.
"""

import os
import zlib

import numpy as np
import pyopencl as cl
import pytest

import espresso_cl
from espresso_cl import runtime as runtime_module
from espresso_cl.ops import launch
from espresso_cl.cpu_features import AVX512_XNOR
from espresso_cl.params import (AVX512_PROFILE, INTEL_CPU_PROFILE, PARAMS_ENV_VAR, PROFILES,
                                avx512_unsupported)
from espresso_cl.runtime import Runtime

KERNEL_LOG_ENV_VAR = "ESPRESSO_KERNEL_LOG"

_kept_buffers = []


class _KeptBuffer(cl.Buffer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _kept_buffers.append(self)


def pytest_configure(config):
    # Oclgrind 21.10's uninitialized-value checker never drops the shadow of a released buffer,
    # and Oclgrind reuses released buffer ids: a new buffer inherits the old one's shadow (its
    # size and its state), so writes past the old size read back as uninitialized (false
    # reports) and stale "initialized" bytes hide real ones. Keeping every buffer alive until
    # the session ends means no id is ever reused (a context holds 65535).
    try:
        device = espresso_cl.select_device()
    except espresso_cl.DeviceError:
        return  # the runtime fixture reports it
    if runtime_module._is_oclgrind(device):
        cl.Buffer = _KeptBuffer


def _profile_names():
    forced = os.environ.get(PARAMS_ENV_VAR, "").strip().lower()
    return [forced] if forced else sorted(PROFILES)


@pytest.fixture(scope="session")
def runtime():
    return espresso_cl.get_runtime()


@pytest.fixture(scope="session", params=_profile_names())
def profiled_runtime(request, runtime):
    # Depending on `runtime` makes a misspelt ESPRESSO_PARAMS fail with the runtime's message.
    if request.param == AVX512_PROFILE:
        # AVX-512 machine code: only for PoCL on an x86-64 CPU that has the features.
        why = avx512_unsupported(runtime.device)
        if why:
            pytest.skip(f"profile {AVX512_PROFILE}: {why} (needs PoCL on x86-64 with "
                        f"{', '.join(AVX512_XNOR)})")
    if request.param == INTEL_CPU_PROFILE and not runtime_module._is_intel_cpu(runtime.device):
        # Only bgemm's block shape differs from "cpu"; it is tested where it runs (make test-intel).
        pytest.skip(f"profile {INTEL_CPU_PROFILE}: tuned for Intel's CPU runtime, which is not the device under test")
    return Runtime(runtime.device, params=PROFILES[request.param])


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs, so a failure reproduces.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(KERNEL_LOG_ENV_VAR)
    if path and launch.launched:
        # One write per process, in append mode: xdist workers finish concurrently.
        with open(path, "a") as log:
            log.write("".join(f"{name}\n" for name in sorted(launch.launched)))
