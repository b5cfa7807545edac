"""Helpers and shapes shared by the kernel test modules (test_bgemm, test_fgemm, test_bconv2d,
test_fconv2d, test_bitplane); imported as ``from kernel_cases import ...`` (pytest puts tests/
on sys.path, as tests/ is no package).
"""

import numpy as np

from espresso_cl import reference
from espresso_cl.tensor import Tensor

# (N, H, W, C, OC, KH, KW, stride, padding): channel counts on both sides of 32 and 64 and
# none a multiple of them but one, odd OC, batch 1 and odd batches, H != W, 1x1 to 5x5 kernels
# and a non-square one, a window as large as the image, 'same' windows wider than the image;
# explicit paddings ((top, bottom), (left, right)): PyTorch's stride-2 padding=1 on even and odd
# sizes, padding wider than half the window, lopsided padding with windows wholly in it.
# test_fconv2d and test_bitplane derive their cases from these.
CONV_CASES = [
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
    (2, 8, 8, 5, 6, 3, 3, 2, ((1, 1), (1, 1))),
    (1, 7, 9, 33, 5, 3, 3, 2, ((1, 1), (1, 1))),
    (3, 6, 5, 3, 4, 3, 3, 1, ((2, 2), (2, 2))),
    (1, 5, 6, 65, 7, 3, 2, 1, ((3, 0), (0, 4))),
    (2, 4, 4, 17, 9, 5, 5, 3, ((0, 2), (1, 0))),
]


def gemm_ids(shapes):
    """Test ids of (M, N, K) GEMM shapes."""
    return [f"M{m}-N{n}-K{k}" for m, n, k in shapes]


def conv_ids(cases):
    """Test ids of conv cases (see CONV_CASES)."""
    def padding(p):
        return p if isinstance(p, str) else "p" + "".join(str(a) for pair in p for a in pair)

    return ["x".join(map(str, case[:7])) + f"-s{case[7]}-{padding(case[8])}" for case in cases]


def conv_shapes(case):
    """A conv case as (input shape NHWC, weight shape (OC, KH, KW, C), stride, padding)."""
    n, h, w, c, oc, kh, kw, stride, padding = case
    return (n, h, w, c), (oc, kh, kw, c), stride, padding


def sign_pm1(rng, shape):
    """int8 +-1: the sign of standard normal draws (the GEMM tests' operands)."""
    return reference.sign(rng.standard_normal(shape))


def choice_pm1(rng, shape):
    """int8 +-1 drawn with ``rng.choice`` (the conv tests' operands)."""
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def to_bits(runtime, values, segment=None):
    """+-1 values packed and uploaded as a "bits" tensor (segments of ``segment`` channels)."""
    words = reference.pack_bits(values, segment)
    return Tensor.from_numpy(runtime, words, "bits", shape=values.shape, segment=segment)


def to_floats(runtime, values):
    """``values`` uploaded as a float32 tensor."""
    return Tensor.from_numpy(runtime, values.astype(np.float32), "float32")
