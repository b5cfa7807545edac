"""kernels/fconv2d.cl: ops.fconv2d."""

import numpy as np
import pytest

from espresso_cl import ops, reference
from kernel_cases import CONV_CASES, choice_pm1, conv_ids, conv_shapes, to_bits, to_floats

# float32 results are compared with rtol 1e-5 and atol 1e-5 * sqrt(K) for K = KH * KW * C
# products of values in [-1, 1]: float32 rounding of a K-term sum grows like sqrt(K), and 1e-5
# is about 100 float32 epsilons. Every test runs once per tuning profile (``profiled_runtime``).
#
# CONV_CASES' windows for the kernels that cost more per tap under the (slow) Oclgrind simulator.
# The float kernel packs nothing, so channel counts near 32 and 64 mean nothing to it, while its
# K axis is 32 times as long as a packed one: few channels.
# Window rows of KW * C = 3 to 25 floats meet the CPU profile's 8-float vectors with tails of
# 1 to 7 or nothing but a tail; the extra case has rows of 24 (whole vectors, no tail).
FLOAT_CASES = [case[:3] + (min(case[3], 5),) + case[4:] for case in CONV_CASES] + [
    (2, 5, 6, 8, 9, 3, 3, 1, "same"),
]


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("case", FLOAT_CASES, ids=conv_ids(FLOAT_CASES))
def test_fconv2d_matches_reference(profiled_runtime, rng, case, pad_value):
    x_shape, w_shape, stride, padding = conv_shapes(case)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    out = ops.fconv2d(to_floats(profiled_runtime, x), to_floats(profiled_runtime, w), stride, padding, pad_value)
    expected = reference.conv2d(x, w, stride, padding, 1.0 if pad_value == "one" else 0.0)
    assert out.kind == "float32" and out.shape == expected.shape
    terms = w_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * np.sqrt(terms))


@pytest.mark.parametrize("pad_value", ["zero", "one"])
def test_fconv2d_on_pm1_equals_bconv2d(profiled_runtime, rng, pad_value):
    # The float mode of a binary network must give the binary kernel's integers exactly
    # (float32 holds every such sum exactly), padding included.
    x_shape, w_shape, stride, padding = conv_shapes((1, 4, 3, 5, 7, 3, 3, 1, "same"))
    x, w = choice_pm1(rng, x_shape), choice_pm1(rng, w_shape)
    binary = ops.bconv2d(to_bits(profiled_runtime, x), to_bits(profiled_runtime, w), stride, padding, pad_value)
    floats = ops.fconv2d(to_floats(profiled_runtime, x.astype(np.float32)),
                         to_floats(profiled_runtime, w.astype(np.float32)), stride, padding, pad_value)
    np.testing.assert_array_equal(floats.numpy(), binary.numpy().astype(np.float32))
