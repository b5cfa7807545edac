"""Shared fixtures: every test runs on the device ``ESPRESSO_DEVICE`` names (default auto).

``runtime`` is the device's shared runtime with the device's own tuning profile.
``profiled_runtime`` is the same device once per tuning profile (``tuning.PROFILES``), so the
GPU's local-memory configuration is tested on the CPU too; ``ESPRESSO_PARAMS=<profile>``
narrows it to that one profile (the Oclgrind check runs one profile per process).

``ESPRESSO_KERNEL_LOG=<file>`` appends the kernels launched in the session to that file, one
``<file>:<kernel>`` a line (see ``scripts/oclgrind_check.py``); with pytest-xdist each worker
appends its own.
"""

import os
import zlib

import numpy as np
import pytest

import espresso_cl
import espresso_cl.device
from espresso_cl import settings
from espresso_cl.ops import launch
from espresso_cl.runtime import Runtime
from espresso_cl.tuning import INTEL_CPU_PROFILE, PROFILES


def _profile_names():
    forced = settings.forced_profile()
    return [forced] if forced else sorted(PROFILES)


def pytest_configure(config):
    # The tests run the hand-set profiles that tuning.PROFILES names, whatever tuning database
    # entries (the user's or shipped ones) this device has; tests/test_tuner.py turns them on.
    os.environ.setdefault(settings.TUNED, "off")
    # Intel's CPU runtime registers with the ICD loader on the first device query, which must
    # come before any test's own OpenCL call for its device to appear.
    try:
        espresso_cl.device.all_devices()
    except espresso_cl.DeviceError:
        pass  # the runtime fixture reports it


@pytest.fixture(scope="session")
def runtime():
    return espresso_cl.get_runtime()


@pytest.fixture(scope="session", params=_profile_names())
def profiled_runtime(request, runtime):
    # Depending on `runtime` makes a misspelt ESPRESSO_PARAMS fail with the runtime's message.
    profile = PROFILES[request.param]
    why = profile.cannot_run_on(runtime.traits)
    if why:
        # x86 machine code: only for PoCL on an x86-64 CPU that has the features.
        pytest.skip(f"profile {profile.name}: {why} (needs PoCL on x86-64 with {', '.join(profile.cpu_features)})")
    if profile.name == INTEL_CPU_PROFILE and runtime.traits.implementation != "intel-cpu":
        # Only bgemm's block shape differs from "cpu"; it is tested where it runs (make test-intel).
        pytest.skip(f"profile {INTEL_CPU_PROFILE}: tuned for Intel's CPU runtime, which is not the device under test")
    return Runtime(runtime.device, profile=profile)


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs, so a failure reproduces.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_sessionfinish(session, exitstatus):
    path = settings.kernel_log()
    if path and launch.launched:
        # One write per process, in append mode: xdist workers finish concurrently.
        with open(path, "a") as log:
            log.write("".join(f"{name}\n" for name in sorted(launch.launched)))
