"""Reference max-pooling: every window taken with a slice, padded positions left out."""

from __future__ import annotations

import numpy as np

from ..geometry import ConvGeometry


def maxpool(x: np.ndarray, pool, stride: int, padding: str = "valid") -> np.ndarray:
    """Max over each window of NHWC x (N, H, W, C), any dtype -> (N, OH, OW, C), same dtype.

    ``pool`` is k or (kh, kw). Taps outside the image ('same' padding) are not part of any max.
    """
    x = np.asarray(x)
    kh, kw = (pool, pool) if isinstance(pool, int) else pool
    n, h, w, c = x.shape
    g = ConvGeometry.of(h, w, kh, kw, stride, padding)
    out = np.empty((n, g.oh, g.ow, c), x.dtype)
    for oy in range(g.oh):
        top = oy * stride - g.pad_top
        for ox in range(g.ow):
            left = ox * stride - g.pad_left
            window = x[:, max(top, 0):top + kh, max(left, 0):left + kw, :]
            out[:, oy, ox, :] = window.max(axis=(1, 2))
    return out


def maxpool_bits(values: np.ndarray, and_channels: np.ndarray, pool, stride: int,
                 padding: str = "valid") -> np.ndarray:
    """Binary max-pool of +-1 values (N, H, W, C) -> int8 +-1 (N, OH, OW, C).

    Channels where the boolean ``and_channels`` (C,) is true take the window's min instead.
    """
    values = np.asarray(values, np.int8)
    highest = maxpool(values, pool, stride, padding)
    lowest = -maxpool(-values, pool, stride, padding)
    return np.where(np.asarray(and_channels, bool), lowest, highest).astype(np.int8)
