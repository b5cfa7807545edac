"""One thin launcher per kernel. Each takes and returns :class:`espresso_cl.tensor.Tensor`."""

from .gemm import bgemm, fgemm
from .pack import pack_sign, threshold, unpack_sign

__all__ = ["bgemm", "fgemm", "pack_sign", "threshold", "unpack_sign"]
