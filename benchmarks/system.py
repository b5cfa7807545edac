"""What the figures were measured on: CPU, baselines' threads and BLAS, OpenCL devices, peaks.

Nothing here times anything; it describes the machine so that a result file can be judged
(and compared) without the machine at hand.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import espresso_cl
from espresso_cl import settings
from espresso_cl.device import all_devices, compile_problem
from espresso_cl.runtime import get_runtime

# Environment variables that change how the baselines or PoCL use the cores.
THREAD_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                   "POCL_MAX_PTHREAD_COUNT", "POCL_AFFINITY", "CL_CONFIG_CPU_TBB_NUM_WORKERS",
                   "ESPRESSO_DEVICE", "ESPRESSO_PARAMS", "ESPRESSO_INTEL_OPENCL", "OCL_ICD_VENDORS")

# The mission's XNOR-popcount limits of hand-written C on 2 cores (shared/mission.md), per core.
CPU_POPCOUNT_LIMITS = {
    "AVX512VPOPCNTDQ": ((1.5e12 / 2, 1.9e12 / 2),
                        "hand-written C XNOR-popcount limit, AMD Zen 4 with AVX-512 VPOPCNTDQ: "
                        "1.5-1.9 T binary MAC/s on 2 cores (project mission), scaled to"),
    "AVX2": ((0.40e12 / 2, 0.40e12 / 2),
             "hand-written C XNOR-popcount limit, AMD Zen 3 with AVX2 only (vpshufb nibble lookup): "
             "0.40 T binary MAC/s on 2 cores (project mission), scaled to"),
}

# sm_80 / sm_90 issue 16 popc per clock per SM, each counting 32 bits.
NVIDIA_POPC_PER_CLOCK_PER_SM = 16


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _proc_cpuinfo_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_features() -> dict:
    """Popcount-relevant features as NumPy's dispatcher sees them, and the kernel's /proc/cpuinfo flags."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as features
    wanted = ("POPCNT", "AVX2", "AVX512F", "AVX512BW", "AVX512VPOPCNTDQ", "AVX512BITALG")
    flags = _proc_cpuinfo_flags()
    return {
        "numpy": {name: bool(features.get(name, False)) for name in wanted},
        "proc_cpuinfo": {flag: flag in flags for flag in ("popcnt", "avx2", "avx512f", "avx512_vpopcntdq")},
    }


def _popcount_class(features: dict) -> str | None:
    numpy_view, kernel_view = features["numpy"], features["proc_cpuinfo"]
    if numpy_view["AVX512VPOPCNTDQ"] or kernel_view["avx512_vpopcntdq"]:
        return "AVX512VPOPCNTDQ"
    if numpy_view["AVX2"] or kernel_view["avx2"]:
        return "AVX2"
    return None


def numpy_info() -> dict:
    """NumPy's version, BLAS and thread count (threadpoolctl when installed, else NumPy's build config)."""
    info = {"version": np.__version__}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["source"] = "numpy.show_config (install threadpoolctl for the thread count)"
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            info["blas"] = f"{blas.get('name')} {blas.get('version')}"
        except (TypeError, KeyError):  # NumPy < 1.26 has no dict mode
            info["blas"] = "unknown"
        info["threads"] = None
        return info
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    info["source"] = "threadpoolctl"
    if pools:
        pool = pools[0]
        info["blas"] = f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
        info["threads"] = pool.get("num_threads")
    else:
        info["blas"], info["threads"] = "none found", None
    return info


