"""Reference matrix products."""

from __future__ import annotations

import numpy as np


def xnor_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Binary GEMM the obvious way: +-1 a (M, K) times +-1 b (N, K) transposed -> int32 (M, N)."""
    return (np.asarray(a, np.int64) @ np.asarray(b, np.int64).T).astype(np.int32)


def gemm_float(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) times b (N, K) transposed, in float64 (compare float32 kernels with a tolerance)."""
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
