"""Launchers of kernels/affine.cl (per-channel affine, float sign) and kernels/softmax.cl."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .launch import launch_op


def _rows_of(x: Tensor, kinds: tuple, what: str) -> tuple[int, int]:
    """(rows, C) of x viewed as rows of its last axis, after checking its kind."""
    if x.kind not in kinds:
        raise TypeError(f"{what} takes {' or '.join(kinds)}, got {x.kind}")
    return int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1]


def affine(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """int32 or float32 x (..., C) -> float32 (..., C) = x * scale[c] + shift[c].

    scale and shift are float32 (C,). Serves float batch-norm (folded into scale and shift),
    bias add and int -> float conversion.
    """
    rows, channels = _rows_of(x, ("int32", "float32"), "affine")
    if scale.kind != "float32" or shift.kind != "float32":
        raise TypeError(f"affine takes float32 scale and shift, got {scale.kind} and {shift.kind}")
    if scale.shape != (channels,) or shift.shape != (channels,):
        raise ValueError(f"affine needs scale and shift of shape ({channels},), "
                         f"got {scale.shape} and {shift.shape}")
    runtime = x.runtime
    defines = {"IN_T": "int" if x.kind == "int32" else "float"}
    out = Tensor(runtime, x.shape, "float32")
    launch_op(runtime, "affine", "affine", defines, (channels, rows), None,
           rows, channels, x, scale, shift, out)
    return out


def sign_float(x: Tensor) -> Tensor:
    """float32 x (any shape) -> float32 +1 / -1 of the same shape, sign(0) = +1."""
    rows, channels = _rows_of(x, ("float32",), "sign_float")
    runtime = x.runtime
    out = Tensor(runtime, x.shape, "float32")
    count = rows * channels
    launch_op(runtime, "affine", "sign_float", None, (count,), None, count, x, out)
    return out


def _check_matrix(x: Tensor, what: str) -> tuple[int, int]:
    rows, channels = _rows_of(x, ("float32",), what)
    if len(x.shape) != 2:
        raise ValueError(f"{what} takes a (rows, C) array, got shape {x.shape}")
    return rows, channels


def softmax(x: Tensor) -> Tensor:
    """float32 (rows, C) -> float32 (rows, C): softmax of each row."""
    rows, channels = _check_matrix(x, "softmax")
    runtime = x.runtime
    out = Tensor(runtime, x.shape, "float32")
    launch_op(runtime, "softmax", "softmax", None, (rows,), None,
           rows, channels, x, out)
    return out


def argmax(x: Tensor) -> Tensor:
    """float32 (rows, C) -> int32 (rows,): index of each row's largest value, the first on ties."""
    rows, channels = _check_matrix(x, "argmax")
    runtime = x.runtime
    out = Tensor(runtime, (rows,), "int32")
    launch_op(runtime, "softmax", "argmax", None, (rows,), None,
           rows, channels, x, out)
    return out
