"""Turning a list of built layers into device steps for one runtime and one mode.

Binary mode keeps +-1 values as packed bits and folds:

- int accumulators -> BatchNorm -> Sign            into one threshold kernel writing bits;
  on CPU profiles (``ops.supports_fused_threshold``) a BinaryDense on packed bits followed by
  [BatchNorm ->] Sign is one launch, the GEMM with that threshold as its epilogue, and on the
  AVX-512 profile (``ops.supports_bitplane_threshold``) so is the uint8 first layer's bit-plane
  product (after its bitplane_pack);
- int accumulators -> MaxPool -> BatchNorm -> Sign into the threshold, then max-pooling on
  packed bits: OR for channels whose folded test is ``acc >= t`` (sign is non-decreasing in
  acc, so sign(max) = max(sign)), AND where gamma < 0 flips it to ``acc <= t``.

Float mode runs the same network in float32 through the float kernels (+-1 as floats, pooling
where it stands). Both modes use the same integer thresholds: float32 accumulators of +-1
products are exact integers (below 2**24), so the two modes give identical predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import fold, ops, reference
from .layers import BatchNorm, Sign
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

    def run(self, x: Tensor) -> Tensor:
        for _, step in self.steps:
            x = step(x)
        return x


def _upload(runtime, array: np.ndarray, kind: str, **kw) -> Tensor:
    return Tensor.from_numpy(runtime, array, kind, **kw)


def rows_view(t: Tensor) -> Tensor:
    """Bits (batch, ..., C) with segments -> (rows, segment) view, the form unpack takes."""
    seg = t.segment
    rows = int(np.prod(t.shape)) // seg
    return t.reshape((rows, seg), segment=seg)


def _binary_weight_float(runtime, layer) -> Tensor:
    """+-1 float32 weights of a binary layer, for float mode."""
    return _upload(runtime, layer.weight_pm1().astype(np.float32), "float32")


def _thresholds(runtime, spec, bn_layer) -> tuple[Tensor, Tensor, np.ndarray]:
    """Device int32 (thresh, flip) of sign(bn(acc)) for accumulators of ``spec``, and flip."""
    lo, hi = spec.acc_range
    channels = spec.shape[-1]
    bn = bn_layer.bn_params() if bn_layer is not None else None
    thresh, flip = fold.sign_thresholds(bn, lo, hi, channels)
    return _upload(runtime, thresh, "int32"), _upload(runtime, flip, "int32"), flip


def _threshold_step(runtime, spec, bn_layer, packed: bool) -> tuple[Step, np.ndarray]:
    t_thresh, t_flip, flip = _thresholds(runtime, spec, bn_layer)

    def step(x: Tensor) -> Tensor:
        return ops.threshold(x, t_thresh, t_flip, packed=packed)

    return step, flip


def _affine_step(runtime, channels, bn_layer=None, bias=None) -> Step:
    bn = bn_layer.bn_params() if bn_layer is not None else None
    scale, shift = fold.affine(bn, channels, bias)
    t_scale, t_shift = _upload(runtime, scale, "float32"), _upload(runtime, shift, "float32")
    return lambda x: ops.affine(x, t_scale, t_shift)


def _chain(*steps: Step | None) -> Step:
    steps = [s for s in steps if s is not None]

    def run(x: Tensor) -> Tensor:
        for s in steps:
            x = s(x)
        return x

    return run


def _to_float_step(runtime, spec, mode) -> Step | None:
    """A step turning a value of ``spec`` into float32 real values, or None if it already is."""
    if mode == "float" or spec.kind == "float":
        return None
    if spec.kind == "pm1":
        return lambda x: ops.unpack_sign(rows_view(x)).reshape(x.shape)
    if spec.kind == "int":
        return _affine_step(runtime, spec.shape[-1])
    raise TypeError(f"cannot turn {spec.kind} into float on the device")


def compile_plan(runtime, layers, input_kind: str, mode: str) -> Plan:
    """Device steps for ``layers`` (already built) in ``mode`` ('binary' or 'float')."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    binary = mode == "binary"
    # uint8 input stays uint8 only where a binary layer reads it by bit planes.
    first = layers[0]
    bitplane = binary and input_kind == "uint8" and first.type_name in ("binary_dense", "binary_conv2d")
    upload_kind = "uint8" if bitplane else "float32"
    steps = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        spec = layer.input_spec
        after = layers[i + 1:i + 4]
        name = layer.type_name
        consumed = 1

        if name == "binary_dense":
            if binary and spec.kind in ("pm1", "uint8"):
                w = _upload(runtime, layer.params()["weight"], "bits",
                            shape=(layer.units, spec.shape[0]), segment=layer._weight_segment())
                if spec.kind == "uint8" and ops.supports_bitplane_threshold(runtime) and _sign_follows(after):
                    # Bit-plane layer + [BatchNorm +] Sign: bitplane_pack + one launch (AVX-512).
                    threshold, consumed = _folded_sign(runtime, layer, after)
                    step = _bitplane_dense(w, threshold)
                elif spec.kind == "uint8":
                    step = _bitplane_dense(w)
                elif ops.supports_fused_threshold(runtime) and _sign_follows(after):
                    # GEMM + [BatchNorm +] Sign in one launch (CPU profiles).
                    threshold, consumed = _folded_sign(runtime, layer, after)
                    step = _bgemm_threshold(w, *threshold)
                else:
                    step = _bgemm(w)
            else:
                wf = _binary_weight_float(runtime, layer)
                step = _fgemm(wf)
        elif name == "dense":
            p = layer.params()
            wf = _upload(runtime, p["weight"], "float32")
            bias = _affine_step(runtime, layer.units, bias=p["bias"]) if layer.use_bias else None
            step = _chain(_to_float_step(runtime, spec, mode), _fgemm(wf), bias)
        elif name == "binary_conv2d":
            if binary and spec.kind in ("pm1", "uint8"):
                w = _upload(runtime, layer.params()["weight"], "bits",
                            shape=layer.param_shapes()["weight"])
                if spec.kind == "uint8" and ops.supports_bitplane_threshold(runtime) and _sign_follows(after):
                    threshold, consumed = _folded_sign(runtime, layer, after)
                    step = _bitplane_conv(w, layer, threshold)
                elif spec.kind == "uint8":
                    step = _conv(ops.bitplane_conv2d, w, layer, pad_value=None)
                else:
                    step = _conv(ops.bconv2d, w, layer, pad_value=layer.pad_value)
            else:
                wf = _binary_weight_float(runtime, layer)
                step = _conv(ops.fconv2d, wf, layer, pad_value=layer.pad_value)
        elif name == "conv2d":
            p = layer.params()
            wf = _upload(runtime, p["weight"], "float32")
            bias = _affine_step(runtime, layer.filters, bias=p["bias"]) if layer.use_bias else None
            step = _chain(_to_float_step(runtime, spec, mode),
                          _conv(ops.fconv2d, wf, layer, pad_value="zero"), bias)
        elif name == "batch_norm":
            if spec.kind == "int" and after[:1] and isinstance(after[0], Sign):
                step, _ = _threshold_step(runtime, spec, layer, packed=binary)
                consumed = 2
            else:
                step = _affine_step(runtime, spec.shape[-1], layer)
        elif name == "maxpool2d":
            fused = (spec.kind == "int" and len(after) >= 2 and isinstance(after[0], BatchNorm)
                     and isinstance(after[1], Sign))
            if fused and binary:
                thresh_step, flip = _threshold_step(runtime, spec, after[0], packed=True)
                mask = _upload(runtime, _flip_mask(flip), "bits", shape=(spec.shape[-1],))
                step = _chain(thresh_step, _pool_bits(layer, mask))
                consumed = 3
            elif fused:
                thresh_step, _ = _threshold_step(runtime, spec, after[0], packed=False)
                step = _chain(_pool(layer), thresh_step)
                consumed = 3
            elif spec.kind == "pm1" and binary:
                zeros = _upload(runtime, _flip_mask(np.zeros(spec.shape[-1], np.int32)), "bits",
                                shape=(spec.shape[-1],))
                step = _pool_bits(layer, zeros)
            else:
                step = _pool(layer)
        elif name == "sign":
            if spec.kind == "pm1":
                step = None
            elif spec.kind == "int":
                step, _ = _threshold_step(runtime, spec, None, packed=binary)
            else:
                step = ops.pack_sign if binary else ops.sign_float
        elif name == "flatten":
            out = layer.output_spec

            def step(x: Tensor, _shape=out.shape) -> Tensor:
                return x.reshape((x.shape[0],) + _shape)
        elif name == "softmax":
            step = _chain(_to_float_step(runtime, spec, mode), ops.softmax)
        else:
            raise TypeError(f"layer {layer.name!r}: no device implementation for {name!r}")

        if step is not None:
            label = " + ".join(layer.name for layer in layers[i:i + consumed])
            steps.append((label, step))
        i += consumed
    return Plan(mode, upload_kind, steps, layers[-1].output_spec.kind)


