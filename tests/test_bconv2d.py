"""kernels/bconv2d.cl, bconv2d_im2col.cl, bconv2d_igemm.cl and bconv2d_cpu.cl: ops.bconv2d."""

import numpy as np
import pytest

from espresso_cl import Tensor, ops, reference
from kernel_cases import CONV_CASES, choice_pm1, conv_ids, conv_shapes, to_bits, to_floats

# Results must be bit-exact. Every test runs once per tuning profile (``profiled_runtime``), so
# the GPU's local-memory tiles and the CPU's 64-bit words both meet every shape.


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids(CONV_CASES))
def test_bconv2d_matches_reference(profiled_runtime, rng, case, pad_value):
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1 if pad_value == "one" else 0)
    assert out.kind == "int32" and out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


def test_bconv2d_zero_padding_adds_nothing(profiled_runtime):
    # All +1 against all +1: each output counts exactly its valid taps times C, so a padded
    # tap read as +1 or -1 instead of 0 shows at every border pixel.
    c, k = 65, 3
    x, w = np.ones((1, 4, 5, c), np.int8), np.ones((2, k, k, c), np.int8)
    out = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), 1, "same").numpy()
    rows = np.array([2, 3, 3, 2])[:, None]
    cols = np.array([2, 3, 3, 3, 2])[None, :]
    np.testing.assert_array_equal(out[0, :, :, 0], rows * cols * c)
    np.testing.assert_array_equal(out[0, :, :, 1], rows * cols * c)


def test_conv_rejects_wrong_kinds_and_shapes(runtime, rng):
    bits_x = to_bits(runtime, choice_pm1(rng, (1, 4, 4, 5)))
    bits_w = to_bits(runtime, choice_pm1(rng, (3, 3, 3, 5)))
    float_x = to_floats(runtime, np.zeros((1, 4, 4, 5), np.float32))
    with pytest.raises(TypeError, match="bconv2d takes packed bits"):
        ops.bconv2d(float_x, bits_w, 1, "same")
    with pytest.raises(TypeError, match="fconv2d takes float32"):
        ops.fconv2d(float_x, bits_w, 1, "same")
    with pytest.raises(TypeError, match="bitplane_conv2d takes uint8"):
        ops.bitplane_conv2d(bits_x, bits_w, 1, "same")
    with pytest.raises(ValueError, match="channels"):
        ops.bconv2d(bits_x, to_bits(runtime, choice_pm1(rng, (3, 3, 3, 6))), 1, "same")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ops.bconv2d(bits_x.reshape((4, 4, 5)), bits_w, 1, "same")
    with pytest.raises(ValueError, match="pad_value"):
        ops.bconv2d(bits_x, bits_w, 1, "same", pad_value="minus")
    with pytest.raises(ValueError, match="padding"):
        ops.bconv2d(bits_x, bits_w, 1, "full")
    with pytest.raises(ValueError, match="does not fit"):
        ops.bconv2d(bits_x, to_bits(runtime, choice_pm1(rng, (3, 5, 5, 5))), 1, "valid")
    with pytest.raises(ValueError, match="segment"):
        # Two 64-channel pixels flattened into one row of 128: not one pixel per row.
        flat = to_bits(runtime, choice_pm1(rng, (1, 1, 1, 128))).reshape((1, 1, 1, 128), segment=64)
        ops.bconv2d(flat, to_bits(runtime, choice_pm1(rng, (2, 1, 1, 128))), 1, "valid")


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", CONV_CASES[:8], ids=conv_ids(CONV_CASES[:8]))
def test_bconv2d_in_chunks(profiled_runtime, rng, monkeypatch, case, pad_value):
    # Window rows (im2col profiles) held 3 at a time: chunks that end mid-row, mid-image and
    # a short last chunk; the border fix-up runs once over the whole output.
    from espresso_cl.ops import conv

    x_shape, w_shape, stride, padding = conv_shapes(case)
    taps, rw = w_shape[1] * w_shape[2], 2 * -(-w_shape[3] // 64)
    monkeypatch.setattr(conv, "IM2COL_BYTES", 3 * taps * rw * 4)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), stride, padding, pad_value)
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
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.conv2d(x, w, stride, padding, 0))


# Larger than one work-group's tile of the GPU profile's implicit GEMM (BM = BN = 64): pixels
# over several row tiles that cross image boundaries, OC past 64, windows of many K tiles (up to
# 9 taps x 5 words), 1 and 70 channels, stride 1 and 2, batch 1 and odd.
LARGE_CONV_CASES = [
    (3, 11, 13, 70, 67, 3, 3, 2, "same"),
    (1, 12, 9, 1, 65, 3, 3, 1, "same"),
    (5, 7, 6, 150, 33, 3, 3, 1, ((1, 1), (1, 1))),
    (1, 16, 16, 64, 70, 1, 1, 1, "valid"),
]


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", LARGE_CONV_CASES, ids=conv_ids(LARGE_CONV_CASES))
def test_bconv2d_over_several_tiles(profiled_runtime, rng, case, pad_value):
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1 if pad_value == "one" else 0)
    np.testing.assert_array_equal(out.numpy(), expected)


