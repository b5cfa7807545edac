"""NumPy-only oracle of every kernel: the same functions computed the slow, obvious way.

Nothing here imports pyopencl. Binary values are int8 +1 / -1 arrays; packed arrays follow
the layout of ``kernels/common.h`` (see :func:`pack_bits`).
"""

from .bits import pack_bits, sign, unpack_bits
from .conv import conv2d
from .elementwise import affine, argmax, sign_float, softmax, threshold_sign
from .gemm import gemm_float, xnor_gemm
from .pool import maxpool, maxpool_bits

__all__ = ["pack_bits", "sign", "unpack_bits", "gemm_float", "xnor_gemm",
           "conv2d", "maxpool", "maxpool_bits", "affine", "sign_float", "softmax", "argmax", "threshold_sign"]
