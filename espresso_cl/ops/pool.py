"""Launchers of kernels/pool.cl: max-pooling of packed bits and of float32 / int32 images."""

from __future__ import annotations

from ..geometry import ConvGeometry
from ..tensor import Tensor
from .launch import launch_op


def _geometry(x: Tensor, pool, stride: int, padding: str) -> ConvGeometry:
    if len(x.shape) != 4:
        raise ValueError(f"max-pooling takes NHWC images (N, H, W, C), got shape {x.shape}")
    kh, kw = (pool, pool) if isinstance(pool, int) else pool
    _, h, w, _ = x.shape
    return ConvGeometry.of(h, w, kh, kw, stride, padding)


def _window_args(g: ConvGeometry) -> tuple:
    """pool.cl's window arguments, in kernel order: OH, OW, KH, KW, STRIDE, PAD_TOP, PAD_LEFT."""
    return g.oh, g.ow, g.kh, g.kw, g.stride, g.pad_top, g.pad_left


def maxpool_bits(x: Tensor, and_mask: Tensor, pool, stride: int, padding: str = "valid") -> Tensor:
    """Binary max-pool: bits x (N, H, W, C) -> bits (N, OH, OW, C).

    ``pool`` is k or (kh, kw); ``padding`` 'valid' or 'same' (padded taps are ignored).
    ``and_mask`` is bits (C,): a set bit makes that channel pool with min (AND) instead of
    max (OR), as a folded batch-norm + sign with negative gamma moved before the pool needs.
    """
    if x.kind != "bits" or and_mask.kind != "bits":
        raise TypeError(f"maxpool_bits takes packed bits x and and_mask, got {x.kind} and {and_mask.kind}")
    g = _geometry(x, pool, stride, padding)
    n, h, w, c = x.shape
    if x.segment != c:
        raise ValueError(f"maxpool_bits needs one packed segment per pixel, got segment {x.segment} of {c}")
    if and_mask.shape != (c,):
        raise ValueError(f"and_mask must be bits of shape ({c},), got {and_mask.shape}")
    runtime = x.runtime
    rw = x.storage_shape[-1] // runtime.profile.words32
    out = Tensor(runtime, (n, g.oh, g.ow, c), "bits")
    launch_op(runtime, "pool", "maxpool_bits", None, (rw, g.ow, n * g.oh), None,
           n, h, w, rw, *_window_args(g), x, and_mask, out)
    return out


def maxpool(x: Tensor, pool, stride: int, padding: str = "valid") -> Tensor:
    """Max-pool: float32 or int32 x (N, H, W, C) -> the same kind (N, OH, OW, C).

    ``pool`` is k or (kh, kw); ``padding`` 'valid' or 'same' (padded taps are ignored).
    """
    if x.kind not in ("float32", "int32"):
        raise TypeError(f"maxpool takes float32 or int32, got {x.kind} (use maxpool_bits for bits)")
    g = _geometry(x, pool, stride, padding)
    n, h, w, c = x.shape
    runtime = x.runtime
    defines = {"IN_T": "float" if x.kind == "float32" else "int"}
    out = Tensor(runtime, (n, g.oh, g.ow, c), x.kind)
    launch_op(runtime, "pool", "maxpool", defines, (c, g.ow, n * g.oh), None,
           n, h, w, c, *_window_args(g), x, out)
    return out
