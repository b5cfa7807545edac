"""kernels/bgemm.cl and kernels/fgemm.cl against the reference, under every tuning profile.

bgemm is compared bit for bit. fgemm is compared within the error bound of a float32 dot
product, |C - C_exact| <= 2 * K * u * sum_k |A[m, k] * B[n, k]| with u = 2**-24 (the classic
bound K * u / (1 - K * u), doubled as a margin; it holds whether ``mad`` fuses or rounds twice),
and exactly where every partial sum is a small integer (+-1 inputs).
"""

import numpy as np
import pytest

from espresso_cl import ops, reference, registry
from espresso_cl.tensor import Tensor

# (M, N, K): batch 1 and odd, edges of every profile's tiles (BM = BN = 64 on the GPU profile),
# K around 32 / 64 bits, and K = 1100 bits = 35 words, which crosses the GPU profile's 16-word
# local tiles twice and ends in a partial one.
BGEMM_SHAPES = [
    (1, 1, 1),
    (1, 33, 129),
    (1, 129, 64),
    (3, 31, 63),
    (7, 65, 65),
    (5, 100, 100),
    (33, 129, 31),
    (65, 17, 33),
    (64, 64, 32),
    (3, 5, 1100),
]
# fgemm's K counts floats, not bits, so its tiles fill 32 times sooner: K = 37 already crosses
# two 16-float local tiles. Every (work-group x K tile) of the GPU profile costs about a second
# under Oclgrind, hence the smaller set. The CPU profile's 8-float vectors along K meet K below
# 8 (tail only), K = 8 and 16 (no tail) and tails of 1 to 7; its row block shrinks for M = 1,
# 2, 3, 5, 7, and M = 13 and 65 end in a partial 12-row block.
FGEMM_SHAPES = [
    (1, 1, 1),
    (1, 33, 37),
    (2, 19, 8),
    (3, 31, 16),
    (7, 65, 20),
    (13, 9, 71),
    (65, 17, 33),
    (5, 129, 5),
]


def _ids(shapes):
    return [f"M{m}-N{n}-K{k}" for m, n, k in shapes]


def _pm1(rng, shape):
    return reference.sign(rng.standard_normal(shape))


def _bits(runtime, values, segment=None):
    words = reference.pack_bits(values, segment)
    return Tensor.from_numpy(runtime, words, "bits", shape=values.shape, segment=segment)


@pytest.mark.parametrize("m, n, k", BGEMM_SHAPES, ids=_ids(BGEMM_SHAPES))
def test_bgemm(profiled_runtime, rng, m, n, k):
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    out = ops.bgemm(_bits(profiled_runtime, a), _bits(profiled_runtime, b))
    assert out.kind == "int32" and out.shape == (m, n)
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


# Ragged K for every K step of the CPU micro-kernels (kernels/xnor_cpu.h: 8 words with AVX-512,
# 4 with AVX2, then the tail): K in words covers 1..17 around those steps and 33, each ending in
# a partial word; M = 4 and 5 mix full register tiles with single rows, N = 11 a full and a
# partial tile of columns.
TAIL_WORDS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33]


