"""kernels/fgemm.cl: ops.fgemm."""

import numpy as np
import pytest

from espresso_cl import ops, reference
from espresso_cl.tensor import Tensor
from kernel_cases import gemm_ids, sign_pm1, to_floats

# Compared with the reference under every tuning profile, within the error bound of a float32
# dot product, |C - C_exact| <= 2 * K * u * sum_k |A[m, k] * B[n, k]| with u = 2**-24 (the
# classic bound K * u / (1 - K * u), doubled as a margin; it holds whether ``mad`` fuses or
# rounds twice), and exactly where every partial sum is a small integer (+-1 inputs).
#
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


@pytest.mark.parametrize("m, n, k", FGEMM_SHAPES, ids=gemm_ids(FGEMM_SHAPES))
def test_fgemm(profiled_runtime, rng, m, n, k):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    out = ops.fgemm(to_floats(profiled_runtime, a), to_floats(profiled_runtime, b))
    assert out.kind == "float32" and out.shape == (m, n)
    bound = 2 * k * 2.0**-24 * reference.gemm_float(np.abs(a), np.abs(b))
    error = np.abs(out.numpy() - reference.gemm_float(a, b))
    assert np.all(error <= bound), f"worst error / bound: {np.max(error / bound):.3g}"


@pytest.mark.parametrize("m, n, k", FGEMM_SHAPES, ids=gemm_ids(FGEMM_SHAPES))
def test_fgemm_of_pm1_is_exact(profiled_runtime, rng, m, n, k):
    # The float baseline of a binary layer must equal it bit for bit.
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.fgemm(to_floats(profiled_runtime, a), to_floats(profiled_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b).astype(np.float32))


def test_fgemm_rejects_mismatched_operands(runtime):
    a = Tensor.from_numpy(runtime, np.zeros((2, 5), np.float32), "float32")
    with pytest.raises(ValueError):
        ops.fgemm(a, Tensor.from_numpy(runtime, np.zeros((3, 4), np.float32), "float32"))
    with pytest.raises(TypeError):
        ops.fgemm(a, Tensor.from_numpy(runtime, np.zeros((3, 5), np.int32), "int32"))
