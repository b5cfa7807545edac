"""The buffer pool (espresso_cl/memory.py) and the tensor views that must keep buffers alive."""

import gc

import numpy as np
import pyopencl as cl
import pytest

from espresso_cl import ops, reference
from espresso_cl.memory import BufferPool
from espresso_cl.runtime import Runtime
from espresso_cl.tensor import Tensor


@pytest.fixture
def pooled(runtime):
    """A runtime of its own whose pool reuses buffers (off on Oclgrind by default)."""
    rt = Runtime(runtime.device)
    rt.buffers = BufferPool(rt.context, rt.queue, reuse=True, huge_pages=False, limit_bytes=1 << 20)
    return rt


def test_a_dead_tensors_buffer_is_reused_for_the_same_size(pooled):
    first = Tensor(pooled, (7, 9), "int32")
    buffer = first.buffer
    del first
    gc.collect()
    assert pooled.buffers.idle_bytes == 7 * 9 * 4
    second = Tensor(pooled, (9, 7), "int32")  # the same bytes, another shape
    assert second.buffer == buffer
    assert pooled.buffers.idle_bytes == 0
    third = Tensor(pooled, (7, 10), "int32")
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
    assert pooled.buffers.idle_bytes == 4 * 64 // 8


def test_prefix_cannot_be_larger_than_the_buffer(pooled):
    t = Tensor(pooled, (3, 5), "float32")
    with pytest.raises(ValueError, match="cannot view"):
        t.prefix((4, 5))
    with pytest.raises(ValueError, match="cannot view"):
        t.reshape((2, 5))


def test_the_pool_stops_at_its_limit(pooled):
    big = [Tensor(pooled, (256, 1024), "float32") for _ in range(2)]  # 1 MiB each; limit 1 MiB
    del big
    gc.collect()
    assert pooled.buffers.idle_bytes == 1 << 20


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
