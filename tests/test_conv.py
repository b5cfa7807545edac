"""Convolution kernels (kernels/bconv2d.cl, fconv2d.cl, bitplane.cl) against the NumPy reference.

Binary and bit-plane results must be bit-exact. float32 results are compared with
rtol 1e-5 and atol 1e-5 * sqrt(K) for K = KH * KW * C products of values in [-1, 1]:
float32 rounding of a K-term sum grows like sqrt(K), and 1e-5 is about 100 float32 epsilons.
Every test runs once per tuning profile (``profiled_runtime``), so the GPU's local-memory
tiles and the CPU's 64-bit words both meet every shape.
"""

import numpy as np
import pytest

from espresso_cl import Tensor, ops, reference, registry

# (N, H, W, C, OC, KH, KW, stride, padding): channel counts on both sides of 32 and 64 and
# none a multiple of them but one, odd OC, batch 1 and odd batches, H != W, 1x1 to 5x5 kernels
# and a non-square one, a window as large as the image, 'same' windows wider than the image.
CASES = [
    (1, 5, 7, 1, 3, 3, 3, 1, "same"),
    (3, 6, 5, 3, 5, 3, 3, 2, "same"),
    (2, 7, 9, 31, 7, 1, 1, 1, "valid"),
    (1, 9, 6, 33, 9, 5, 5, 1, "same"),
    (3, 8, 7, 65, 11, 3, 3, 2, "valid"),
    (2, 10, 7, 100, 13, 2, 3, 1, "same"),
    (1, 7, 6, 130, 37, 3, 3, 1, "same"),
    (5, 4, 3, 64, 17, 5, 5, 2, "same"),
    (1, 3, 4, 128, 1, 3, 4, 1, "valid"),
    (2, 6, 6, 17, 40, 3, 2, 2, "same"),
]
# The same windows for the kernels that cost more per tap under the (slow) Oclgrind simulator.
# The float kernel packs nothing, so channel counts near 32 and 64 mean nothing to it, while its
# K axis is 32 times as long as a packed one: few channels.
# Window rows of KW * C = 3 to 25 floats meet the CPU profile's 8-float vectors with tails of
# 1 to 7 or nothing but a tail; the extra case has rows of 24 (whole vectors, no tail).
FLOAT_CASES = [case[:3] + (min(case[3], 5),) + case[4:] for case in CASES] + [
    (2, 5, 6, 8, 9, 3, 3, 1, "same"),
]
# The bit-plane kernel reads 8 planes per tap: the same channels on smaller images.
BITPLANE_CASES = [case[:1] + (min(case[1], 5), min(case[2], 4)) + case[3:] for case in CASES]


def _case_ids(cases):
    return ["x".join(map(str, case[:7])) + f"-s{case[7]}-{case[8]}" for case in cases]


def _pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def _bits(runtime, values):
    return Tensor.from_numpy(runtime, reference.pack_bits(values), "bits", shape=values.shape)


def _float(runtime, values):
    return Tensor.from_numpy(runtime, values, "float32")


