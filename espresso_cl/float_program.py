"""A network as float32 operations: the baselines' program, and its NumPy forward.

The program computes the function the espresso_cl model computes, in float32 throughout: +-1
activations and weights as floats, convolutions as im2col + one matmul. Batch-norm followed by
sign is the per-channel comparison :mod:`espresso_cl.fold` derives from it (:class:`Threshold`):
the same function as float batch-norm then sign, at the same cost, without float32 rounding
flipping a sign at the boundary, so outputs of different float32 forwards compare tightly.

Each layer gives its operations (``Layer.float_ops``); :func:`program` walks a model.
Images are NHWC, shapes of values include the batch axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .fusion import lower
from .geometry import ConvGeometry
from .reference import softmax

F32 = np.float32

NumpyStep = Callable[[np.ndarray], np.ndarray]


def _padded(x: np.ndarray, g: ConvGeometry, fill: float) -> np.ndarray:
    """NHWC ``x`` in a frame large enough for every window of ``g``, borders set to ``fill``."""
    n, h, w, c = x.shape
    ph = max((g.oh - 1) * g.stride + g.kh, g.pad_top + h)
    pw = max((g.ow - 1) * g.stride + g.kw, g.pad_left + w)
    if (ph, pw) == (h, w):
        return x
    out = np.full((n, ph, pw, c), fill, F32)
    out[:, g.pad_top:g.pad_top + h, g.pad_left:g.pad_left + w] = x
    return out


def _taps(xp: np.ndarray, g: ConvGeometry):
    span_h, span_w = (g.oh - 1) * g.stride + 1, (g.ow - 1) * g.stride + 1
    for ky in range(g.kh):
        for kx in range(g.kw):
            yield xp[:, ky:ky + span_h:g.stride, kx:kx + span_w:g.stride]


# eq=False: the fields are arrays, which have no single truth value to compare by.
@dataclass(frozen=True, eq=False)
class MatMul:
    """x (N, F) @ weight (units, F).T [+ bias (units,)]."""

    weight: np.ndarray
    bias: np.ndarray | None

    def numpy_step(self) -> NumpyStep:
        wt = np.ascontiguousarray(self.weight.T)
        bias = self.bias
        return lambda x: x @ wt if bias is None else x @ wt + bias


@dataclass(frozen=True, eq=False)
class Conv:
    """NHWC convolution with weight (OC, KH, KW, C) [+ bias (OC,)] over ``geometry``, padded
    taps holding ``pad``."""

    weight: np.ndarray
    bias: np.ndarray | None
    geometry: ConvGeometry
    pad: float

    def numpy_step(self) -> NumpyStep:
        # Columns in (ky, kx, channel) order, the order of the flattened (OC, KH, KW, C) weights.
        wt = np.ascontiguousarray(self.weight.reshape(len(self.weight), -1).T)
        g, pad, bias = self.geometry, self.pad, self.bias

        def conv(x):
            cols = np.concatenate(list(_taps(_padded(x, g, pad), g)), axis=-1)
            out = (cols.reshape(-1, wt.shape[0]) @ wt).reshape(len(x), g.oh, g.ow, -1)
            return out if bias is None else out + bias
        return conv


@dataclass(frozen=True, eq=False)
class MaxPool:
    """NHWC max-pooling over the windows of ``geometry``; padded taps are in no window's max."""

    geometry: ConvGeometry

    def numpy_step(self) -> NumpyStep:
        g = self.geometry

        def pool(x):
            taps = _taps(_padded(x, g, -np.inf), g)
            out = next(taps).copy()
            for tap in taps:
                np.maximum(out, tap, out=out)
            return out
        return pool


@dataclass(frozen=True, eq=False)
class Threshold:
    """+1 where ``x * direction >= bound`` per channel, else -1: ``direction`` is -1 where the
    folded test is ``acc <= thresh`` (bound = -thresh), +1 where it is ``acc >= thresh``."""

    bound: np.ndarray
    direction: np.ndarray

    @classmethod
    def of(cls, thresh: np.ndarray, flip: np.ndarray) -> "Threshold":
        """From the ``(thresh, flip)`` of :func:`espresso_cl.fold.sign_thresholds`."""
        direction = np.where(flip > 0, -1, 1)
        return cls((thresh * direction).astype(F32), direction.astype(F32))

    def numpy_step(self) -> NumpyStep:
        bound, direction = self.bound, self.direction
        return lambda x: np.where(x * direction >= bound, F32(1), F32(-1))


@dataclass(frozen=True, eq=False)
class Affine:
    """x * scale + shift per channel (last axis)."""

    scale: np.ndarray
    shift: np.ndarray

    def numpy_step(self) -> NumpyStep:
        scale, shift = self.scale, self.shift
        return lambda x: x * scale + shift


@dataclass(frozen=True)
class Sign:
    """+1 where x >= 0, else -1."""

    def numpy_step(self) -> NumpyStep:
        return lambda x: np.where(x >= 0, F32(1), F32(-1))


@dataclass(frozen=True)
class Flatten:
    """(N, ...) -> (N, features) in NHWC order."""

    def numpy_step(self) -> NumpyStep:
        return lambda x: x.reshape(len(x), -1)


@dataclass(frozen=True)
class Softmax:
    """Softmax over the last axis."""

    def numpy_step(self) -> NumpyStep:
        return lambda x: softmax(x).astype(F32)


def program(layers) -> list:
    """The float32 operations of built ``layers`` (a model's ``layers``), fusions folded."""
    return [op for _, ops in lower(layers, lambda layer, following: layer.float_ops(following))
            for op in ops]


def numpy_forward(ops: list) -> NumpyStep:
    """A function uint8/float (N, ...) -> float32 output, running ``ops`` in NumPy float32."""
    steps = [op.numpy_step() for op in ops]

    def forward(x: np.ndarray) -> np.ndarray:
        value = x.astype(F32)
        for step in steps:
            value = step(value)
        return value

    return forward
