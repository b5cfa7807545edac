"""Device buffers for tensors: a pool that reuses them, and huge pages for PoCL.

PoCL's CPU device takes fresh pages from the OS for every new buffer, so the kernel that first
writes one pays a page fault per 4 KiB. For the 64 MiB output of a 4096 x 4096 GEMM on 2 cores
that was about 35 ms, as long as the GEMM itself. Two remedies:

- **Reuse.** A tensor gives its buffer back when it dies, and the next tensor of the same byte
  size takes it. Every call of a network allocates the same sizes as the call before, so a
  network's second call faults no page. This is safe because a runtime has one in-order queue:
  a kernel enqueued later, writing into a reused buffer, runs after every kernel that read it.
- **Huge pages.** A new PoCL buffer of 4 MiB or more is advised ``MADV_HUGEPAGE`` (as NumPy
  does for its arrays). That took the first write of those 64 MiB to about 9 ms.

Whether to reuse, to advise huge pages, or (Oclgrind) to never release a buffer are the
device's quirks (:data:`espresso_cl.device.QUIRKS`).
"""

from __future__ import annotations

import ctypes
import threading
from collections import defaultdict

import numpy as np
import pyopencl as cl

HUGE_PAGE_BYTES = 4 << 20
_MADV_HUGEPAGE = 14
# Idle buffers kept per runtime, at most; past it a returned buffer is released.
POOL_LIMIT_BYTES = 1 << 30

_madvise = None


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
    """Uninitialised read-write buffers of one context, reused by exact byte size."""

    def __init__(self, context: cl.Context, queue: cl.CommandQueue, reuse: bool, huge_pages: bool,
                 limit_bytes: int = POOL_LIMIT_BYTES, keep_released: bool = False):
        self.context, self.queue = context, queue
        self.reuse, self.huge_pages, self.limit_bytes = reuse, huge_pages, limit_bytes
        self._idle: dict[int, list] = defaultdict(list)
        self._idle_bytes = 0
        self._lock = threading.Lock()
        # Every buffer ever made, when the device must never see one released (Oclgrind).
        self._kept = [] if keep_released else None

    @classmethod
    def for_quirks(cls, context: cl.Context, queue: cl.CommandQueue, quirks) -> "BufferPool":
        return cls(context, queue, reuse=quirks.reuse_buffers, huge_pages=quirks.huge_pages,
                   keep_released=quirks.keep_released_buffers)

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes

    def take(self, nbytes: int) -> cl.Buffer:
        """A buffer of ``nbytes``: an idle one of that size, else a new one."""
        with self._lock:
            idle = self._idle.get(nbytes)
            if idle:
                self._idle_bytes -= nbytes
                return idle.pop()
        buffer = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, nbytes)
        if self.huge_pages and nbytes >= HUGE_PAGE_BYTES:
            _advise_huge_pages(self.queue, buffer, nbytes)
        return self._keep(buffer)

    def upload(self, array: np.ndarray) -> cl.Buffer:
        """A new buffer holding a copy of ``array`` (contiguous)."""
        return self._keep(cl.Buffer(self.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                                    hostbuf=array))

    def _keep(self, buffer: cl.Buffer) -> cl.Buffer:
        if self._kept is not None:
            self._kept.append(buffer)
        return buffer

    def give(self, buffer: cl.Buffer, nbytes: int) -> None:
        """Take back a buffer no tensor uses any more (kept idle, or released past the limit)."""
        if not self.reuse:
            return
        with self._lock:
            if self._idle_bytes + nbytes <= self.limit_bytes:
                self._idle[nbytes].append(buffer)
                self._idle_bytes += nbytes

    def clear(self) -> None:
        """Release every idle buffer."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0
