"""Device tensors and the packed-bit layout rules.

A :class:`Tensor` is a device buffer with a logical shape and a kind:

``bits``
    +-1 values packed along the last (channel) axis: logical shape ``(..., C)`` is stored as
    ``(..., packed_words(C))`` 32-bit words (see ``kernels/common.h`` for bit order, sign(0)
    and pad bits). 32x smaller than float32. A flattened packed image keeps each pixel's
    padding: its last axis holds ``C // segment`` segments of ``segment`` channels, each
    packed on its own (``segment`` = the image's channel count), so flatten is free.
``float32`` / ``int32`` / ``uint8``
    plain row-major (NHWC for images) arrays.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pyopencl as cl

from .layout import packed_words, row_words, storage_shape  # noqa: F401  (re-exported)

KINDS = {"bits": np.uint32, "float32": np.float32, "int32": np.int32, "uint8": np.uint8}

# PoCL's CPU device takes fresh pages from the OS for every buffer, so the kernel that first
# writes a large one pays a page fault per 4 KiB: about 35 ms for the 64 MiB output of a
# 4096 x 4096 GEMM on 2 cores, as long as the GEMM itself. Asking Linux for transparent huge
# pages on the buffer's memory (as NumPy does for its arrays) brings that to about 9 ms.
HUGE_PAGE_BYTES = 4 << 20
_MADV_HUGEPAGE = 14
_huge_page_devices: dict[int, bool] = {}
_madvise = None


def _wants_huge_pages(runtime) -> bool:
    key = runtime.device.int_ptr
    use = _huge_page_devices.get(key)
    if use is None:
        from .runtime import _is_pocl

        use = _huge_page_devices[key] = (sys.platform.startswith("linux") and runtime.kind == "cpu"
                                         and _is_pocl(runtime.device))
    return use


def _advise_huge_pages(runtime, buffer: cl.Buffer, nbytes: int) -> None:
    """madvise(MADV_HUGEPAGE) on a PoCL CPU buffer's memory (mapped, which costs no copy)."""
    global _madvise
    if _madvise is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise = libc.madvise
    mapped, _ = cl.enqueue_map_buffer(runtime.queue, buffer, cl.map_flags.WRITE_INVALIDATE_REGION,
                                      0, (nbytes,), np.uint8, is_blocking=True)
    try:
        start = (mapped.ctypes.data + 4095) & ~4095
        end = (mapped.ctypes.data + nbytes) & ~4095
        if end > start:
            _madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: a failure changes nothing
    finally:
        mapped.base.release(runtime.queue)


def new_buffer(runtime, nbytes: int) -> cl.Buffer:
    """An uninitialised read-write buffer of ``nbytes`` on ``runtime``'s context."""
    buffer = cl.Buffer(runtime.context, cl.mem_flags.READ_WRITE, nbytes)
    if nbytes >= HUGE_PAGE_BYTES and _wants_huge_pages(runtime):
        _advise_huge_pages(runtime, buffer, nbytes)
    return buffer


class Tensor:
    """A device array: ``buffer`` on ``runtime``'s context, logical ``shape``, ``kind``."""

    def __init__(self, runtime, shape, kind: str, buffer: cl.Buffer | None = None,
                 segment: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown tensor kind {kind!r}; one of {sorted(KINDS)}")
        self.runtime = runtime
        self.shape = tuple(int(s) for s in shape)
        self.kind = kind
        if any(s < 1 for s in self.shape):
            raise ValueError(f"tensor shape {self.shape} has an empty axis")
        self.segment = (self.shape[-1] if segment is None else int(segment)) if kind == "bits" else None
        self.storage_shape = storage_shape(self.shape, kind, self.segment)
        self.dtype = np.dtype(KINDS[kind])
        self.nbytes = int(np.prod(self.storage_shape)) * self.dtype.itemsize
        if buffer is None:
            buffer = new_buffer(runtime, self.nbytes)
        self.buffer = buffer
        self._derived: dict = {}

    def derived(self, key, make):
        """The form of this tensor that ``make()`` computes (weights transposed for a kernel, say),
        computed once per ``key`` and kept with the tensor. Valid for the tensor's life: no op
        writes into a tensor it was given, only into the ones it creates."""
        value = self._derived.get(key)
        if value is None:
            value = self._derived[key] = make()
        return value

    @classmethod
    def from_numpy(cls, runtime, array: np.ndarray, kind: str, shape=None,
                   segment: int | None = None) -> "Tensor":
        """Upload ``array`` (already in storage layout). ``shape`` is the logical shape for bits."""
        array = np.ascontiguousarray(array, dtype=KINDS[kind])
        shape = array.shape if shape is None else tuple(shape)
        expected = storage_shape(shape, kind, segment)
        if expected != array.shape:
            raise ValueError(f"{kind} tensor of shape {shape} needs storage {expected}, "
                             f"got an array of shape {array.shape}")
        buffer = cl.Buffer(runtime.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                           hostbuf=array)
        return cls(runtime, shape, kind, buffer, segment)

    def numpy(self) -> np.ndarray:
        """Download; bits come back packed (use ``reference.unpack_bits`` for +-1 values)."""
        out = np.empty(self.storage_shape, self.dtype)
        cl.enqueue_copy(self.runtime.queue, out, self.buffer)
        return out

    def reshape(self, shape, segment: int | None = None) -> "Tensor":
        """The same buffer under another logical shape (and segment) with the same storage size."""
        shape = tuple(int(s) for s in shape)
        if self.kind == "bits" and segment is None:
            segment = self.segment
        if int(np.prod(storage_shape(shape, self.kind, segment))) != int(np.prod(self.storage_shape)):
            raise ValueError(f"cannot view {self.kind} tensor {self.shape} as {shape}")
        return Tensor(self.runtime, shape, self.kind, self.buffer, segment)

    def __repr__(self):
        return f"Tensor({self.kind}, shape={self.shape})"
