"""What the layers with +-1 weights share: packed sign-bit storage and integer accumulators."""

from __future__ import annotations

import numpy as np

from ..bitpack import pack_signs, unpack_signs
from ..layout import storage_shape
from .base import Layer, Spec


class BinaryWeights(Layer):
    """Weights kept as packed sign bits (1 bit each), packed like the layer's input rows."""

    reads_bit_planes = True

    def _store(self, key, value):
        if key != "weight":
            return super()._store(key, value)
        self._params[key] = pack_signs(value, self.weight_segment())

    def weight_segment(self) -> int:
        """Channels packed together in a weight row: the segment of the input rows it multiplies."""
        raise NotImplementedError

    def stored_shapes(self):
        shapes = super().stored_shapes()
        weight = self.param_shapes()["weight"]
        shapes["weight"] = (storage_shape(weight, "bits", self.weight_segment()), np.dtype(np.uint32))
        return shapes

    def weight_pm1(self) -> np.ndarray:
        """The weights as int8 +-1, shaped like the ``weight`` parameter."""
        shape = self.param_shapes()["weight"]
        flat = unpack_signs(self._params["weight"], shape[-1], self.weight_segment())
        return flat.reshape(shape)

    def _multiplies_bits(self) -> bool:
        """Whether binary mode multiplies this layer's input as bits (pm1) or bit planes (uint8),
        rather than as float32 with +-1 float weights."""
        return self.input_spec.kind in ("pm1", "uint8")


def acc_range(spec: Spec, fan_in: int) -> tuple:
    """Range of an exact integer dot product of ``fan_in`` inputs of ``spec`` with +-1 weights."""
    top = 255 if spec.kind == "uint8" else 1
    return (-top * fan_in, top * fan_in)


def check_binary_input(layer: Layer, spec: Spec) -> None:
    if spec.kind == "int":
        raise layer._fail("takes uint8, +-1 or float input, got integer accumulators; "
                          "add BatchNorm and Sign (or Sign) before it")