THRESHOLD_CONV_CASES = CONV_CASES + LARGE_CONV_CASES + [(2, 5, 5, 40, 64, 3, 3, 1, "same"),
                                                         (1, 6, 7, 33, 96, 3, 3, 2, "same")]


# bconv2d_threshold: the convolution, the folded batch-norm + sign and a max-pool of the bits
# around it in one launch, where the profile has it (registry.can_run). The pools: none;
# 2x2 stride 2 (the CNN's), before the sign (AND in flipped channels) and after it (OR);
# 3x3 stride 2 'same' (overlapping windows, clipped at the edges); 1x2 stride 1 (uneven window).
POOLS = [None, ((2, 2), 2, "valid"), ((3, 3), 2, "same"), ((1, 2), 1, "valid")]


def _skip_unless_fused_conv(runtime, pad_value):
    from espresso_cl import registry

    if not registry.can_run("bconv2d_threshold", runtime.profile, pad_value):
        pytest.skip(f"profile {runtime.profile.name}: no fused convolution with {pad_value} padding")


def _conv_thresholds(rng, acc):
    """Thresholds tied with accumulators for a third of the channels, some past either end
    of the range (always / never pass), and random flips."""
    oc = acc.shape[-1]
    flat = acc.reshape(-1, oc)
    k = int(np.abs(flat).max()) + 1
    thresh = rng.integers(-k, k + 1, size=oc).astype(np.int32)
    tied = rng.random(oc) < 1 / 3
    thresh[tied] = flat[rng.integers(0, len(flat), size=oc), np.arange(oc)][tied]
    ends = rng.random(oc) < 0.1
    thresh[ends] = np.array([-k - 1, k + 1], np.int32)[rng.integers(0, 2, size=ends.sum())]
    return thresh, (rng.random(oc) < 0.5).astype(np.int32)


def _check_conv_threshold(runtime, rng, x, w, stride, padding, pad_value, pool, and_flips):
    acc = reference.conv2d(x, w, stride, padding, 1 if pad_value == "one" else 0)
    thresh, flip = _conv_thresholds(rng, acc)
    expected = reference.threshold_sign(acc, thresh, flip)
    if pool is not None:
        (kh, kw), pstride, ppadding = pool
        if acc.shape[1] < kh or acc.shape[2] < kw:
            pytest.skip("the conv output is smaller than the pool window")
        and_channels = flip.astype(bool) if and_flips else np.zeros(len(flip), bool)
        expected = reference.maxpool_bits(expected, and_channels, (kh, kw), pstride, ppadding)
    out = ops.bconv2d_threshold(to_bits(runtime, x), to_bits(runtime, w),
                                Tensor.from_numpy(runtime, thresh, "int32"),
                                Tensor.from_numpy(runtime, flip, "int32"),
                                stride, padding, pad_value, pool, and_flips)
    assert out.kind == "bits" and out.shape == expected.shape and out.segment == expected.shape[-1]
    # The words themselves, pad bits and pad words included.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", THRESHOLD_CONV_CASES, ids=conv_ids(THRESHOLD_CONV_CASES))
def test_bconv2d_threshold_matches_reference(profiled_runtime, rng, case, pad_value):
    _skip_unless_fused_conv(profiled_runtime, pad_value)
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    _check_conv_threshold(profiled_runtime, rng, x, w, stride, padding, pad_value, None, False)


@pytest.mark.parametrize("and_flips", [True, False], ids=["pool-then-sign", "sign-then-pool"])
@pytest.mark.parametrize("pool", POOLS[1:], ids=["2x2s2", "3x3s2same", "1x2s1"])
@pytest.mark.parametrize("case", [
    (1, 8, 8, 64, 32, 3, 3, 1, "same"),     # the CNN's shape: one word of channels, batch 1
    (3, 7, 9, 33, 70, 3, 3, 1, "same"),     # odd sizes (a pool row and column left over), 3 words
    (2, 9, 6, 130, 40, 3, 3, 2, "same"),    # stride 2, channels past two words
    (1, 6, 7, 5, 97, 2, 3, 1, ((1, 0), (2, 1))),  # lopsided padding, odd OC: an odd word count
])
@pytest.mark.parametrize("pad_value", ["zero", "one"])
def test_bconv2d_threshold_pools_the_bits(profiled_runtime, rng, case, pool, and_flips, pad_value):
    _skip_unless_fused_conv(profiled_runtime, pad_value)
    if profiled_runtime.kind == "oclgrind" and case[0] == 3 and pool != POOLS[1]:
        # 20-30 s each there; the other cases run these pools, and this case the CNN's pool.
        pytest.skip("the odd-sized case with the rarer pools: too slow for the simulator")
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    _check_conv_threshold(profiled_runtime, rng, x, w, stride, padding, pad_value, pool, and_flips)


