"""kernels/bgemm.cl (tiled) and bgemm_cpu.cl (CPU blocks, bgemm_cpu_threshold): ops.bgemm, ops.bgemm_threshold."""

import numpy as np
import pytest

from espresso_cl import ops, reference, registry
from espresso_cl.tensor import Tensor
from kernel_cases import gemm_ids, sign_pm1, to_bits

# Compared bit for bit with the reference, under every tuning profile.
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


@pytest.mark.parametrize("m, n, k", BGEMM_SHAPES, ids=gemm_ids(BGEMM_SHAPES))
def test_bgemm(profiled_runtime, rng, m, n, k):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b))
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
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b))
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


@pytest.mark.parametrize("m, n, k", BGEMM_BLOCK_SHAPES, ids=gemm_ids(BGEMM_BLOCK_SHAPES))
def test_bgemm_blocks(profiled_runtime, rng, m, n, k):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_long_rows_with_every_bit_different(profiled_runtime):
    # 130 words per row, every bit of a row against its opposite: the AVX2 kernel's byte counters
    # gain 8 per 4-word step and must be emptied before they pass 255 (31 steps, 124 words).
    if profiled_runtime.kind == "oclgrind" and registry.select("bgemm", profiled_runtime.profile).grid is registry.tiles_grid:
        pytest.skip("the CPU kernels' long-K case; local-memory tiles over 130 words take minutes on Oclgrind")
    k = 64 * 130 - 3
    a = np.stack([np.ones(k, np.int8), -np.ones(k, np.int8), np.ones(k, np.int8)])
    b = np.stack([np.ones(k, np.int8) * (1 if j % 2 else -1) for j in range(9)])
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b)).numpy()
    np.testing.assert_array_equal(out, reference.xnor_gemm(a, b))
    assert out.min() == -k and out.max() == k


def test_bgemm_extremes(profiled_runtime):
    # All equal gives +K, all opposite -K: no pad bit may leak into the count.
    k = 65
    a = np.ones((3, k), np.int8)
    b = np.stack([np.ones(k, np.int8), -np.ones(k, np.int8)])
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b)).numpy()
    np.testing.assert_array_equal(out, np.tile([k, -k], (3, 1)))


@pytest.mark.parametrize("segment, segments", [(1, 7), (3, 9), (33, 3), (64, 2), (100, 1), (31, 4)])
@pytest.mark.parametrize("m", [1, 5])
def test_bgemm_segmented_rows(profiled_runtime, rng, m, segment, segments):
    k, n = segment * segments, 37
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(profiled_runtime, a, segment), to_bits(profiled_runtime, b, segment))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_on_a_flattened_packed_image(profiled_runtime, rng):
    # pack_sign of an NHWC image, flattened for free: each pixel stays a padded segment.
    batch, h, w, c, n = 3, 4, 5, 33, 20
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    x[0, 0, 0, :4] = [0.0, -0.0, 0.0, -0.0]
    image = ops.pack_sign(Tensor.from_numpy(profiled_runtime, x, "float32"))
    flat = image.reshape((batch, h * w * c))
    assert flat.segment == c
    weights = sign_pm1(rng, (n, h * w * c))
    out = ops.bgemm(flat, to_bits(profiled_runtime, weights, segment=c))
    expected = reference.xnor_gemm(reference.sign(x).reshape(batch, -1), weights)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_bgemm_rejects_mismatched_operands(runtime, rng):
    a, b = sign_pm1(rng, (2, 66)), sign_pm1(rng, (3, 66))
    with pytest.raises(ValueError):
        ops.bgemm(to_bits(runtime, a, 33), to_bits(runtime, b))
    with pytest.raises(ValueError):
        ops.bgemm(to_bits(runtime, a), to_bits(runtime, sign_pm1(rng, (3, 65))))
    with pytest.raises(TypeError):
        ops.bgemm(Tensor.from_numpy(runtime, a.astype(np.float32), "float32"), to_bits(runtime, b))


# bgemm_threshold (every profile: CPU blocks of whole words per work-item, or the tiled kernel
# with whole words per work-group): bgemm and the folded batch-norm + sign in one launch, packed.
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
    out = ops.bgemm_threshold(to_bits(runtime, a, segment), to_bits(runtime, b, segment),
                              Tensor.from_numpy(runtime, thresh, "int32"),
                              Tensor.from_numpy(runtime, flip, "int32"))
    expected = reference.threshold_sign(reference.xnor_gemm(a, b), thresh, flip)
    assert out.kind == "bits" and out.shape == expected.shape and out.segment == expected.shape[1]
    # The words themselves, pad bits and pad words included.
    np.testing.assert_array_equal(out.numpy(), reference.pack_bits(expected))


@pytest.mark.parametrize("m, n, k", THRESHOLD_SHAPES, ids=gemm_ids(THRESHOLD_SHAPES))
def test_bgemm_threshold(profiled_runtime, rng, m, n, k):
    if profiled_runtime.kind == "oclgrind" and n > 4096:
        pytest.skip("past 4096 columns: most of a minute on the simulator (the other shapes cover tails)")
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), k)
    _check_threshold(profiled_runtime, a, b, thresh, flip)


@pytest.mark.parametrize("flip", [0, 1], ids=["ge", "le"])
def test_bgemm_threshold_ties_one_way(profiled_runtime, rng, flip):
    # Every channel flipped (or none), thresholds on the accumulators of row 0: row 0 passes
    # everywhere, the other rows by their side of it.
    m, n, k = 5, 70, 77
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    thresh = reference.xnor_gemm(a, b)[0].astype(np.int32)
    _check_threshold(profiled_runtime, a, b, thresh, np.full(n, flip, np.int32))


