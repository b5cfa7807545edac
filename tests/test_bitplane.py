"""kernels/bitplane.cl and bitplane_avx512.cl: ops.bitplane_conv2d, ops.bitplane_conv2d_threshold."""

import numpy as np
import pytest

from espresso_cl import Tensor, ops, reference, registry
from kernel_cases import CONV_CASES, choice_pm1, conv_ids, conv_shapes, to_bits

# Results must be bit-exact, under every tuning profile (``profiled_runtime``).
#
# The bit-plane kernel reads 8 planes per tap: CONV_CASES' channels on smaller images.
BITPLANE_CASES = [case[:1] + (min(case[1], 5), min(case[2], 4)) + case[3:] for case in CONV_CASES]


def _uint8(rng, shape):
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    flat = x.reshape(-1)
    flat[::7] = 0  # the extremes, often: every plane clear, every plane set
    flat[3::7] = 255
    return x


@pytest.mark.parametrize("case", BITPLANE_CASES, ids=conv_ids(BITPLANE_CASES))
def test_bitplane_conv2d_matches_reference(profiled_runtime, rng, case):
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = _uint8(rng, x_shape), choice_pm1(rng, w_shape)
    image = Tensor.from_numpy(profiled_runtime, x, "uint8")
    out = ops.bitplane_conv2d(image, to_bits(profiled_runtime, w), stride, padding)
    expected = reference.conv2d(x, w, stride, padding, 0)
    assert out.kind == "int32" and out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("n, features, units", [(1, 784, 37), (3, 100, 5), (5, 784, 40)])
def test_bitplane_dense_is_the_1x1_case(profiled_runtime, rng, n, features, units):
    # The MNIST MLP's first layer: flattened 8-bit images against +-1 rows of weights.
    x, w = _uint8(rng, (n, features)), choice_pm1(rng, (units, features))
    image = Tensor.from_numpy(profiled_runtime, x.reshape(n, 1, 1, features), "uint8")
    out = ops.bitplane_conv2d(image, to_bits(profiled_runtime, w.reshape(units, 1, 1, features)), 1, "valid")
    expected = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(out.numpy().reshape(n, units), expected)


# bitplane_conv2d_threshold (every profile: AVX-512 blocks, or the tiled kernel packing whole
# words per work-group): the bit-plane layer with the folded batch-norm + sign in its launch, packed. OC around 32 / 64 (the row's last word partly used, and the pad
# word when ceil(OC / 32) is odd), dense (1x1 on 1x1 images) and 3x3 'same' windows, batch 1
# and odd batches, a stride.
BITPLANE_THRESHOLD_CASES = [
    (1, 1, 1, 784, 1, 1, 1, 1, "valid"),
    (3, 1, 1, 100, 31, 1, 1, 1, "valid"),
    (1, 1, 1, 784, 33, 1, 1, 1, "valid"),
    (5, 1, 1, 65, 70, 1, 1, 1, "valid"),
    (1, 1, 1, 784, 128, 1, 1, 1, "valid"),
    (1, 5, 4, 3, 1, 3, 3, 1, "same"),
    (3, 5, 4, 3, 31, 3, 3, 1, "same"),
    (1, 6, 5, 3, 33, 3, 3, 1, "same"),
    (3, 5, 4, 1, 70, 3, 3, 2, "same"),
    (1, 4, 4, 3, 128, 3, 3, 1, "same"),
]


def _check_bitplane_threshold(runtime, x, w, thresh, flip, stride, padding):
    out = ops.bitplane_conv2d_threshold(Tensor.from_numpy(runtime, x, "uint8"), to_bits(runtime, w),
                                        Tensor.from_numpy(runtime, thresh, "int32"),
                                        Tensor.from_numpy(runtime, flip, "int32"), stride, padding)
    expected = reference.threshold_sign(reference.conv2d(x, w, stride, padding, 0), thresh, flip)
    assert out.kind == "bits" and out.shape == expected.shape and out.segment == expected.shape[-1]
    # The words themselves, pad bits and pad words included.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("case", BITPLANE_THRESHOLD_CASES, ids=conv_ids(BITPLANE_THRESHOLD_CASES))
def test_bitplane_conv2d_threshold(profiled_runtime, rng, case):
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = _uint8(rng, x_shape), choice_pm1(rng, w_shape)
    acc = reference.conv2d(x, w, stride, padding, 0).reshape(-1, w_shape[0])
    oc = w_shape[0]
    # A third of the channels tie with an accumulator, some always / never pass, random flips.
    bound = int(np.abs(acc).max()) + 2
    thresh = rng.integers(-bound, bound + 1, size=oc).astype(np.int32)
    tied = rng.random(oc) < 1 / 3
    thresh[tied] = acc[rng.integers(0, acc.shape[0], size=oc), np.arange(oc)][tied]
    thresh[: min(oc, 2)] = [-bound, bound][: min(oc, 2)]
    flip = rng.integers(0, 2, size=oc).astype(np.int32)
    _check_bitplane_threshold(profiled_runtime, x, w, thresh, flip, stride, padding)


@pytest.mark.parametrize("flip", [0, 1], ids=["ge", "le"])
@pytest.mark.parametrize("case", [BITPLANE_THRESHOLD_CASES[3], BITPLANE_THRESHOLD_CASES[8]],
                         ids=conv_ids([BITPLANE_THRESHOLD_CASES[3], BITPLANE_THRESHOLD_CASES[8]]))
def test_bitplane_conv2d_threshold_ties_one_way(profiled_runtime, rng, case, flip):
    # Every channel flipped (or none), thresholds on the accumulators of the first pixel: it
    # passes everywhere, the other pixels by their side of it.
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = _uint8(rng, x_shape), choice_pm1(rng, w_shape)
    thresh = reference.conv2d(x, w, stride, padding, 0).reshape(-1, w_shape[0])[0].astype(np.int32)
    _check_bitplane_threshold(profiled_runtime, x, w, thresh, np.full(w_shape[0], flip, np.int32),
                              stride, padding)


def test_bitplane_conv2d_threshold_checks_its_thresholds(runtime, rng):
    x = Tensor.from_numpy(runtime, _uint8(rng, (1, 1, 1, 10)), "uint8")
    w = to_bits(runtime, choice_pm1(rng, (5, 1, 1, 10)))
    t = Tensor.from_numpy(runtime, np.zeros(5, np.int32), "int32")
    with pytest.raises(ValueError, match="thresh and flip of shape"):
        ops.bitplane_conv2d_threshold(x, w, t, Tensor.from_numpy(runtime, np.zeros(4, np.int32), "int32"),
                                      1, "valid")


@pytest.mark.parametrize("rows_first", [False, True], ids=["columns-first", "rows-first"])
def test_blocks_grid_in_either_order(profiled_runtime, rng, monkeypatch, rows_first):
    # As test_bgemm.py's: the AVX-512 bit-plane kernels take the order the launcher gives.
    monkeypatch.setattr(registry, "rows_first", lambda rows, cols: rows_first)
    x_shape, w_shape, stride, padding = conv_shapes((3, 5, 4, 70, 37, 3, 3, 1, "same"))
    x, w = _uint8(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bitplane_conv2d(Tensor.from_numpy(profiled_runtime, x, "uint8"), to_bits(profiled_runtime, w),
                              stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.conv2d(x, w, stride, padding, 0))
    thresh = rng.integers(-500, 500, size=w_shape[0]).astype(np.int32)
    flip = rng.integers(0, 2, size=w_shape[0]).astype(np.int32)
    _check_bitplane_threshold(profiled_runtime, x, w, thresh, flip, stride, padding)
