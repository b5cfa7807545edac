"""The one owner of a device's OpenCL state: context, queue, tuning profile, programs, buffers.

Which device: :mod:`espresso_cl.device`; which tuning values: :mod:`espresso_cl.tuning`;
program build and cache: :mod:`espresso_cl.build`; tensor memory: :mod:`espresso_cl.memory`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pyopencl as cl

from . import process
from .build import ProgramCache
from .device import quirks_of, select_device, traits_of
from .memory import NO_MEMORY, BufferPool
from .tuning import Profile, profile_for


class Capture(threading.local):
    """What this thread's launches on a runtime are for (:mod:`espresso_cl.launch_list`)."""

    recorder = None   # the LaunchList recording them: they also go into it
    dry = False       # a dry run: kernels are built, nothing is allocated or enqueued
    launches = None   # a dry run's launches: (file, kernel, defines, work-group, large grid)


class Runtime:
    """An OpenCL device with its context, in-order queue, tuning profile and program cache.

    ``profile`` None picks the device's own (:func:`espresso_cl.tuning.profile_for`).
    """

    def __init__(self, device, profile: Profile | None = None):
        self.device = device
        self.traits = traits_of(device)
        self.quirks = quirks_of(self.traits)
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)
        self.profile = profile if profile is not None else profile_for(self.traits)
        self.programs = ProgramCache(self.context, self.traits, self.quirks)
        self.buffers = BufferPool.for_device(self.context, self.queue, self.traits, self.quirks)
        self.capture = Capture()
        # Launch variants this process has enqueued, where the device compiles on first launch
        # (Quirks.launch_compiles_past_grid): (file, kernel, defines, work-group, large grid).
        self.compiled_launches: set = set()
        # Whether the 1-bit tensor-core GEMM may run here: None until its probe has run
        # (espresso_cl/ops/tensor_cores.py, on the first GEMM of a profile that wants it).
        self.tensor_cores: bool | None = None

    @property
    def kind(self) -> str:
        return self.traits.kind

    def describe(self) -> str:
        dev = self.device
        return (f"{self.traits.name} [{self.kind}] on {self.traits.platform} "
                f"{dev.platform.version.strip()}, driver {self.traits.driver}")

    def kernel(self, filename: str, name: str, defines: dict | None = None, args=()):
        """The kernel ``name`` of ``kernels/<filename>`` built with ``defines``, for this thread
        (typed for ``args``, the launch's arguments, when first made)."""
        process.check()  # every launch asks for its kernel here: none reaches a forked child's queue
        return self.programs.kernel(filename, name, defines, args)

    def allocator(self):
        """Where this thread's new tensors take their buffers: the pool, the arena of the launch
        list being recorded, or nowhere (a dry run)."""
        capture = self.capture
        if capture.dry:
            return NO_MEMORY
        return self.buffers if capture.recorder is None else capture.recorder.arena

    @contextmanager
    def captured(self, recorder=None, dry: bool = False, launches: list | None = None):
        """This thread's launches recorded into ``recorder`` or (``dry``) only built, in the
        block; a dry run lists them in ``launches`` (kept from an enclosing dry run if None)."""
        capture = self.capture
        saved = capture.recorder, capture.dry, capture.launches
        capture.recorder, capture.dry = recorder, dry
        capture.launches = launches if launches is not None else (capture.launches if dry else None)
        try:
            yield
        finally:
            capture.recorder, capture.dry, capture.launches = saved

    def release_memory(self) -> None:
        """Give the device memory of idle buffers back (tensors in use and parameters stay).
        The next run of a model allocates its buffers anew, paying the first-touch cost once."""
        self.buffers.release_idle()

    def __repr__(self):
        return f"Runtime({self.traits.name!r}, profile={self.profile.name!r})"


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
