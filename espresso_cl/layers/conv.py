"""2-D convolutions, NHWC: +-1 weights (:class:`BinaryConv2D`) and float32 weights (:class:`Conv2D`)."""

from __future__ import annotations

import numpy as np

from .. import checks
from .. import float_program as fp
from ..fusion import sign_after, sign_pool_after
from ..geometry import ConvGeometry, padding_config, padding_of
from ..reference import conv2d
from .base import Layer, Spec, as_float
from .binary import BinaryWeights, acc_range, check_binary_input
from .window import window_geometry

PAD_VALUES = ("zero", "one")


class _Conv(Layer):
    """What both convolutions share: ``padding`` is 'same' (TensorFlow's convention: for
    stride 2 on an even size not PyTorch's), 'valid', an int p (p on every side, PyTorch's
    ``padding=p``), (ph, pw), or ((top, bottom), (left, right)) (:mod:`espresso_cl.geometry`)."""

    use_bias = False

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", name=None):
        super().__init__(name)
        kind = type(self).__name__
        self.filters = checks.size(filters, f"{kind} filters")
        self.kernel_size = checks.size_pair(kernel_size, f"{kind} kernel_size")
        self.stride = checks.size(stride, f"{kind} stride")
        self.padding = padding_of(padding, f"{kind} padding")

    def _config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size), "stride": self.stride,
                "padding": padding_config(self.padding)}

    def param_shapes(self):
        kh, kw = self.kernel_size
        shapes = {"weight": (self.filters, kh, kw, self.input_spec.shape[2])}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def geometry(self) -> ConvGeometry:
        return window_geometry(self, self.input_spec)

    def macs(self):
        g = self.geometry()
        return g.oh * g.ow * int(np.prod(self.param_shapes()["weight"]))


class BinaryConv2D(_Conv, BinaryWeights):
    """2-D convolution with +-1 weights (filters, kh, kw, channels), NHWC, no bias.

    pm1 or uint8 input -> exact int accumulators; float input -> float. ``pad_value`` says
    what a padded tap holds: 'zero' (contributes 0, exact zero padding) or 'one' (+1; pm1
    input only)."""

    type_name = "binary_conv2d"

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", pad_value="zero", name=None):
        super().__init__(filters, kernel_size, stride, padding, name)
        self.pad_value = checks.one_of(pad_value, "BinaryConv2D pad_value", PAD_VALUES)

    def _config(self):
        return {**super()._config(), "pad_value": self.pad_value}

    def _infer(self, spec):
        geom = window_geometry(self, spec)
        check_binary_input(self, spec)
        if self.pad_value == "one" and spec.kind != "pm1":
            raise self._fail(f"pad_value='one' needs +-1 input, got {spec.kind}")
        fan_in = self.kernel_size[0] * self.kernel_size[1] * spec.shape[2]
        shape = (geom.oh, geom.ow, self.filters)
        if spec.kind == "float":
            return Spec(shape, "float")
        return Spec(shape, "int", acc_range=acc_range(spec, fan_in))

    def weight_segment(self):
        return self.input_spec.shape[2]

    def plan(self, planner, following):
        if not (planner.binary and self._multiplies_bits()):
            return planner.fconv(planner.pm1_weights(self), self, self.pad_value), 1
        w = planner.packed_weights(self)
        if self.input_spec.kind == "pm1":
            fused = sign_pool_after(following)
            if fused and planner.fuses_conv_threshold(self.pad_value, pooled=fused.pool is not None):
                # The convolution, [BatchNorm +] Sign and the pool around them in one launch.
                thresholds = planner.thresholds(self.output_spec, fused.sign)
                return planner.bconv_threshold(w, self, thresholds, fused.pool, fused.and_flips), fused.consumed
            return planner.bconv(w, self), 1
        folded = sign_after(following)
        if folded and planner.fuses_bitplane_threshold():
            thresholds = planner.thresholds(self.output_spec, folded)
            return planner.bitplane_conv(w, self, thresholds), folded.consumed
        return planner.bitplane_conv(w, self), 1

    def reference_forward(self, value):
        pad = 1 if self.pad_value == "one" else 0
        x = as_float(value) if self.input_spec.kind == "float" else np.asarray(value, np.int64)
        return conv2d(x, self.weight_pm1(), self.stride, self.padding, pad)

    def float_ops(self, following):
        pad = 1.0 if self.pad_value == "one" else 0.0
        return [fp.Conv(self.weight_pm1().astype(fp.F32), None, self.geometry(), pad)], 1


class Conv2D(_Conv):
    """2-D convolution with float32 weights (filters, kh, kw, channels), NHWC, zero padding -> float."""

    type_name = "conv2d"

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", use_bias=True, name=None):
        super().__init__(filters, kernel_size, stride, padding, name)
        self.use_bias = checks.boolean(use_bias, "Conv2D use_bias")

    def _config(self):
        return {**super()._config(), "use_bias": self.use_bias}

    def _infer(self, spec):
        geom = window_geometry(self, spec)
        return Spec((geom.oh, geom.ow, self.filters), "float")

    def plan(self, planner, following):
        p = self.params()
        product = planner.fconv(planner.upload(p["weight"], "float32"), self, "zero")
        bias = planner.affine(self.filters, bias=p["bias"]) if self.use_bias else None
        return planner.chain(planner.to_float(self.input_spec), product, bias), 1

    def reference_forward(self, value):
        p = self.params()
        out = conv2d(as_float(value), p["weight"].astype(np.float64), self.stride, self.padding, 0)
        return out + p["bias"] if self.use_bias else out

    def float_ops(self, following):
        p = self.params()
        bias = p["bias"].astype(fp.F32) if self.use_bias else None
        return [fp.Conv(p["weight"].astype(fp.F32), bias, self.geometry(), 0.0)], 1
