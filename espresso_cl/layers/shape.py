"""Layers that reshape or normalize without parameters: :class:`Flatten`, :class:`Softmax`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import float_program as fp
from ..reference import softmax
from .base import Layer, Spec


class Flatten(Layer):
    """(h, w, c) -> (h * w * c,) in NHWC order; packed bits keep each pixel's padding (free)."""

    type_name = "flatten"
    reshapes_only = True

    def _infer(self, spec):
        return replace(spec, shape=(spec.size,))

    def plan(self, planner, following):
        return planner.reshape(self.output_spec.shape), 1

    def reference_forward(self, value):
        return np.asarray(value).reshape(len(value), -1)

    def float_ops(self, following):
        return [fp.Flatten()], 1


class Softmax(Layer):
    """Softmax over the last axis of a flat input -> float probabilities."""

    type_name = "softmax"

    def _infer(self, spec):
        if len(spec.shape) != 1:
            raise self._fail(f"expects a flat input (classes,), got {spec.shape}")
        if spec.kind not in ("float", "int"):
            raise self._fail(f"expects real scores, got {spec.kind}")
        return Spec(spec.shape, "float")

    def plan(self, planner, following):
        return planner.chain(planner.to_float(self.input_spec), planner.softmax()), 1

    def reference_forward(self, value):
        return softmax(value)

    def float_ops(self, following):
        return [fp.Softmax()], 1
