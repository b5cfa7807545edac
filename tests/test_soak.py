"""Memory under long runs (issue 12): RSS stays flat over many batch-1 calls, and bounded over
calls at varying batch sizes (which once kept about 1.2 GB: one idle buffer per exact size)."""

import numpy as np
import pytest

from espresso_cl import io


def rss_mib() -> float:
    """This process's resident memory now (not its peak), MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


@pytest.fixture(scope="module")
def model():
    return io.load(io.shipped_model("mnist_cnn"))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(12).integers(0, 256, (600, 28, 28, 1), dtype=np.uint8)


@pytest.mark.once
def test_ten_thousand_batch_1_calls_keep_memory_flat(model, images):
    for i in range(500):  # warm: programs, pool, allocator
        model.predict(images[i:i + 1])
    before = rss_mib()
    for i in range(10_000):
        model.predict(images[i % 600:i % 600 + 1])
    growth = rss_mib() - before
    assert growth < 20, f"RSS grew {growth:.1f} MiB over 10,000 batch-1 calls"


@pytest.mark.once
def test_varying_batch_sizes_stay_within_300_mb_of_the_steady_state(model, images):
    for _ in range(3):
        model.predict(images)  # the steady state: the largest batch, warm
    steady = rss_mib()
    sizes = np.random.default_rng(4).integers(1, len(images) + 1, 300)
    peak = steady
    for n in sizes:
        model.predict(images[:n])
        peak = max(peak, rss_mib())
    assert peak - steady < 300, f"RSS rose {peak - steady:.0f} MiB above the steady {steady:.0f} MiB"
    model.release_memory()
    assert model.runtime.buffers.idle_bytes == 0
    assert rss_mib() - steady < 100, "release_memory gave back less than the pool held"