def _flip_mask(flip: np.ndarray) -> np.ndarray:
    """Per-channel flags -> one packed row (bit set = pool with AND)."""
    return reference.pack_bits(np.where(flip > 0, 1, -1))


def _sign_follows(after) -> bool:
    """Whether the layers after an accumulator-producing one start with [BatchNorm ->] Sign."""
    if after[:1] and isinstance(after[0], Sign):
        return True
    return len(after) >= 2 and isinstance(after[0], BatchNorm) and isinstance(after[1], Sign)


def _bgemm_threshold(w: Tensor, thresh: Tensor, flip: Tensor) -> Step:
    return lambda x: ops.bgemm_threshold(x, w, thresh, flip)


def _bgemm(w: Tensor) -> Step:
    def step(x: Tensor) -> Tensor:
        return ops.bgemm(x, w)

    return step


def _fgemm(w: Tensor) -> Step:
    return lambda x: ops.fgemm(x, w)


def _bitplane_dense(w: Tensor, threshold: tuple = ()) -> Step:
    """uint8 (N, F) x +-1 (units, F): the 1x1 case of the bit-plane convolution; with
    ``threshold`` (thresh, flip), the fused [BatchNorm +] Sign after it, packed."""
    units, f = w.shape
    # One view for every call, so that what the kernel derives from the weights is kept.
    filters = w.reshape((units, 1, 1, f))
    op = ops.bitplane_conv2d_threshold if threshold else ops.bitplane_conv2d

    def step(x: Tensor) -> Tensor:
        n = x.shape[0]
        out = op(x.reshape((n, 1, 1, f)), filters, *threshold, 1, "valid")
        return out.reshape((n, units))

    return step


def _bitplane_conv(w: Tensor, layer, threshold: tuple) -> Step:
    return lambda x: ops.bitplane_conv2d_threshold(x, w, *threshold, layer.stride, layer.padding)


def _folded_sign(runtime, layer, after) -> tuple[tuple, int]:
    """The [BatchNorm ->] Sign after ``layer`` as device thresholds (thresh, flip) for a fused
    step, and how many layers that step consumes (``layer`` included)."""
    bn_layer = after[0] if isinstance(after[0], BatchNorm) else None
    t_thresh, t_flip, _ = _thresholds(runtime, layer.output_spec, bn_layer)
    return (t_thresh, t_flip), 3 if bn_layer is not None else 2


def _conv(op, w: Tensor, layer, pad_value) -> Step:
    kwargs = {} if pad_value is None else {"pad_value": pad_value}
    return lambda x: op(x, w, layer.stride, layer.padding, **kwargs)


def _pool(layer) -> Step:
    return lambda x: ops.maxpool(x, layer.kernel_size, layer.stride, layer.padding)


def _pool_bits(layer, mask: Tensor) -> Step:
    return lambda x: ops.maxpool_bits(x, mask, layer.kernel_size, layer.stride, layer.padding)