def test_bconv2d_threshold_rejects_bad_arguments(runtime, rng):
    _skip_unless_fused_conv(runtime, "zero")
    x = to_bits(runtime, choice_pm1(rng, (1, 4, 4, 5)))
    w = to_bits(runtime, choice_pm1(rng, (3, 3, 3, 5)))
    zeros = Tensor.from_numpy(runtime, np.zeros(3, np.int32), "int32")
    with pytest.raises(ValueError, match=r"thresh and flip of shape \(3,\)"):
        ops.bconv2d_threshold(x, w, zeros, Tensor.from_numpy(runtime, np.zeros(4, np.int32), "int32"), 1, "same")
    with pytest.raises(ValueError, match="no pixel of the image"):
        ops.bconv2d_threshold(x, w, zeros, zeros, 1, "same", pool=((2, 2), 2, ((2, 0), (0, 0))))
    with pytest.raises(TypeError, match="packed bits"):
        ops.bconv2d_threshold(to_floats(runtime, np.zeros((1, 4, 4, 5))), w, zeros, zeros, 1, "same")


def _blocks_runtime(runtime):
    """``runtime``'s device with its profile preferring the blocks convolution (bconv2d_cpu.cl),
    which the CPU profiles other than cpu-avx512 leave to the tuner: every 64-bit profile can
    run it (AVX-512, AVX2 or plain OpenCL C tiles), Oclgrind included."""
    from espresso_cl import tuning
    from espresso_cl.runtime import Runtime

    profile = runtime.profile
    if profile.word_bits != 64:
        pytest.skip(f"profile {profile.name}: the blocks convolution takes 64-bit words")
    blocks = tuning.with_overrides(profile, {"bconv": {"prefer": ["blocks", "im2col"]}}, name=profile.name + "+blocks")
    return Runtime(runtime.device, profile=blocks)


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids(CONV_CASES))
def test_blocks_conv_on_every_64_bit_profile(profiled_runtime, rng, case):
    runtime = _blocks_runtime(profiled_runtime)
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(runtime, x), to_bits(runtime, w), stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.conv2d(x, w, stride, padding, 0))
    pool = POOLS[CONV_CASES.index(case) % len(POOLS)]
    for pad_value in ("zero", "one"):
        _check_conv_threshold(runtime, rng, x, w, stride, padding, pad_value, pool, pad_value == "one")


@pytest.mark.parametrize("rows_first", [False, True], ids=["columns-first", "rows-first"])
def test_blocks_grid_in_either_order(profiled_runtime, rng, monkeypatch, rows_first):
    # As test_bgemm.py's: the blocks convolutions take the order the launcher gives.
    from espresso_cl import registry

    runtime = _blocks_runtime(profiled_runtime)
    monkeypatch.setattr(registry, "rows_first", lambda rows, cols: rows_first)
    x_shape, w_shape, stride, padding = conv_shapes((2, 7, 9, 33, 70, 3, 3, 1, "same"))
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    out = ops.bconv2d(to_bits(runtime, x), to_bits(runtime, w), stride, padding)
    np.testing.assert_array_equal(out.numpy(), reference.conv2d(x, w, stride, padding, 0))
    _check_conv_threshold(runtime, rng, x, w, stride, padding, "zero", POOLS[1], True)


def test_filters_by_word_in_groups_of_32(profiled_runtime, rng):
    # The AVX-512 blocks conv's second form of the filters (bconv2d_cpu_weights), checked on
    # every 64-bit profile so that Oclgrind runs it too: word k of filter 32 g + j at
    # (g * KQ + k) * 32 + j, filters past OC 0.
    from espresso_cl.ops import conv

    runtime = _blocks_runtime(profiled_runtime)
    oc, kh, kw, c = 70, 3, 3, 130
    w = to_bits(runtime, choice_pm1(rng, (oc, kh, kw, c)))
    rows = w.numpy().view(np.uint64).reshape(oc, -1)  # each filter's 64-bit words
    kq = rows.shape[1]
    out = conv.filter_words_by_group(w, kq, runtime.profile.defines(None)).numpy().view(np.uint64).reshape(-1)
    expected = np.zeros((96, kq), np.uint64)
    expected[:oc] = rows
    np.testing.assert_array_equal(out, expected.reshape(3, 32, kq).transpose(0, 2, 1).reshape(-1))
