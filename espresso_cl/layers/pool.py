"""Max-pooling (:class:`MaxPool2D`), NHWC; on packed bits in binary mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import checks
from .. import float_program as fp
from ..fusion import Pooler, pool_batch_norm_sign
from ..geometry import ConvGeometry, padding_config, padding_of
from ..reference import maxpool
from .base import Layer
from .window import window_geometry


class MaxPool2D(Layer, Pooler):
    """Max-pooling over (ph, pw) windows, NHWC; the kind is kept (pm1 pools on packed bits).
    ``padding`` as for convolutions (:func:`espresso_cl.geometry.padding_of`); padded taps
    take no part in a max, as PyTorch's -inf padding."""

    type_name = "maxpool2d"

    def __init__(self, pool_size=2, stride=None, padding="valid", name=None):
        super().__init__(name)
        self.kernel_size = checks.size_pair(pool_size, "MaxPool2D pool_size")
        self.stride = self.kernel_size[0] if stride is None else checks.size(stride, "MaxPool2D stride")
        self.padding = padding_of(padding, "MaxPool2D padding")

    def _config(self):
        return {"pool_size": list(self.kernel_size), "stride": self.stride,
                "padding": padding_config(self.padding)}

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("pooling raw uint8 input is not supported; pool after the first layer")
        geom = window_geometry(self, spec)
        if not geom.every_window_meets_the_image():
            raise self._fail(f"padding {self.padding} leaves a window with no pixel of the image "
                             f"(a max of nothing); pad less than the window on each side")
        return replace(spec, shape=(geom.oh, geom.ow, spec.shape[2]))

    def geometry(self) -> ConvGeometry:
        return window_geometry(self, self.input_spec)

    def plan(self, planner, following):
        spec = self.input_spec
        folded = pool_batch_norm_sign(self, following)
        if folded and planner.binary:
            # Threshold first, then pool the bits: AND where the folded test is flipped.
            threshold, flip = planner.threshold(spec, folded, packed=True)
            return planner.chain(threshold, planner.pool_bits(self, flip)), folded.consumed
        if folded:
            threshold, _ = planner.threshold(spec, folded, packed=False)
            return planner.chain(planner.pool(self), threshold), folded.consumed
        if spec.kind == "pm1" and planner.binary:
            return planner.pool_bits(self, np.zeros(spec.shape[-1], np.int32)), 1
        return planner.pool(self), 1

    def reference_forward(self, value):
        return maxpool(value, self.kernel_size, self.stride, self.padding)

    def float_ops(self, following):
        return [fp.MaxPool(self.geometry())], 1
