"""Turning a list of built layers into device steps for one runtime and one mode.

Each layer says what its step is (``Layer.plan``), built from the device operations of a
:class:`Planner`, and which of the layers after it that step folds (:mod:`espresso_cl.fusion`).
Binary mode keeps +-1 values as packed bits and folds batch-norm + sign into integer
thresholds; float mode runs the same network in float32 through the float kernels (+-1 as
floats, pooling where it stands). Both modes use the same integer thresholds: float32
accumulators of +-1 products are exact integers (below 2**24), so the two modes give identical
predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import fold, ops, registry
from .bitpack import pack_signs
from .fusion import SignFold, lower
from .tensor import Tensor

MODES = ("binary", "float")

Step = Callable[[Tensor], Tensor]


@dataclass
class Plan:
    """Device steps of a model, with the parameters they hold on the device."""

    mode: str
    input_kind: str          # tensor kind to upload the input as
    steps: list              # (description, Step)
    output_kind: str         # spec kind of the last layer
    to_float: Step | None    # the output as float32 real values, where it is not already

    def run(self, x: Tensor) -> Tensor:
        for _, step in self.steps:
            x = step(x)
        return x


def rows_view(t: Tensor) -> Tensor:
    """Bits (batch, ..., C) with segments -> (rows, segment) view, the form unpack takes."""
    seg = t.segment
    rows = int(np.prod(t.shape)) // seg
    return t.reshape((rows, seg), segment=seg)


class Planner:
    """The device operations layers build their steps from, for one runtime and one mode.

    Parameters are uploaded when a step is built; the steps hold them.
    """

    def __init__(self, runtime, mode: str):
        self.runtime = runtime
        self.binary = mode == "binary"

    # -- what the device fuses -------------------------------------------------------------
    def fuses_dense_threshold(self) -> bool:
        """Whether a GEMM on packed bits applies a folded [BatchNorm ->] Sign in its launch."""
        return registry.can_run("bgemm_threshold", self.runtime.profile)

    def fuses_dense_affine(self) -> bool:
        """Whether a GEMM on packed bits applies a per-column scale and shift in its launch."""
        return registry.can_run("bgemm_affine", self.runtime.profile)

    def fuses_conv_threshold(self, pad_value: str, pooled: bool = False) -> bool:
        """Whether a binary convolution with ``pad_value`` padding applies a folded [BatchNorm ->]
        Sign (and, where ``pooled``, the max-pool next to it) in its launch."""
        return registry.can_run("bconv2d_threshold", self.runtime.profile, pad_value, pooled)

    def fuses_bitplane_threshold(self) -> bool:
        """Whether the uint8 first layer's bit-plane product applies it in its launch."""
        return registry.can_run("bitplane_conv2d_threshold", self.runtime.profile)

    # -- parameters --------------------------------------------------------------------------
    def upload(self, array: np.ndarray, kind: str, **kw) -> Tensor:
        return Tensor.from_numpy(self.runtime, array, kind, **kw)

    def packed_weights(self, layer) -> Tensor:
        """A binary layer's weights as the packed bits it stores."""
        return self.upload(layer.params()["weight"], "bits", shape=layer.param_shapes()["weight"],
                           segment=layer.weight_segment())

    def pm1_weights(self, layer) -> Tensor:
        """A binary layer's weights as float32 +-1, for float products."""
        return self.upload(layer.weight_pm1().astype(np.float32), "float32")

    def thresholds(self, acc_spec, folded: SignFold) -> tuple:
        """Device int32 ``(thresh, flip)`` of ``folded`` on accumulators of ``acc_spec``."""
        return self._thresholds(acc_spec, folded)[:2]

    def _thresholds(self, acc_spec, folded: SignFold) -> tuple:
        thresh, flip = folded.thresholds(acc_spec)
        return self.upload(thresh, "int32"), self.upload(flip, "int32"), flip

    def _and_mask(self, and_channels: np.ndarray) -> Tensor:
        """Per-channel flags (C,) -> one packed row, bit set where pooling takes the AND."""
        return self.upload(pack_signs(np.where(and_channels > 0, 1, -1)), "bits", shape=and_channels.shape)

    # -- steps ---------------------------------------------------------------------------------
    def chain(self, *steps: Step | None) -> Step:
        """The steps one after the other; None ones left out."""
        steps = [s for s in steps if s is not None]

        def run(x: Tensor) -> Tensor:
            for s in steps:
                x = s(x)
            return x

        return run

    def threshold(self, acc_spec, folded: SignFold, packed: bool) -> tuple[Step, np.ndarray]:
        """The step applying ``folded`` to accumulators of ``acc_spec`` (bits if ``packed``, else
        float +-1), and its host flip flags."""
        t_thresh, t_flip, flip = self._thresholds(acc_spec, folded)
        return (lambda x: ops.threshold(x, t_thresh, t_flip, packed=packed)), flip

    def affine(self, channels: int, batch_norm=None, bias=None) -> Step:
        """``batch_norm(x + bias)`` per channel, either of them absent."""
        t_scale, t_shift = self.affine_params(channels, batch_norm, bias)
        return lambda x: ops.affine(x, t_scale, t_shift)

    def affine_params(self, channels: int, batch_norm=None, bias=None) -> tuple:
        """Device float32 ``(scale, shift)`` of ``batch_norm(x + bias)`` per channel."""
        bn = batch_norm.bn_params() if batch_norm is not None else None
        scale, shift = fold.affine(bn, channels, bias)
        return self.upload(scale, "float32"), self.upload(shift, "float32")

    def to_float(self, spec) -> Step | None:
        """A step turning a value of ``spec`` into float32 real values, or None if it already is."""
        if not self.binary or spec.kind == "float":
            return None
        if spec.kind == "pm1":
            return lambda x: ops.unpack_sign(rows_view(x)).reshape(x.shape)
        if spec.kind == "int":
            return self.affine(spec.shape[-1])
        raise TypeError(f"cannot turn {spec.kind} into float on the device")

    def sign(self) -> Step:
        """Sign of float values: packed bits in binary mode, float +-1 in float mode."""
        return ops.pack_sign if self.binary else ops.sign_float

    def softmax(self) -> Step:
        return ops.softmax

    def reshape(self, shape: tuple) -> Step:
        """Each sample to ``shape`` (free on packed bits: segments keep their padding)."""
        return lambda x: x.reshape((x.shape[0],) + tuple(shape))

    def bgemm(self, w: Tensor) -> Step:
        return lambda x: ops.bgemm(x, w)

    def bgemm_threshold(self, w: Tensor, thresholds: tuple) -> Step:
        """bgemm with the folded sign ``thresholds`` (:meth:`thresholds`) in its launch."""
        return lambda x: ops.bgemm_threshold(x, w, *thresholds)

    def bgemm_affine(self, w: Tensor, params: tuple) -> Step:
        """bgemm with the per-column ``(scale, shift)`` (:meth:`affine_params`) in its launch."""
        return lambda x: ops.bgemm_affine(x, w, *params)

    def fgemm(self, w: Tensor) -> Step:
        return lambda x: ops.fgemm(x, w)

    def bitplane_dense(self, w: Tensor, thresholds: tuple = ()) -> Step:
        """uint8 (N, F) x +-1 (units, F): the 1x1 case of the bit-plane convolution; with
        ``thresholds`` (:meth:`thresholds`), the folded sign after it, packed."""
        units, f = w.shape
        # One view for every call, so that what the kernel derives from the weights is kept.
        filters = w.reshape((units, 1, 1, f))
        op = ops.bitplane_conv2d_threshold if thresholds else ops.bitplane_conv2d

        def step(x: Tensor) -> Tensor:
            n = x.shape[0]
            out = op(x.reshape((n, 1, 1, f)), filters, *thresholds, 1, "valid")
            return out.reshape((n, units))

        return step

    def bitplane_conv(self, w: Tensor, layer, thresholds: tuple = ()) -> Step:
        """uint8 images x +-1 filters by bit planes; with ``thresholds``, the folded sign, packed."""
        op = ops.bitplane_conv2d_threshold if thresholds else ops.bitplane_conv2d
        return lambda x: op(x, w, *thresholds, layer.stride, layer.padding)

    def bconv(self, w: Tensor, layer) -> Step:
        return lambda x: ops.bconv2d(x, w, layer.stride, layer.padding, pad_value=layer.pad_value)

    def bconv_threshold(self, w: Tensor, layer, thresholds: tuple, pool=None, and_flips: bool = False) -> Step:
        """bconv with the folded sign ``thresholds`` (:meth:`thresholds`) in its launch, and the
        max-pool layer ``pool`` of the bits (AND in flipped channels where ``and_flips``)."""
        window = None if pool is None else (pool.kernel_size, pool.stride, pool.padding)
        return lambda x: ops.bconv2d_threshold(x, w, *thresholds, layer.stride, layer.padding,
                                               layer.pad_value, window, and_flips)

    def fconv(self, w: Tensor, layer, pad_value: str) -> Step:
        return lambda x: ops.fconv2d(x, w, layer.stride, layer.padding, pad_value=pad_value)

    def pool(self, layer) -> Step:
        return lambda x: ops.maxpool(x, layer.kernel_size, layer.stride, layer.padding)

    def pool_bits(self, layer, and_channels: np.ndarray) -> Step:
        """Max-pooling of packed bits: OR per channel, AND where ``and_channels`` (C,) is set."""
        mask = self._and_mask(and_channels)
        return lambda x: ops.maxpool_bits(x, mask, layer.kernel_size, layer.stride, layer.padding)


def compile_plan(runtime, layers, input_kind: str, mode: str) -> Plan:
    """Device steps for ``layers`` (already built) in ``mode`` ('binary' or 'float')."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    planner = Planner(runtime, mode)
    # uint8 input stays uint8 only where a binary layer reads it by bit planes (after a Flatten,
    # say, of a Keras MLP's image input).
    first = next((layer for layer in layers if not layer.reshapes_only), layers[0])
    bit_planes = planner.binary and input_kind == "uint8" and first.reads_bit_planes
    steps = [(" + ".join(layer.name for layer in run), step)
             for run, step in lower(layers, lambda layer, following: layer.plan(planner, following))
             if step is not None]
    output = layers[-1].output_spec
    return Plan(mode, "uint8" if bit_planes else "float32", steps, output.kind, planner.to_float(output))
