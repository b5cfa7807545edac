"""Every ``ESPRESSO_*`` environment variable, read here and nowhere else.

| variable | meaning | default |
| --- | --- | --- |
| ``ESPRESSO_DEVICE`` | which OpenCL device (:func:`espresso_cl.device.select_device`) | ``auto`` |
| ``ESPRESSO_PARAMS`` | force a tuning profile by name (:mod:`espresso_cl.tuning`) | the device's own |
| ``ESPRESSO_KERNEL_TIMING`` | ``1``: every launch waits for its kernel and records its time | off |
| ``ESPRESSO_KERNEL_LOG`` | file the test session appends the launched kernels to (Oclgrind coverage) | none |
| ``ESPRESSO_INTEL_OPENCL`` | ``0``/``off``/``false``/``no``: do not register Intel's CPU runtime | on |
| ``ESPRESSO_LCE_PYTHON`` | a Python with Larq Compute Engine (and TensorFlow) for ``python -m benchmarks.lce`` | none |
| ``ESPRESSO_TUNING_DB`` | the per-user tuning database (:mod:`espresso_cl.tuning_db`) | ``$XDG_CACHE_HOME/espresso_cl/tuning.json`` (``~/.cache``) |
| ``ESPRESSO_TUNED`` | ``0``/``off``/``false``/``no``: ignore tuned entries (user and shipped), use the hand-set profiles | on |

Each is read when it is needed, not at import, so a test may set one with ``monkeypatch``.
Pure Python: importable without pyopencl.
"""

from __future__ import annotations

import os

DEVICE = "ESPRESSO_DEVICE"
PROFILE = "ESPRESSO_PARAMS"
KERNEL_TIMING = "ESPRESSO_KERNEL_TIMING"
KERNEL_LOG = "ESPRESSO_KERNEL_LOG"
INTEL_OPENCL = "ESPRESSO_INTEL_OPENCL"
LCE_PYTHON = "ESPRESSO_LCE_PYTHON"
TUNING_DB = "ESPRESSO_TUNING_DB"
TUNED = "ESPRESSO_TUNED"

_OFF = ("0", "off", "false", "no")


def device_spec(environ=os.environ) -> str:
    """The device request, stripped; ``auto`` when unset or empty."""
    return environ.get(DEVICE, "").strip() or "auto"


def device_spec_is_set(environ=os.environ) -> bool:
    return bool(environ.get(DEVICE, "").strip())


def forced_profile(environ=os.environ) -> str:
    """The tuning profile named by ``ESPRESSO_PARAMS``, lower case; '' when none is forced."""
    return environ.get(PROFILE, "").strip().lower()


def kernel_timing(environ=os.environ) -> bool:
    return environ.get(KERNEL_TIMING, "").strip().lower() not in ("",) + _OFF


def kernel_log(environ=os.environ) -> str:
    return environ.get(KERNEL_LOG, "").strip()


def intel_registration_off(environ=os.environ) -> bool:
    return environ.get(INTEL_OPENCL, "").strip().lower() in _OFF


def lce_python(environ=os.environ) -> str:
    """The Python interpreter that runs Larq Compute Engine (its own environment: TensorFlow 2.16
    needs NumPy < 2); '' when unset."""
    return environ.get(LCE_PYTHON, "").strip()


def tuning_db_path(environ=os.environ) -> str:
    """The per-user tuning database: ``$ESPRESSO_TUNING_DB``, else ``tuning.json`` in the user
    cache (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``espresso_cl/``."""
    explicit = environ.get(TUNING_DB, "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    base = environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "espresso_cl", "tuning.json")


def tuned_entries_off(environ=os.environ) -> bool:
    return environ.get(TUNED, "").strip().lower() in _OFF
