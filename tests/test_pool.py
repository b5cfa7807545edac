"""Max-pooling kernels (kernels/pool.cl) against the NumPy reference: bit-exact, and exact for
float32 and int32 (a max selects one of its inputs, so there is no rounding to allow for)."""

import numpy as np
import pytest

from espresso_cl import Tensor, ops, reference

CHANNELS = [1, 5, 31, 33, 64, 65, 100, 130]
# (pool, stride, padding): the CNN's 2x2/2, an overlapping 3x3/2, 'same' windows, non-square
# ones, explicit padding (PyTorch's 3x3/2 padding=1; lopsided).
WINDOWS = [((2, 2), 2, "valid"), ((3, 3), 2, "valid"), ((3, 3), 1, "same"),
           ((3, 3), 2, "same"), ((2, 3), 1, "same"), ((3, 2), 2, "valid"),
           ((3, 3), 2, ((1, 1), (1, 1))), ((2, 2), 2, ((1, 0), (0, 1))), ((3, 2), 1, ((1, 1), (0, 1)))]
# (N, H, W): batch 1 and odd batches, H != W, odd sizes.
IMAGES = [(1, 7, 5), (3, 6, 9), (2, 12, 11)]


def _upload_bits(runtime, values):
    return Tensor.from_numpy(runtime, reference.pack_bits(values), "bits", shape=values.shape)


def _and_channels(rng, mode, channels):
    if mode == "random":
        return rng.random(channels) < 0.5
    return np.full(channels, mode == "all-and")


@pytest.mark.parametrize("mask_mode", ["all-or", "all-and", "random"])
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("channels", CHANNELS)
def test_maxpool_bits_matches_reference(runtime, rng, channels, window, mask_mode):
    pool, stride, padding = window
    n, h, w = IMAGES[channels % len(IMAGES)]
    values = reference.sign(rng.standard_normal((n, h, w, channels)))
    and_channels = _and_channels(rng, mask_mode, channels)
    mask = _upload_bits(runtime, np.where(and_channels, 1, -1))
    out = ops.maxpool_bits(_upload_bits(runtime, values), mask, pool, stride, padding)
    expected = reference.maxpool_bits(values, and_channels, pool, stride, padding)
    assert out.shape == expected.shape
    # Comparing packed words also checks that every pad bit stayed 0.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("value", [1, -1])
def test_maxpool_bits_same_padding_is_ignored(runtime, value):
    # Padding read as +1 would turn an all -1 OR-pool +1 at the border; read as -1 it would
    # turn an all +1 AND-pool -1.
    channels = 65
    values = np.full((1, 5, 7, channels), value, np.int8)
    mask = _upload_bits(runtime, np.full(channels, -value))
    out = ops.maxpool_bits(_upload_bits(runtime, values), mask, 3, 1, "same")
    np.testing.assert_array_equal(reference.unpack_bits(out.numpy(), channels), values)


@pytest.mark.parametrize("kind", ["float32", "int32"])
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("channels", [1, 5, 33, 130])
def test_maxpool_matches_reference(runtime, rng, channels, window, kind):
    pool, stride, padding = window
    n, h, w = IMAGES[channels % len(IMAGES)]
    if kind == "float32":
        x = rng.standard_normal((n, h, w, channels)).astype(np.float32)
    else:
        x = rng.integers(-2**31, 2**31, (n, h, w, channels), dtype=np.int32)
    out = ops.maxpool(Tensor.from_numpy(runtime, x, kind), pool, stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.maxpool(x, pool, stride, padding))


@pytest.mark.parametrize("kind", ["float32", "int32"])
def test_maxpool_same_padding_is_ignored(runtime, kind):
    # All values negative: padding read as 0 would win at the border.
    x = -np.arange(1, 1 + 2 * 5 * 6 * 3).reshape(2, 5, 6, 3).astype(kind)
    out = ops.maxpool(Tensor.from_numpy(runtime, x, kind), (3, 3), 2, "same")
    expected = reference.maxpool(x, 3, 2, "same")
    assert (expected < 0).all()
    np.testing.assert_array_equal(out.numpy(), expected)


def test_maxpool_rejects_bad_inputs(runtime):
    bits = _upload_bits(runtime, np.ones((1, 4, 4, 8), np.int8))
    mask = _upload_bits(runtime, np.ones(8, np.int8))
    floats = Tensor.from_numpy(runtime, np.zeros((1, 4, 4, 8), np.float32), "float32")
    with pytest.raises(TypeError):
        ops.maxpool(bits, 2, 2)
    with pytest.raises(TypeError):
        ops.maxpool_bits(floats, mask, 2, 2)
    with pytest.raises(ValueError):
        ops.maxpool_bits(bits, _upload_bits(runtime, np.ones(9, np.int8)), 2, 2)
    with pytest.raises(ValueError):
        ops.maxpool(floats.reshape((4, 4, 8)), 2, 2)
    with pytest.raises(ValueError):
        ops.maxpool(floats, 5, 1, "valid")
    with pytest.raises(ValueError):
        ops.maxpool(floats, 2, 2, "full")