def _shapes(case):
    n, h, w, c, oc, kh, kw, stride, padding = case
    return (n, h, w, c), (oc, kh, kw, c), stride, padding


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", CASES, ids=_case_ids(CASES))
def test_bconv2d_matches_reference(profiled_runtime, rng, case, pad_value):
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = _pm1(rng, x_shape), _pm1(rng, w_shape)
    out = ops.bconv2d(_bits(profiled_runtime, x), _bits(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1 if pad_value == "one" else 0)
    assert out.kind == "int32" and out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", FLOAT_CASES, ids=_case_ids(FLOAT_CASES))
def test_fconv2d_matches_reference(profiled_runtime, rng, case, pad_value):
    x_shape, w_shape, stride, padding = _shapes(case)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    out = ops.fconv2d(_float(profiled_runtime, x), _float(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1.0 if pad_value == "one" else 0.0)
    assert out.kind == "float32" and out.shape == expected.shape
    terms = w_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * np.sqrt(terms))


@pytest.mark.parametrize("pad_value", ["zero", "one"])
def test_fconv2d_on_pm1_equals_bconv2d(profiled_runtime, rng, pad_value):
    # The float mode of a binary network must give the binary kernel's integers exactly
    # (float32 holds every such sum exactly), padding included.
    x_shape, w_shape, stride, padding = _shapes((1, 4, 3, 5, 7, 3, 3, 1, "same"))
    x, w = _pm1(rng, x_shape), _pm1(rng, w_shape)
    binary = ops.bconv2d(_bits(profiled_runtime, x), _bits(profiled_runtime, w), stride, padding, pad_value)
    floats = ops.fconv2d(_float(profiled_runtime, x.astype(np.float32)),
                         _float(profiled_runtime, w.astype(np.float32)), stride, padding, pad_value)
    np.testing.assert_array_equal(floats.numpy(), binary.numpy().astype(np.float32))


def test_bconv2d_zero_padding_adds_nothing(profiled_runtime):
    # All +1 against all +1: each output counts exactly its valid taps times C, so a padded
    # tap read as +1 or -1 instead of 0 shows at every border pixel.
    c, k = 65, 3
    x, w = np.ones((1, 4, 5, c), np.int8), np.ones((2, k, k, c), np.int8)
    out = ops.bconv2d(_bits(profiled_runtime, x), _bits(profiled_runtime, w), 1, "same").numpy()
    rows = np.array([2, 3, 3, 2])[:, None]
    cols = np.array([2, 3, 3, 3, 2])[None, :]
    np.testing.assert_array_equal(out[0, :, :, 0], rows * cols * c)
    np.testing.assert_array_equal(out[0, :, :, 1], rows * cols * c)


def _uint8(rng, shape):
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    flat = x.reshape(-1)
    flat[::7] = 0  # the extremes, often: every plane clear, every plane set
    flat[3::7] = 255
    return x


@pytest.mark.parametrize("case", BITPLANE_CASES, ids=_case_ids(BITPLANE_CASES))
def test_bitplane_conv2d_matches_reference(profiled_runtime, rng, case):
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = _uint8(rng, x_shape), _pm1(rng, w_shape)
    image = Tensor.from_numpy(profiled_runtime, x, "uint8")
    out = ops.bitplane_conv2d(image, _bits(profiled_runtime, w), stride, padding)
    expected = reference.conv2d(x, w, stride, padding, 0)
    assert out.kind == "int32" and out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("n, features, units", [(1, 784, 37), (3, 100, 5), (5, 784, 40)])
def test_bitplane_dense_is_the_1x1_case(profiled_runtime, rng, n, features, units):
    # The MNIST MLP's first layer: flattened 8-bit images against +-1 rows of weights.
    x, w = _uint8(rng, (n, features)), _pm1(rng, (units, features))
    image = Tensor.from_numpy(profiled_runtime, x.reshape(n, 1, 1, features), "uint8")
    out = ops.bitplane_conv2d(image, _bits(profiled_runtime, w.reshape(units, 1, 1, features)), 1, "valid")
    expected = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(out.numpy().reshape(n, units), expected)


def test_conv_rejects_wrong_kinds_and_shapes(runtime, rng):
    bits_x = _bits(runtime, _pm1(rng, (1, 4, 4, 5)))
    bits_w = _bits(runtime, _pm1(rng, (3, 3, 3, 5)))
    float_x = _float(runtime, np.zeros((1, 4, 4, 5), np.float32))
    with pytest.raises(TypeError, match="bconv2d takes packed bits"):
        ops.bconv2d(float_x, bits_w, 1, "same")
    with pytest.raises(TypeError, match="fconv2d takes float32"):
        ops.fconv2d(float_x, bits_w, 1, "same")
    with pytest.raises(TypeError, match="bitplane_conv2d takes uint8"):
        ops.bitplane_conv2d(bits_x, bits_w, 1, "same")
    with pytest.raises(ValueError, match="channels"):
        ops.bconv2d(bits_x, _bits(runtime, _pm1(rng, (3, 3, 3, 6))), 1, "same")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ops.bconv2d(bits_x.reshape((4, 4, 5)), bits_w, 1, "same")
    with pytest.raises(ValueError, match="pad_value"):
        ops.bconv2d(bits_x, bits_w, 1, "same", pad_value="minus")
    with pytest.raises(ValueError, match="padding"):
        ops.bconv2d(bits_x, bits_w, 1, "full")
    with pytest.raises(ValueError, match="does not fit"):
        ops.bconv2d(bits_x, _bits(runtime, _pm1(rng, (3, 5, 5, 5))), 1, "valid")
    with pytest.raises(ValueError, match="segment"):
        # Two 64-channel pixels flattened into one row of 128: not one pixel per row.
        flat = _bits(runtime, _pm1(rng, (1, 1, 1, 128))).reshape((1, 1, 1, 128), segment=64)
        ops.bconv2d(flat, _bits(runtime, _pm1(rng, (2, 1, 1, 128))), 1, "valid")


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", CASES[:8], ids=_case_ids(CASES[:8]))
def test_bconv2d_in_chunks(profiled_runtime, rng, monkeypatch, case, pad_value):
    # Window rows (im2col profiles) held 3 at a time: chunks that end mid-row, mid-image and
    # a short last chunk; the border fix-up runs once over the whole output.
    from espresso_cl.ops import conv

    x_shape, w_shape, stride, padding = _shapes(case)
    taps, rw = w_shape[1] * w_shape[2], 2 * -(-w_shape[3] // 64)
    monkeypatch.setattr(conv, "IM2COL_BYTES", 3 * taps * rw * 4)
    x, w = _pm1(rng, x_shape), _pm1(rng, w_shape)
    out = ops.bconv2d(_bits(profiled_runtime, x), _bits(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1 if pad_value == "one" else 0)
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("case", [
    (1, 1, 1, 70, 3, 3, 3, 1, "same"),      # one pixel: every tap but the centre is padding
    (2, 2, 9, 64, 5, 3, 3, 2, "same"),      # stride 2, padding on one side only
    (1, 5, 5, 32, 4, 3, 3, 2, "same"),      # stride 2, padding on both sides
    (3, 11, 4, 96, 6, 7, 3, 1, "same"),     # rows of border on both sides, tall window
    (1, 6, 13, 200, 3, 3, 5, 3, "same"),    # stride 3, wide window
    (2, 9, 9, 129, 33, 4, 4, 2, "same"),    # even window: padding uneven top / bottom
])
def test_bconv2d_zero_padding_borders(profiled_runtime, rng, case):
    # Border classes of every kind: the zero-padding correction per padded tap must be exact.
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = _pm1(rng, x_shape), _pm1(rng, w_shape)
    out = ops.bconv2d(_bits(profiled_runtime, x), _bits(profiled_runtime, w), stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.conv2d(x, w, stride, padding, 0))


# bitplane_conv2d_threshold (the AVX-512 profile): the bit-plane layer with the folded batch-norm
# + sign in its launch, packed. OC around 32 / 64 (the row's last word partly used, and the pad
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


def _skip_unless_bitplane_threshold(runtime):
    if not registry.can_run("bitplane_conv2d_threshold", runtime.profile):
        pytest.skip(f"profile {runtime.profile.name}: no AVX-512 kernels, so no fused bit-plane threshold")


def _check_bitplane_threshold(runtime, x, w, thresh, flip, stride, padding):
    out = ops.bitplane_conv2d_threshold(Tensor.from_numpy(runtime, x, "uint8"), _bits(runtime, w),
                                        Tensor.from_numpy(runtime, thresh, "int32"),
                                        Tensor.from_numpy(runtime, flip, "int32"), stride, padding)
    expected = reference.threshold_sign(reference.conv2d(x, w, stride, padding, 0), thresh, flip)
    assert out.kind == "bits" and out.shape == expected.shape and out.segment == expected.shape[-1]
    # The words themselves, pad bits and pad words included.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("case", BITPLANE_THRESHOLD_CASES, ids=_case_ids(BITPLANE_THRESHOLD_CASES))
def test_bitplane_conv2d_threshold(profiled_runtime, rng, case):
    _skip_unless_bitplane_threshold(profiled_runtime)
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = _uint8(rng, x_shape), _pm1(rng, w_shape)
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
                         ids=_case_ids([BITPLANE_THRESHOLD_CASES[3], BITPLANE_THRESHOLD_CASES[8]]))
def test_bitplane_conv2d_threshold_ties_one_way(profiled_runtime, rng, case, flip):
    # Every channel flipped (or none), thresholds on the accumulators of the first pixel: it
    # passes everywhere, the other pixels by their side of it.
    _skip_unless_bitplane_threshold(profiled_runtime)
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = _uint8(rng, x_shape), _pm1(rng, w_shape)
    thresh = reference.conv2d(x, w, stride, padding, 0).reshape(-1, w_shape[0])[0].astype(np.int32)
    _check_bitplane_threshold(profiled_runtime, x, w, thresh, np.full(w_shape[0], flip, np.int32),
                              stride, padding)


def test_bitplane_conv2d_threshold_needs_its_profile(runtime, rng):
    x = Tensor.from_numpy(runtime, _uint8(rng, (1, 1, 1, 10)), "uint8")
    w = _bits(runtime, _pm1(rng, (5, 1, 1, 10)))
    t = Tensor.from_numpy(runtime, np.zeros(5, np.int32), "int32")
    if registry.can_run("bitplane_conv2d_threshold", runtime.profile):
        with pytest.raises(ValueError, match="thresh and flip of shape"):
            ops.bitplane_conv2d_threshold(x, w, t, Tensor.from_numpy(runtime, np.zeros(4, np.int32), "int32"),
                                          1, "valid")
    else:
        with pytest.raises(ValueError, match="AVX-512 profile"):
            ops.bitplane_conv2d_threshold(x, w, t, t, 1, "valid")
