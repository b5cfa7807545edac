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
                 segment: int | None = None, base: "Tensor | None" = None):
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
        # A tensor that allocates its buffer gives it back to the runtime's pool when it dies;
        # a view (``base``) keeps the tensor that owns its buffer alive.
        self._base = base
        self._derived: dict = {}
        allocator = runtime.allocator() if buffer is None else None
        self.buffer = allocator.take(self.nbytes) if allocator is not None else buffer
        # Set last: a construction that failed has no buffer to give back.
        self._allocator = allocator

    def __del__(self):
        allocator = getattr(self, "_allocator", None)
        if allocator is not None:
            allocator.give(self.buffer, self.nbytes)

    def derived(self, key, make):
        """The form of this tensor that ``make()`` computes (weights transposed for a kernel, say),
        computed once per ``key`` and kept with the tensor. Valid for the tensor's life: no op
        writes into a tensor it was given, only into the ones it creates."""
        value = self._derived.get(key)
        if value is None:
            capture = self.runtime.capture
            # Computed once, not on every replay of a launch list, and in buffers of its own;
            # a dry run computes nothing, so keeps nothing.
            with self.runtime.captured(dry=capture.dry):
                value = make()
            if not capture.dry:
                self._derived[key] = value
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
        capture = runtime.capture
        if capture.dry:
            return cls(runtime, shape, kind, segment=segment)
        if capture.recorder is not None:
            capture.recorder.cannot_replay("it uploads data during the run")
        return cls(runtime, shape, kind, runtime.buffers.upload(array), segment)

    def numpy(self) -> np.ndarray:
        """Download; bits come back packed (use ``reference.unpack_bits`` for +-1 values)."""
        out = np.empty(self.storage_shape, self.dtype)
        capture = self.runtime.capture
        if capture.dry:
            return out
        if capture.recorder is not None:
            capture.recorder.cannot_replay("it reads data back during the run")
        cl.enqueue_copy(self.runtime.queue, out, self.buffer)
        return out

    def reshape(self, shape, segment: int | None = None) -> "Tensor":
        """The same buffer under another logical shape (and segment) with the same storage size."""
        return self._view(shape, segment, prefix=False)

    def prefix(self, shape, segment: int | None = None) -> "Tensor":
        """The first bytes of the buffer as a tensor of ``shape`` (at most this one's storage)."""
        return self._view(shape, segment, prefix=True)

    def _view(self, shape, segment, prefix: bool) -> "Tensor":
        shape = tuple(int(s) for s in shape)
        if self.kind == "bits" and segment is None:
            segment = self.segment
        size, mine = int(np.prod(storage_shape(shape, self.kind, segment))), int(np.prod(self.storage_shape))
        if size > mine or (size != mine and not prefix):
            raise ValueError(f"cannot view {self.kind} tensor {self.shape} as {shape}")
        return Tensor(self.runtime, shape, self.kind, self.buffer, segment, base=self._base or self)

    def __repr__(self):
        return f"Tensor({self.kind}, shape={self.shape})"
