"""Device buffers for tensors: a bounded pool that reuses them, and huge pages for PoCL.

PoCL's CPU device takes fresh pages from the OS for every new buffer, so the kernel that first
writes one pays a page fault per 4 KiB. For the 64 MiB output of a 4096 x 4096 GEMM on 2 cores
that was about 35 ms, as long as the GEMM itself. Two remedies:

- **Reuse.** A tensor gives its buffer back when it dies, and the next tensor of the same size
  class takes it. Sizes are rounded up to classes of at most 1/8 more (8 per power of two), so
  that batches of varying sizes reuse each other's buffers instead of piling up one idle
  buffer per exact size. Every call of a network allocates the same sizes as the call before,
  so its second call faults no page. This is safe because a runtime has one in-order queue:
  a kernel enqueued later, writing into a reused buffer, runs after every kernel that read it.
- **Huge pages.** A new PoCL buffer of 4 MiB or more is advised ``MADV_HUGEPAGE`` (as NumPy
  does for its arrays). That took the first write of those 64 MiB to about 9 ms.

PoCL's buffers come from the process's malloc. glibc raises its mmap threshold to the size of
each mmap-ed block freed (up to 32 MiB), after which buffers of up to that size come from the
heap, whose freed memory glibc rarely gives back: 300 calls of the MNIST CNN at random batch
sizes grew RSS by 400 MB and ran 4x slower than with the threshold fixed at
:data:`MMAP_THRESHOLD_BYTES` (``mallopt``), which PoCL runtimes do once per process. Every
buffer of 1 MiB or more is then its own mapping, returned to the OS when released.

Idle buffers are bounded: together with the buffers recorded launch lists hold
(:class:`Arena`), at most :data:`POOL_LIMIT_BYTES` per runtime; the least recently returned
go first and :meth:`BufferPool.release_idle` (``Runtime.release_memory``) gives them all back.
Whether to reuse, to advise huge pages, or (Oclgrind) to never release a buffer are the
device's quirks (:data:`espresso_cl.device.QUIRKS`).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from contextlib import contextmanager

import numpy as np
import pyopencl as cl

from .device import DeviceError, DeviceTraits

HUGE_PAGE_BYTES = 4 << 20
_MADV_HUGEPAGE = 14
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
# Idle buffers kept per runtime, at most; past it the least recently returned are released.
POOL_LIMIT_BYTES = 256 << 20
# Size classes: 8 per power of two, so a buffer is at most 1/8 larger than asked.
_CLASS_STEPS_LOG2 = 3
_SMALLEST_CLASS = 256


class DeviceMemoryError(DeviceError):
    """The device cannot hold a buffer a run needs; the message names the sizes."""


def size_class(nbytes: int) -> int:
    """The byte size of the buffer that serves a request for ``nbytes``."""
    if nbytes <= _SMALLEST_CLASS:
        return _SMALLEST_CLASS
    step = 1 << max(0, (nbytes - 1).bit_length() - 1 - _CLASS_STEPS_LOG2)
    return -(-nbytes // step) * step


_madvise = None


@functools.lru_cache(maxsize=None)
def _fix_mmap_threshold() -> bool:
    """mallopt(M_MMAP_THRESHOLD) on glibc, once per process; whether it took."""
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except AttributeError:  # not glibc: its malloc has no such threshold to fix
        return False


def _advise_huge_pages(queue: cl.CommandQueue, buffer: cl.Buffer, nbytes: int) -> None:
    """madvise(MADV_HUGEPAGE) on a PoCL CPU buffer's memory (mapped, which costs no copy)."""
    global _madvise
    if _madvise is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise = libc.madvise
    mapped, _ = cl.enqueue_map_buffer(queue, buffer, cl.map_flags.WRITE_INVALIDATE_REGION,
                                      0, (nbytes,), np.uint8, is_blocking=True)
    try:
        start = (mapped.ctypes.data + 4095) & ~4095
        end = (mapped.ctypes.data + nbytes) & ~4095
        if end > start:
            _madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: a failure changes nothing
    finally:
        mapped.base.release(queue)


