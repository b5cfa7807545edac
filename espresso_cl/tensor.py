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

import numpy as np
import pyopencl as cl

from .layout import packed_words, row_words, storage_shape  # noqa: F401  (re-exported)

KINDS = {"bits": np.uint32, "float32": np.float32, "int32": np.int32, "uint8": np.uint8}


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
            buffer = cl.Buffer(runtime.context, cl.mem_flags.READ_WRITE, self.nbytes)
        self.buffer = buffer

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