@pytest.mark.parametrize("words", TAIL_WORDS)
def test_bgemm_k_tails(profiled_runtime, rng, words):
    m, n, k = 4 + words % 2, 11, 64 * words - 5
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    out = ops.bgemm(_bits(profiled_runtime, a), _bits(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


# Blocks: M and N across several work-item blocks of every profile with ragged edges, batch-1
# GEMV (N = 40: so few blocks that ops.bgemm narrows them; N = 260: several full ones), and
# 2 rows (two single-row tiles).
BGEMM_BLOCK_SHAPES = [
    (1, 40, 1000),
    (1, 260, 200),
    (2, 40, 513),
    (13, 70, 1000),
    (26, 67, 130),
    (50, 9, 64),
]


@pytest.mark.parametrize("m, n, k", BGEMM_BLOCK_SHAPES, ids=_ids(BGEMM_BLOCK_SHAPES))
def test_bgemm_blocks(profiled_runtime, rng, m, n, k):
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    out = ops.bgemm(_bits(profiled_runtime, a), _bits(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_long_rows_with_every_bit_different(profiled_runtime):
    # 130 words per row, every bit of a row against its opposite: the AVX2 kernel's byte counters
    # gain 8 per 4-word step and must be emptied before they pass 255 (31 steps, 124 words).
    if profiled_runtime.kind == "oclgrind" and registry.select("bgemm", profiled_runtime.profile).grid is registry.tiles_grid:
        pytest.skip("the CPU kernels' long-K case; local-memory tiles over 130 words take minutes on Oclgrind")
    k = 64 * 130 - 3
    a = np.stack([np.ones(k, np.int8), -np.ones(k, np.int8), np.ones(k, np.int8)])
    b = np.stack([np.ones(k, np.int8) * (1 if j % 2 else -1) for j in range(9)])
    out = ops.bgemm(_bits(profiled_runtime, a), _bits(profiled_runtime, b)).numpy()
    np.testing.assert_array_equal(out, reference.xnor_gemm(a, b))
    assert out.min() == -k and out.max() == k


def test_bgemm_extremes(profiled_runtime):
    # All equal gives +K, all opposite -K: no pad bit may leak into the count.
    k = 65
    a = np.ones((3, k), np.int8)
    b = np.stack([np.ones(k, np.int8), -np.ones(k, np.int8)])
    out = ops.bgemm(_bits(profiled_runtime, a), _bits(profiled_runtime, b)).numpy()
    np.testing.assert_array_equal(out, np.tile([k, -k], (3, 1)))


@pytest.mark.parametrize("segment, segments", [(1, 7), (3, 9), (33, 3), (64, 2), (100, 1), (31, 4)])
@pytest.mark.parametrize("m", [1, 5])
def test_bgemm_segmented_rows(profiled_runtime, rng, m, segment, segments):
    k, n = segment * segments, 37
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    out = ops.bgemm(_bits(profiled_runtime, a, segment), _bits(profiled_runtime, b, segment))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_on_a_flattened_packed_image(profiled_runtime, rng):
    # pack_sign of an NHWC image, flattened for free: each pixel stays a padded segment.
    batch, h, w, c, n = 3, 4, 5, 33, 20
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    x[0, 0, 0, :4] = [0.0, -0.0, 0.0, -0.0]
    image = ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32"))
    flat = image.reshape((batch, h * w * c))
    assert flat.segment == c
    weights = _pm1(rng, (n, h * w * c))
    out = ops.bgemm(flat, _bits(profiled_runtime, weights, segment=c))
    expected = reference.xnor_gemm(reference.sign(x).reshape(batch, -1), weights)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_bgemm_rejects_mismatched_operands(runtime, rng):
    a, b = _pm1(rng, (2, 66)), _pm1(rng, (3, 66))
    with pytest.raises(ValueError):
        ops.bgemm(_bits(runtime, a, 33), _bits(runtime, b))
    with pytest.raises(ValueError):
        ops.bgemm(_bits(runtime, a), _bits(runtime, _pm1(rng, (3, 65))))
    with pytest.raises(TypeError):
        ops.bgemm(Tensor.from_numpy(runtime, a.astype(np.float32), "float32"), _bits(runtime, b))


# bgemm_threshold (CPU profiles): bgemm and the folded batch-norm + sign in one launch, packed.
# N around 32 / 64 bits (every pad case: the row's last word partly used, and the extra pad word
# when ceil(N / 32) is odd), several 32-column blocks and 4097; M 1 (GEMV), 3 (one register tile
# on the plain and AVX2 paths), 17 (two row blocks of 12, tiles and single rows); K with tails.
THRESHOLD_SHAPES = [
    (1, 1, 1),
    (1, 31, 65),
    (1, 33, 200),
    (3, 64, 63),
    (1, 65, 129),
    (3, 96, 100),
    (17, 100, 1000),
    (2, 129, 64),
    (7, 160, 31),
    (1, 4097, 130),
]


def _skip_unless_fused(runtime):
    if not registry.can_run("bgemm_threshold", runtime.profile):
        pytest.skip(f"profile {runtime.profile.name}: its GEMM runs no CPU blocks, so no fused threshold")


def _threshold_case(rng, acc, k):
    """Thresholds where a third of the channels tie with an accumulator, some at the range's
    edges (always / never pass), and random flips."""
    m, n = acc.shape
    thresh = rng.integers(-k - 1, k + 2, size=n).astype(np.int32)
    tied = rng.random(n) < 1 / 3
    thresh[tied] = acc[rng.integers(0, m, size=n), np.arange(n)][tied]
    edges = np.array([-k - 1, -k, k, k + 1], np.int32)
    ends = rng.random(n) < 0.1
    thresh[ends] = edges[rng.integers(0, 4, size=ends.sum())]
    flip = (rng.random(n) < 0.5).astype(np.int32)
    return thresh, flip


def _check_threshold(runtime, a, b, thresh, flip, segment=None):
    out = ops.bgemm_threshold(_bits(runtime, a, segment), _bits(runtime, b, segment),
                              Tensor.from_numpy(runtime, thresh, "int32"),
                              Tensor.from_numpy(runtime, flip, "int32"))
    expected = reference.threshold_sign(reference.xnor_gemm(a, b), thresh, flip)
    assert out.kind == "bits" and out.shape == expected.shape and out.segment == expected.shape[1]
    # The words themselves, pad bits and pad words included.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("m, n, k", THRESHOLD_SHAPES, ids=_ids(THRESHOLD_SHAPES))
def test_bgemm_threshold(profiled_runtime, rng, m, n, k):
    _skip_unless_fused(profiled_runtime)
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), k)
    _check_threshold(profiled_runtime, a, b, thresh, flip)


@pytest.mark.parametrize("flip", [0, 1], ids=["ge", "le"])
def test_bgemm_threshold_ties_one_way(profiled_runtime, rng, flip):
    # Every channel flipped (or none), thresholds on the accumulators of row 0: row 0 passes
    # everywhere, the other rows by their side of it.
    _skip_unless_fused(profiled_runtime)
    m, n, k = 5, 70, 77
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    thresh = reference.xnor_gemm(a, b)[0].astype(np.int32)
    _check_threshold(profiled_runtime, a, b, thresh, np.full(n, flip, np.int32))


@pytest.mark.parametrize("words", [1, 3, 4, 5, 8, 9, 17])
def test_bgemm_threshold_k_tails(profiled_runtime, rng, words):
    _skip_unless_fused(profiled_runtime)
    m, n, k = 4 + words % 2, 45, 64 * words - 5
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), k)
    _check_threshold(profiled_runtime, a, b, thresh, flip)


