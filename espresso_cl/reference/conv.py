"""Reference 2-D convolution."""

from __future__ import annotations

import numpy as np

from ..geometry import ConvGeometry


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: str, pad_value=0) -> np.ndarray:
    """NHWC convolution the obvious way: x (N, H, W, C), w (OC, KH, KW, C) -> (N, OH, OW, OC).

    The image is padded with ``pad_value`` as ``padding`` ('same' / 'valid') and ``stride``
    place it (:class:`ConvGeometry`), then each of the KH * KW taps adds its dot products.
    Integer x and w (+-1, uint8) accumulate in int64 and return int32; otherwise float64.
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 4 or w.ndim != 4 or x.shape[3] != w.shape[3]:
        raise ValueError(f"conv2d needs x (N, H, W, C) and w (OC, KH, KW, C), got {x.shape} and {w.shape}")
    integer = np.issubdtype(x.dtype, np.integer) and np.issubdtype(w.dtype, np.integer)
    acc_t = np.int64 if integer else np.float64
    n, h, wd, c = x.shape
    oc, kh, kw, _ = w.shape
    g = ConvGeometry.of(h, wd, kh, kw, stride, padding)
    # Enough rows and columns for the last window; 'valid' may leave the image's tail unread.
    ph = max((g.oh - 1) * stride + kh, g.pad_top + h)
    pw = max((g.ow - 1) * stride + kw, g.pad_left + wd)
    padded = np.full((n, ph, pw, c), pad_value, acc_t)
    padded[:, g.pad_top:g.pad_top + h, g.pad_left:g.pad_left + wd] = x
    out = np.zeros((n, g.oh, g.ow, oc), acc_t)
    for ky in range(kh):
        for kx in range(kw):
            tap = padded[:, ky:ky + (g.oh - 1) * stride + 1:stride, kx:kx + (g.ow - 1) * stride + 1:stride]
            out += np.tensordot(tap, w[:, ky, kx, :].astype(acc_t), axes=([3], [1]))
    return out.astype(np.int32) if integer else out