class BufferPool:
    """Uninitialised read-write buffers of one context, reused by size class."""

    def __init__(self, context: cl.Context, queue: cl.CommandQueue, traits: DeviceTraits, reuse: bool,
                 huge_pages: bool, limit_bytes: int = POOL_LIMIT_BYTES, keep_released: bool = False):
        self.context, self.queue, self.traits = context, queue, traits
        self.reuse, self.huge_pages, self.limit_bytes = reuse, huge_pages, limit_bytes
        # Idle (size class, buffer) pairs, least recently returned first.
        self._idle: list[tuple[int, cl.Buffer]] = []
        self._idle_bytes = 0
        self._held_bytes = 0  # taken by arenas: memory kept for launch lists
        self._lock = threading.Lock()
        self._recorders: list[list[int]] = []
        # Every buffer ever made, when the device must never see one released (Oclgrind).
        self._kept = [] if keep_released else None

    @classmethod
    def for_device(cls, context: cl.Context, queue: cl.CommandQueue, traits: DeviceTraits,
                   quirks) -> "BufferPool":
        if quirks.malloc_buffers:
            _fix_mmap_threshold()
        return cls(context, queue, traits, reuse=quirks.reuse_buffers, huge_pages=quirks.huge_pages,
                   keep_released=quirks.keep_released_buffers)

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes

    def take(self, nbytes: int) -> cl.Buffer:
        """A buffer of at least ``nbytes``: an idle one of its size class, else a new one."""
        if nbytes > self.traits.max_buffer_bytes:
            raise self._too_large(nbytes, "more than the largest buffer")
        nbytes = self._capacity(nbytes)
        with self._lock:
            self._record(nbytes)
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index][0] == nbytes:
                    self._idle_bytes -= nbytes
                    return self._idle.pop(index)[1]
        buffer = self._allocate(nbytes, lambda: cl.Buffer(self.context, cl.mem_flags.READ_WRITE, nbytes))
        if self.huge_pages and nbytes >= HUGE_PAGE_BYTES:
            _advise_huge_pages(self.queue, buffer, nbytes)
        return buffer

    def upload(self, array: np.ndarray) -> cl.Buffer:
        """A new buffer holding a copy of ``array`` (contiguous)."""
        with self._lock:
            self._record(array.nbytes)
        flags = cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR
        return self._allocate(array.nbytes, lambda: cl.Buffer(self.context, flags, hostbuf=array))

    def _capacity(self, nbytes: int) -> int:
        """The size of the buffer that serves ``nbytes``: its size class, where reused."""
        if not self.reuse:
            return nbytes
        return min(size_class(nbytes), max(nbytes, self.traits.max_buffer_bytes))

    def _allocate(self, nbytes: int, make) -> cl.Buffer:
        if nbytes > self.traits.max_buffer_bytes:
            raise self._too_large(nbytes, "more than the largest buffer")
        try:
            buffer = make()
        except cl.Error:
            # Idle buffers may hold the memory: give them back and try once more.
            self.release_idle()
            try:
                buffer = make()
            except cl.Error as exc:
                raise self._too_large(nbytes, f"the device refused it: {exc}") from None
        if self._kept is not None:
            self._kept.append(buffer)
        return buffer

    def _too_large(self, nbytes: int, why: str) -> DeviceMemoryError:
        t = self.traits
        return DeviceMemoryError(f"cannot allocate a buffer of {nbytes:,} bytes on {t.name} ({why}; its "
                                 f"largest buffer is {t.max_buffer_bytes:,} bytes, its global memory "
                                 f"{t.global_memory_bytes:,} bytes)")

    def give(self, buffer: cl.Buffer, nbytes: int) -> None:
        """Take back the buffer :meth:`take` gave for ``nbytes``, now that no tensor uses it."""
        if not self.reuse:
            return
        nbytes = self._capacity(nbytes)
        with self._lock:
            self._idle.append((nbytes, buffer))
            self._idle_bytes += nbytes
            self._trim()

    def hold(self, nbytes: int) -> None:
        """Count ``nbytes`` more (or, negative, fewer) as kept by arenas, against the idle bound."""
        with self._lock:
            self._held_bytes += nbytes
            self._trim()

    def _trim(self) -> None:
        while self._idle and self._idle_bytes + self._held_bytes > self.limit_bytes:
            self._idle_bytes -= self._idle.pop(0)[0]

    def release_idle(self) -> None:
        """Release every idle buffer (their memory goes back to the device)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0

    @contextmanager
    def recording(self):
        """The byte size of every buffer taken or uploaded in the ``with`` block, as a list."""
        sizes: list[int] = []
        with self._lock:
            self._recorders.append(sizes)
        try:
            yield sizes
        finally:
            with self._lock:
                self._recorders.remove(sizes)

    def _record(self, nbytes: int) -> None:
        for sizes in self._recorders:
            sizes.append(nbytes)


class Arena:
    """The buffers of one recorded launch list (:mod:`espresso_cl.launch_list`).

    While the list is recorded, its tensors take buffers here: a buffer a tensor gives back is
    reused by a later tensor of the run, as the pool would, but never leaves the arena, since
    the recorded kernels keep writing into it on every replay. The arena takes new buffers
    from the pool and gives them all back when the list is dropped (:meth:`release`).
    """

    def __init__(self, pool: BufferPool):
        self.pool = pool
        self._idle: dict[int, list] = {}
        self._owned: list = []   # every buffer taken from the pool, while the list lives
        self.nbytes = 0
        self.released = False

    def take(self, nbytes: int) -> cl.Buffer:
        capacity = self.pool._capacity(nbytes)
        idle = self._idle.get(capacity)
        if idle:
            return idle.pop()
        buffer = self.pool.take(nbytes)
        self._owned.append(buffer)
        self.nbytes += capacity
        self.pool.hold(capacity)
        return buffer

    def give(self, buffer: cl.Buffer, nbytes: int) -> None:
        if self.released:
            self.pool.give(buffer, nbytes)
        else:
            self._idle.setdefault(self.pool._capacity(nbytes), []).append(buffer)

    def release(self) -> None:
        """Give the idle buffers to the pool; buffers still in a tensor follow when it dies."""
        self.released = True
        self.pool.hold(-self.nbytes)
        for capacity, buffers in self._idle.items():
            for buffer in buffers:
                self.pool.give(buffer, capacity)
        self._idle.clear()
        self._owned.clear()


class NoMemory:
    """The allocator of a dry run (kernels built, nothing enqueued): tensors get no buffer."""

    def take(self, nbytes: int) -> None:
        return None

    def give(self, buffer, nbytes: int) -> None:
        pass


NO_MEMORY = NoMemory()