def test_bgemm_threshold_segmented_rows(profiled_runtime, rng):
    # A flattened packed image as the left operand: its K runs over padded segments.
    _skip_unless_fused(profiled_runtime)
    m, n, segment = 3, 50, 33
    a, b = _pm1(rng, (m, 4 * segment)), _pm1(rng, (n, 4 * segment))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), 4 * segment)
    _check_threshold(profiled_runtime, a, b, thresh, flip, segment)


def test_bgemm_threshold_needs_a_cpu_profile(runtime, rng):
    from espresso_cl.runtime import Runtime
    from espresso_cl.tuning import PROFILES

    generic = Runtime(runtime.device, profile=PROFILES["generic"])
    assert not registry.can_run("bgemm_threshold", generic.profile)
    assert registry.can_run("bgemm_threshold", PROFILES["cpu"])
    a, b = _pm1(rng, (1, 10)), _pm1(rng, (3, 10))
    zeros = Tensor.from_numpy(generic, np.zeros(3, np.int32), "int32")
    with pytest.raises(ValueError, match="CPU blocks"):
        ops.bgemm_threshold(_bits(generic, a), _bits(generic, b), zeros, zeros)


def _floats(runtime, array):
    return Tensor.from_numpy(runtime, array.astype(np.float32), "float32")


@pytest.mark.parametrize("m, n, k", FGEMM_SHAPES, ids=_ids(FGEMM_SHAPES))
def test_fgemm(profiled_runtime, rng, m, n, k):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    out = ops.fgemm(_floats(profiled_runtime, a), _floats(profiled_runtime, b))
    assert out.kind == "float32" and out.shape == (m, n)
    bound = 2 * k * 2.0**-24 * reference.gemm_float(np.abs(a), np.abs(b))
    error = np.abs(out.numpy() - reference.gemm_float(a, b))
    assert np.all(error <= bound), f"worst error / bound: {np.max(error / bound):.3g}"


@pytest.mark.parametrize("m, n, k", FGEMM_SHAPES, ids=_ids(FGEMM_SHAPES))
def test_fgemm_of_pm1_is_exact(profiled_runtime, rng, m, n, k):
    # The float baseline of a binary layer must equal it bit for bit.
    a, b = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    out = ops.fgemm(_floats(profiled_runtime, a), _floats(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b).astype(np.float32))


def test_fgemm_rejects_mismatched_operands(runtime):
    a = Tensor.from_numpy(runtime, np.zeros((2, 5), np.float32), "float32")
    with pytest.raises(ValueError):
        ops.fgemm(a, Tensor.from_numpy(runtime, np.zeros((3, 4), np.float32), "float32"))
    with pytest.raises(TypeError):
        ops.fgemm(a, Tensor.from_numpy(runtime, np.zeros((3, 5), np.int32), "int32"))
