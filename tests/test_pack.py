"""kernels/pack.cl: sign packing, unpacking and folded batch-norm thresholds, bit-exact with the reference.

Channel counts straddle the 32-bit word and the 64-bit row alignment (1, 31, 33, 63, 65, ...),
so pad bits and partial words are always exercised.
"""

import numpy as np
import pytest

from espresso_cl import ops, reference
from espresso_cl.tensor import Tensor

CHANNELS = [1, 31, 32, 33, 63, 64, 65, 100, 129]
ROWS = [1, 3, 7]


def _floats(rng, shape):
    """Random floats with exact zeros of both signs sprinkled in: sign(0) = sign(-0) = +1."""
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[rng.integers(0, x.size, size=max(1, x.size // 8))] = 0.0
    x.flat[rng.integers(0, x.size, size=max(1, x.size // 8))] = -0.0
    return x


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("rows", ROWS)
def test_pack_sign(profiled_runtime, rng, rows, channels):
    x = _floats(rng, (rows, channels))
    out = ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32"))
    assert out.kind == "bits" and out.shape == x.shape
    # Word equality also pins the pad bits to 0, which the popcount identity relies on.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(reference.sign(x)))


def test_pack_sign_of_signed_zeros_is_plus_one(profiled_runtime):
    # The smallest normal floats, not subnormals: a device may flush subnormals to zero.
    tiny = np.finfo(np.float32).tiny
    x = np.array([[0.0, -0.0, tiny, -tiny, np.inf, -np.inf]], np.float32)
    bits = ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32")).numpy()
    np.testing.assert_array_equal(reference.unpack_bits(bits, x.shape[1]), [[1, 1, 1, -1, 1, -1]])


def test_pack_sign_of_an_image(profiled_runtime, rng):
    x = _floats(rng, (2, 3, 5, 33))
    out = ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32"))
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(reference.sign(x)))


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("rows", ROWS)
def test_unpack_sign(profiled_runtime, rng, rows, channels):
    values = reference.sign(rng.standard_normal((rows, channels)))
    bits = Tensor.from_numpy(profiled_runtime, reference.pack_bits(values), "bits", shape=values.shape)
    out = ops.unpack_sign(bits)
    assert out.kind == "float32" and out.shape == values.shape
    np.testing.assert_array_equal(out.numpy(), values.astype(np.float32))


def test_pack_unpack_round_trip(profiled_runtime, rng):
    x = _floats(rng, (5, 65))
    back = ops.unpack_sign(ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32")))
    np.testing.assert_array_equal(back.numpy(), reference.sign(x).astype(np.float32))


def _threshold_case(rng, rows, channels, acc_dtype):
    """Accumulators, thresholds and flips where many accumulators sit exactly on their threshold."""
    acc = rng.integers(-40, 41, size=(rows, channels)).astype(np.int32)
    thresh = rng.integers(-45, 46, size=channels).astype(np.int32)
    # Ties: a third of the channels take a threshold equal to an accumulator of that channel.
    tied = rng.random(channels) < 1 / 3
    thresh[tied] = acc[rng.integers(0, rows), tied]
    flip = (rng.random(channels) < 0.5).astype(np.int32)
    if acc_dtype == np.float32:
        # Half-integers lie strictly between thresholds; whole numbers still tie exactly.
        acc = (acc + np.where(rng.random(acc.shape) < 0.3, 0.5, 0.0)).astype(np.float32)
    return acc, thresh, flip


def _expected_signs(acc, thresh, flip):
    passes = np.where(flip.astype(bool), acc <= thresh, acc >= thresh)
    return np.where(passes, 1, -1).astype(np.int8)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "float"])
@pytest.mark.parametrize("acc_kind", ["int32", "float32"])
@pytest.mark.parametrize("channels", [1, 31, 33, 64, 65, 129])
@pytest.mark.parametrize("rows", [1, 7])
def test_threshold(profiled_runtime, rng, rows, channels, acc_kind, packed):
    rt = profiled_runtime
    acc, thresh, flip = _threshold_case(rng, rows, channels, np.dtype(acc_kind).type)
    out = ops.threshold(Tensor.from_numpy(rt, acc, acc_kind), Tensor.from_numpy(rt, thresh, "int32"),
                        Tensor.from_numpy(rt, flip, "int32"), packed=packed)
    expected = _expected_signs(acc, thresh, flip)
    assert out.shape == acc.shape
    if packed:
        assert out.kind == "bits"
        np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))
    else:
        assert out.kind == "float32"
        np.testing.assert_array_equal(out.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "float"])
def test_threshold_ties_and_flips(profiled_runtime, packed):
    rt = profiled_runtime
    # Channel pairs (plain, flipped) at thresholds -3 and 5; rows below, on and above each.
    thresh = np.array([-3, -3, 5, 5], np.int32)
    flip = np.array([0, 1, 0, 1], np.int32)
    acc = np.array([[-4, -4, 4, 4], [-3, -3, 5, 5], [-2, -2, 6, 6]], np.int32)
    expected = np.array([[-1, 1, -1, 1], [1, 1, 1, 1], [1, -1, 1, -1]], np.int8)
    out = ops.threshold(Tensor.from_numpy(rt, acc, "int32"), Tensor.from_numpy(rt, thresh, "int32"),
                        Tensor.from_numpy(rt, flip, "int32"), packed=packed)
    got = reference.unpack_bits(out.numpy(), 4) if packed else out.numpy()
    np.testing.assert_array_equal(got, expected)


def test_threshold_of_an_image(profiled_runtime, rng):
    rt = profiled_runtime
    acc, thresh, flip = _threshold_case(rng, 2 * 3 * 5, 33, np.int32)
    acc = acc.reshape(2, 3, 5, 33)
    out = ops.threshold(Tensor.from_numpy(rt, acc, "int32"), Tensor.from_numpy(rt, thresh, "int32"),
                        Tensor.from_numpy(rt, flip, "int32"))
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(_expected_signs(acc, thresh, flip)))
