"""Launchers of kernels/pack.cl: sign packing, unpacking, folded batch-norm + sign thresholds."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .launch import launch_op


def _rows(t: Tensor) -> int:
    return int(np.prod(t.shape[:-1], dtype=np.int64))


def pack_sign(x: Tensor) -> Tensor:
    """float32 (..., C) -> bits (..., C): sign with sign(0) = +1."""
    assert x.kind == "float32", x.kind
    out = Tensor(x.runtime, x.shape, "bits")
    rows, channels, rw = _rows(x), x.shape[-1], out.storage_shape[-1]
    launch_op(x.runtime, "pack", "pack_sign", None, (rw, rows), None, rows, channels, rw, x, out)
    return out


def unpack_sign(bits: Tensor) -> Tensor:
    """bits (..., C) -> float32 +-1 (..., C)."""
    assert bits.kind == "bits" and bits.segment == bits.shape[-1], (bits.kind, bits.segment)
    out = Tensor(bits.runtime, bits.shape, "float32")
    rows, channels, rw = _rows(bits), bits.shape[-1], bits.storage_shape[-1]
    launch_op(bits.runtime, "pack", "unpack_sign", None, (channels, rows), None, rows, channels, rw, bits, out)
    return out


def check_thresholds(what: str, thresh: Tensor, flip: Tensor, channels: int) -> None:
    """The folded batch-norm + sign parameters of a fused op: int32 (channels,) each."""
    if thresh.kind != "int32" or flip.kind != "int32" or thresh.shape != (channels,) or flip.shape != (channels,):
        raise ValueError(f"{what} needs int32 thresh and flip of shape ({channels},), got "
                         f"{thresh.kind} {thresh.shape} and {flip.kind} {flip.shape}")


def threshold(acc: Tensor, thresh: Tensor, flip: Tensor, packed: bool = True) -> Tensor:
    """Accumulators (..., C) (int32, or float32 in float mode) -> sign by per-channel threshold.

    Output bit c is ``acc <= thresh[c]`` where ``flip[c]`` else ``acc >= thresh[c]``; packed
    bits when ``packed``, else float32 +-1.
    """
    assert acc.kind in ("int32", "float32"), acc.kind
    assert thresh.kind == flip.kind == "int32" and thresh.shape == flip.shape == (acc.shape[-1],)
    defines = {"IN_T": "int" if acc.kind == "int32" else "float"}
    rows, channels = _rows(acc), acc.shape[-1]
    if packed:
        out = Tensor(acc.runtime, acc.shape, "bits")
        rw = out.storage_shape[-1]
        launch_op(acc.runtime, "pack", "threshold_pack", defines, (rw, rows), None,
               rows, channels, rw, acc, thresh, flip, out)
    else:
        out = Tensor(acc.runtime, acc.shape, "float32")
        launch_op(acc.runtime, "pack", "threshold_sign", defines, (channels, rows), None,
               rows, channels, acc, thresh, flip, out)
    return out
