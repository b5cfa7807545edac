"""One thin launcher per kernel. Each takes and returns :class:`espresso_cl.tensor.Tensor`."""

from .conv import bconv2d, bitplane_conv2d, bitplane_conv2d_threshold, fconv2d, supports_bitplane_threshold
from .elementwise import affine, argmax, sign_float, softmax
from .gemm import bgemm, bgemm_threshold, fgemm, supports_fused_threshold
from .pack import pack_sign, threshold, unpack_sign
from .pool import maxpool, maxpool_bits

__all__ = ["bgemm", "bgemm_threshold", "supports_fused_threshold", "fgemm", "pack_sign", "threshold", "unpack_sign",
           "bconv2d", "fconv2d", "bitplane_conv2d", "bitplane_conv2d_threshold",
           "supports_bitplane_threshold",
           "maxpool", "maxpool_bits", "affine", "sign_float", "softmax", "argmax"]
