"""Reference per-channel affine map, float sign, folded batch-norm thresholds, softmax and argmax."""

from __future__ import annotations

import numpy as np


def affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x (..., C) * scale (C,) + shift (C,), in float64."""
    return np.asarray(x, np.float64) * np.asarray(scale, np.float64) + np.asarray(shift, np.float64)


def sign_float(x: np.ndarray) -> np.ndarray:
    """float32 +1 where x >= 0 (so sign(0) = +1), else -1."""
    return np.where(np.asarray(x) >= 0, 1.0, -1.0).astype(np.float32)


def threshold_sign(acc: np.ndarray, thresh: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """int8 +-1 (..., C): +1 where ``acc <= thresh[c]`` for channels with ``flip[c]``, else
    where ``acc >= thresh[c]`` (the folded batch-norm + sign of ``espresso_cl.fold``)."""
    acc = np.asarray(acc)
    passes = np.where(np.asarray(flip).astype(bool), acc <= thresh, acc >= thresh)
    return np.where(passes, 1, -1).astype(np.int8)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax of each row of x (rows, C), in float64, with the row max subtracted first."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def argmax(x: np.ndarray) -> np.ndarray:
    """int32 (rows,): index of each row's largest value, the first on ties."""
    return np.argmax(np.asarray(x), axis=-1).astype(np.int32)
