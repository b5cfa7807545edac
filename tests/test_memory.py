"""The buffer pool (espresso_cl/memory.py) and the tensor views that must keep buffers alive."""

import gc
import sys

import numpy as np
import pyopencl as cl
import pytest

from espresso_cl import ops, reference
from espresso_cl.device import DeviceError
from espresso_cl.memory import BufferPool, DeviceMemoryError, size_class
from espresso_cl.runtime import Runtime
from espresso_cl.tensor import Tensor


@pytest.fixture
def pooled(runtime):
    """A runtime of its own whose pool reuses buffers (off on Oclgrind by default)."""
    rt = Runtime(runtime.device)
    rt.buffers = BufferPool(rt.context, rt.queue, rt.traits, reuse=True, huge_pages=False, limit_bytes=1 << 20)
    return rt


def test_a_dead_tensors_buffer_is_reused_for_the_same_size(pooled):
    first = Tensor(pooled, (7, 9), "int32")
    buffer = first.buffer
    del first
    gc.collect()
    assert pooled.buffers.idle_bytes == size_class(7 * 9 * 4) == 256
    second = Tensor(pooled, (9, 7), "int32")  # the same bytes, another shape
    assert second.buffer == buffer
    assert pooled.buffers.idle_bytes == 0
    third = Tensor(pooled, (7, 10), "int32")  # 280 bytes: the next size class
    assert third.buffer != buffer


def test_a_view_keeps_its_owners_buffer_out_of_the_pool(pooled):
    owner = Tensor(pooled, (4, 64), "bits")
    view = owner.reshape((2, 128))
    part = owner.prefix((1, 64))
    del owner
    gc.collect()
    assert pooled.buffers.idle_bytes == 0
    del view, part
    gc.collect()
    assert pooled.buffers.idle_bytes == size_class(4 * 64 // 8)


def test_prefix_cannot_be_larger_than_the_buffer(pooled):
    t = Tensor(pooled, (3, 5), "float32")
    with pytest.raises(ValueError, match="cannot view"):
        t.prefix((4, 5))
    with pytest.raises(ValueError, match="cannot view"):
        t.reshape((2, 5))


def test_size_classes_cover_a_request_with_at_most_an_eighth_more():
    sizes = [1, 255, 256, 257, 1000, 1023, 1024, 1025, 4097, 10**6, 3 * 2**30 + 7]
    for n in sizes + list(range(1, 5000, 7)):
        assert n <= size_class(n) <= max(256, n + n // 8)
    classes = [size_class(n) for n in range(1, 100_000, 3)]
    assert classes == sorted(classes)
    assert len(set(size_class(n) for n in range(2**15 + 1, 2**16 + 1))) == 8  # an octave: 8 classes


def test_batches_of_varying_sizes_reuse_each_others_buffers(pooled):
    # Issue 12: exact-size reuse kept one idle buffer per batch size (1.2 GB after 400 calls).
    first = Tensor(pooled, (1000, 30), "float32")
    buffer = first.buffer
    del first
    gc.collect()
    assert Tensor(pooled, (1010, 30), "float32").buffer == buffer


def test_the_pool_keeps_the_most_recently_returned_up_to_its_limit(pooled):
    older, newer = (Tensor(pooled, (256, 1024), "float32") for _ in range(2))  # 1 MiB each; limit 1 MiB
    newest = newer.buffer
    del older
    del newer
    gc.collect()
    assert pooled.buffers.idle_bytes == 1 << 20
    assert Tensor(pooled, (256, 1024), "float32").buffer == newest


def test_release_memory_empties_the_pool(pooled):
    tensors = [Tensor(pooled, (n, 64), "float32") for n in (10, 100, 1000)]
    del tensors
    gc.collect()
    assert pooled.buffers.idle_bytes > 0
    pooled.release_memory()
    assert pooled.buffers.idle_bytes == 0


def test_a_buffer_above_the_device_limit_is_a_library_error(pooled):
    # Issue 12: a raw pyopencl INVALID_BUFFER_SIZE, then an AttributeError from Tensor.__del__.
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        rows = pooled.traits.max_buffer_bytes // 4 + 1
        with pytest.raises(DeviceMemoryError, match=f"{4 * rows:,} bytes.*largest buffer is "
                                                    f"{pooled.traits.max_buffer_bytes:,}"):
            Tensor(pooled, (rows,), "float32")
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []
    assert isinstance(DeviceMemoryError("x"), DeviceError)


def test_reused_buffers_give_exact_results_call_after_call(pooled, rng):
    # Every call frees its output before the next allocates one of the same size, so later
    # calls write into buffers that held earlier results: stale values must not show.
    for m, n, k in ((3, 33, 70), (3, 33, 70), (5, 33, 70), (3, 33, 70)):
        a = np.where(rng.random((m, k)) < 0.5, -1, 1)
        b = np.where(rng.random((n, k)) < 0.5, -1, 1)
        ta = Tensor.from_numpy(pooled, reference.pack_bits(a), "bits", shape=a.shape)
        tb = Tensor.from_numpy(pooled, reference.pack_bits(b), "bits", shape=b.shape)
        np.testing.assert_array_equal(ops.bgemm(ta, tb).numpy(), a @ b.T)


def test_uploaded_tensors_are_not_pooled(pooled):
    t = Tensor.from_numpy(pooled, np.zeros((4, 4), np.float32), "float32")
    del t
    gc.collect()
    assert pooled.buffers.idle_bytes == 0


def test_the_default_pool_reuses_on_real_devices_only(runtime):
    rt = Runtime(runtime.device)
    assert rt.buffers.reuse == (rt.kind in ("cpu", "gpu"))
    assert isinstance(rt.buffers.take(64), cl.Buffer)
