"""Folding batch-norm (and a float layer's bias) into per-channel constants, on the host in float64.

Batch-norm followed by sign on an integer accumulator becomes one integer threshold per
channel: ``sign(gamma * (acc - mean) / sqrt(var + eps) + beta)`` is +1 exactly when

- gamma > 0: ``acc >= ceil(t)``,
- gamma < 0: ``acc <= floor(t)`` (the comparison flips),
- gamma = 0: always (beta >= 0) or never (beta < 0),

with ``t = mean - beta * sqrt(var + eps) / gamma``. Thresholds are clamped to the
accumulator's range, so they always fit an int32 and "always" / "never" stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchNormParams:
    """Per-channel batch-norm statistics and affine parameters (float64, shape (C,))."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float

    def __post_init__(self):
        shapes = {name: np.shape(getattr(self, name)) for name in ("gamma", "beta", "mean", "var")}
        if len(set(shapes.values())) != 1 or len(shapes["gamma"]) != 1:
            raise ValueError(f"batch-norm parameters must be vectors of one length, got shapes {shapes}")
        for name in ("gamma", "beta", "mean", "var"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"batch-norm {name} holds NaN or infinity")
        if np.any(np.asarray(self.var) < 0) or not self.eps >= 0:
            raise ValueError("batch-norm variance and eps must be non-negative")
        if np.any(np.asarray(self.var) + self.eps <= 0):
            raise ValueError("batch-norm var + eps must be positive")

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.asarray(self.var, np.float64) + self.eps)


def sign_thresholds(bn: BatchNormParams | None, acc_min: int, acc_max: int, channels: int):
    """int32 ``(thresh, flip)`` for ``sign(bn(acc))`` (bn None: ``sign(acc)``) on accumulators
    in [acc_min, acc_max]."""
    if bn is None:
        return np.zeros(channels, np.int32), np.zeros(channels, np.int32)
    if len(bn.gamma) != channels:
        raise ValueError(f"batch-norm has {len(bn.gamma)} channels, its input {channels}")
    gamma = np.asarray(bn.gamma, np.float64)
    beta = np.asarray(bn.beta, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.asarray(bn.mean, np.float64) - beta * bn.std / gamma
    positive, negative = gamma > 0, gamma < 0
    # Clamp first: outside the accumulator range only "always" or "never" matter.
    t = np.clip(np.nan_to_num(t), acc_min - 1.0, acc_max + 1.0)
    thresh = np.where(positive, np.ceil(t), np.where(negative, np.floor(t), 0.0))
    constant_pass = beta >= 0
    thresh = np.where(gamma == 0, np.where(constant_pass, acc_min, acc_max + 1), thresh)
    flip = negative.astype(np.int32)
    return thresh.astype(np.int32), flip


def affine(bn: BatchNormParams | None, channels: int, bias=None):
    """float32 ``(scale, shift)`` with ``bn(x + bias) = x * scale + shift`` (bn None: identity)."""
    bias = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
    if bn is None:
        return np.ones(channels, np.float32), bias.astype(np.float32)
    scale = np.asarray(bn.gamma, np.float64) / bn.std
    shift = np.asarray(bn.beta, np.float64) + (bias - np.asarray(bn.mean, np.float64)) * scale
    return scale.astype(np.float32), shift.astype(np.float32)