def load_torch():
    """(torch module or None, a line saying why not). Sets torch to use every usable core."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install raises OSError, not ImportError
        return None, f"PyTorch not available ({type(exc).__name__}: {exc}); install torch to add it"
    torch.set_num_threads(usable_cores())
    return torch, ""


def torch_info(torch) -> dict | None:
    if torch is None:
        return None
    settings = [item.strip() for item in torch.__config__.show().replace("\n", ",").split(",")]
    blas = [item for item in settings if item.startswith(("BLAS_INFO=", "USE_MKLDNN="))]
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "blas": ", ".join(blas) or "unknown (see torch.__config__.show())",
            "mkldnn": bool(torch.backends.mkldnn.is_available())}


def load_onnxruntime():
    """(onnx module, onnxruntime module, "") or (None, None, a line saying why not)."""
    try:
        import onnx
        import onnxruntime
    except Exception as exc:  # noqa: BLE001 - a broken install raises OSError, not ImportError
        return None, None, (f"ONNX Runtime not available ({type(exc).__name__}: {exc}); "
                            f"pip install -e '.[onnx]' to add it")
    return onnx, onnxruntime, ""


def onnxruntime_info(onnxruntime) -> dict | None:
    if onnxruntime is None:
        return None
    return {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
            "intra_op_threads": usable_cores(), "execution_mode": "sequential"}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "cpu_features": cpu_features(),
        "python": sys.version.split()[0],
        "espresso_cl": espresso_cl.__version__,
        "git_commit": git_commit(),
        "environment": {name: os.environ[name] for name in THREAD_ENV_VARS if name in os.environ},
        "load_average_at_start": list(load) if load else None,
    }


@dataclass
class Device:
    """An OpenCL device under test: its runtime, a short key for labels and its binary peak."""

    key: str
    runtime: object
    peak: tuple | None      # (low, high) binary MAC/s, or None where no figure applies
    peak_source: str

    def describe(self) -> dict:
        dev = self.runtime.device
        return {"key": self.key, "description": self.runtime.describe(), "kind": self.runtime.kind,
                "compute_units": dev.max_compute_units, "max_clock_mhz": dev.max_clock_frequency,
                "tuning_profile": self.runtime.profile.name,
                "binary_peak_mac_per_s": list(self.peak) if self.peak else None,
                "peak_source": self.peak_source}


def binary_peak(runtime, features: dict) -> tuple[tuple | None, str]:
    """(low, high) binary MAC/s this device can reach at best, and where the figure comes from."""
    dev = runtime.device
    units = dev.max_compute_units
    if runtime.kind == "cpu":
        cls = _popcount_class(features)
        if cls is None:
            return None, "no popcount limit known for a CPU without AVX2"
        (low, high), source = CPU_POPCOUNT_LIMITS[cls]
        return (low * units, high * units), f"{source} {units} compute unit(s)"
    if runtime.kind == "gpu" and "nvidia" in dev.vendor.lower():
        clock_hz = dev.max_clock_frequency * 1e6
        peak = NVIDIA_POPC_PER_CLOCK_PER_SM * units * 32 * clock_hz
        return (peak, peak), (f"derived popcount ceiling: {NVIDIA_POPC_PER_CLOCK_PER_SM} popc/clock/SM x "
                              f"{units} SMs x 32 bits x {dev.max_clock_frequency} MHz")
    return None, f"no popcount ceiling known for a {runtime.kind} device from {dev.vendor.strip()}"


def implementation(runtime) -> str:
    """A short name of the OpenCL implementation, so that two CPU runtimes read apart in tables."""
    return {"intel-cpu": "intel"}.get(runtime.traits.implementation, runtime.traits.implementation)


def devices_under_test() -> list[Device]:
    """The device ``ESPRESSO_DEVICE`` names, or else every OpenCL device that can build kernels
    but the Oclgrind simulator."""
    features = cpu_features()
    chosen = get_runtime() if settings.device_spec_is_set() else None
    devices = []
    for p, d, dev in all_devices():
        if chosen is None and compile_problem(dev):
            continue  # a PoCL too old for this CPU, say: selection skips it too
        runtime = get_runtime(f"{p}:{d}")
        # Oclgrind is a simulator: its timings mean nothing, unless it is asked for by name.
        wanted = runtime is chosen if chosen is not None else runtime.kind != "oclgrind"
        if wanted:
            devices.append(Device(f"{implementation(runtime)} {runtime.kind} {p}:{d}", runtime,
                                  *binary_peak(runtime, features)))
    return devices