@pytest.mark.parametrize("words", [1, 3, 4, 5, 8, 9, 17])
def test_bgemm_threshold_k_tails(profiled_runtime, rng, words):
    m, n, k = 4 + words % 2, 45, 64 * words - 5
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), k)
    _check_threshold(profiled_runtime, a, b, thresh, flip)


def test_bgemm_threshold_segmented_rows(profiled_runtime, rng):
    # A flattened packed image as the left operand: its K runs over padded segments.
    m, n, segment = 3, 50, 33
    a, b = sign_pm1(rng, (m, 4 * segment)), sign_pm1(rng, (n, 4 * segment))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), 4 * segment)
    _check_threshold(profiled_runtime, a, b, thresh, flip, segment)


def test_bgemm_threshold_rejects_wrong_thresholds(runtime, rng):
    a, b = to_bits(runtime, sign_pm1(rng, (1, 10))), to_bits(runtime, sign_pm1(rng, (3, 10)))
    zeros = Tensor.from_numpy(runtime, np.zeros(3, np.int32), "int32")
    with pytest.raises(ValueError, match=r"thresh and flip of shape \(3,\)"):
        ops.bgemm_threshold(a, b, zeros, Tensor.from_numpy(runtime, np.zeros(2, np.int32), "int32"))


# bgemm_affine (every profile): bgemm and a per-column scale and shift, float32 out, in one
# launch: a last layer's batch-norm on its GEMM.
@pytest.mark.parametrize("m, n, k", BGEMM_SHAPES + BGEMM_BLOCK_SHAPES, ids=gemm_ids(BGEMM_SHAPES + BGEMM_BLOCK_SHAPES))
def test_bgemm_affine(profiled_runtime, rng, m, n, k):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    scale = rng.standard_normal(n).astype(np.float32)
    shift = rng.standard_normal(n).astype(np.float32)
    out = ops.bgemm_affine(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b),
                           Tensor.from_numpy(profiled_runtime, scale, "float32"),
                           Tensor.from_numpy(profiled_runtime, shift, "float32"))
    assert out.kind == "float32" and out.shape == (m, n)
    expected = reference.affine(reference.xnor_gemm(a, b), scale, shift)
    # float32 rounding of one product and one sum: a few ulps of the largest term.
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6 * (1 + np.abs(expected).max()))


def test_bgemm_affine_rejects_wrong_parameters(runtime, rng):
    a, b = to_bits(runtime, sign_pm1(rng, (2, 40))), to_bits(runtime, sign_pm1(rng, (3, 40)))
    ok = Tensor.from_numpy(runtime, np.ones(3, np.float32), "float32")
    with pytest.raises(ValueError, match=r"scale and shift of shape \(3,\)"):
        ops.bgemm_affine(a, b, ok, Tensor.from_numpy(runtime, np.ones(4, np.float32), "float32"))
    with pytest.raises(ValueError, match="float32 scale"):
        ops.bgemm_affine(a, b, ok, Tensor.from_numpy(runtime, np.ones(3, np.int32), "int32"))


# Few rows: on profiles with a GEMV kernel (BinaryGemm.gemv, the GPU profile's bgemv.cl) every M
# up to gemv.tm runs it, in row buckets of powers of two; M = 16 and 17 sit at the GPU profile's
# switch back to bgemm. K in words on both sides of the 32 lanes that split it (1, 31, 33, 130
# words), N not a multiple of a group's 16 columns, and N below one group.
GEMV_SHAPES = [
    (1, 1, 1),
    (1, 17, 993),
    (2, 40, 1024),
    (3, 33, 4160),
    (5, 100, 65),
    (8, 15, 2000),
    (9, 47, 130),
    (16, 35, 1057),
    (17, 35, 1057),
]


@pytest.mark.parametrize("m, n, k", GEMV_SHAPES, ids=gemm_ids(GEMV_SHAPES))
def test_bgemm_few_rows(profiled_runtime, rng, m, n, k):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_gemv_runs_up_to_the_profiles_row_limit(runtime, rng, monkeypatch):
    # The switch itself: bgemv.cl for M <= gemv.tm, bgemm.cl above (on the GPU profile).
    from espresso_cl.ops import gemm
    from espresso_cl.runtime import Runtime
    from espresso_cl.tuning import PROFILES

    gpu = Runtime(runtime.device, profile=PROFILES["gpu"])
    limit = PROFILES["gpu"].bgemm.gemv.tm
    ran = []
    real = gemm.launch
    monkeypatch.setattr(gemm, "launch", lambda rt, file, *args: ran.append(file) or real(rt, file, *args))
    for m in (limit, limit + 1):
        a, b = sign_pm1(rng, (m, 70)), sign_pm1(rng, (20, 70))
        out = ops.bgemm(to_bits(gpu, a), to_bits(gpu, b))
        np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))
    assert ran == ["bgemv.cl", "bgemm.cl"]


@pytest.mark.parametrize("rows_first", [False, True], ids=["columns-first", "rows-first"])
def test_blocks_grid_in_either_order(profiled_runtime, rng, monkeypatch, rows_first):
    # The launchers pick the order of a blocks grid (registry.rows_first); both must give the
    # same words, ragged blocks at both ends included.
    monkeypatch.setattr(registry, "rows_first", lambda rows, cols: rows_first)
    m, n, k = 29, 101, 200
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    np.testing.assert_array_equal(ops.bgemm(to_bits(profiled_runtime, a), to_bits(profiled_runtime, b)).numpy(),
                                  reference.xnor_gemm(a, b))
    thresh, flip = _threshold_case(rng, reference.xnor_gemm(a, b), k)
    _check_threshold(profiled_runtime, a, b, thresh, flip)
