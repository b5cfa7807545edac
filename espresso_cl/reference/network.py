"""Reference forward pass of a whole network, layer by layer, the obvious way.

No folding and no reordering: batch-norm is evaluated in float64 as written, sign after it,
pooling where the layer stands. A device model that folds batch-norm + sign into integer
thresholds and pools packed bits must give exactly these answers.
"""

from __future__ import annotations

import numpy as np

from .bits import sign
from .conv import conv2d
from .pool import maxpool


def _to_float(value: np.ndarray) -> np.ndarray:
    return np.asarray(value, np.float64)


def layer_forward(layer, value: np.ndarray) -> np.ndarray:
    """One layer on a batch: uint8 / int8 +-1 / int64 / float64 arrays as the layer's kinds say."""
    kind = layer.input_spec.kind
    name = layer.type_name
    if name == "binary_dense":
        # float64 products of small integers are exact (|sum| < 2**53) and BLAS-fast.
        out = _to_float(value) @ layer.weight_pm1().T.astype(np.float64)
        return out if kind == "float" else np.rint(out).astype(np.int64)
    if name == "binary_conv2d":
        pad = 1 if layer.pad_value == "one" else 0
        x = _to_float(value) if kind == "float" else np.asarray(value, np.int64)
        return conv2d(x, layer.weight_pm1(), layer.stride, layer.padding, pad)
    if name == "dense":
        p = layer.params()
        out = _to_float(value) @ p["weight"].astype(np.float64).T
        return out + p["bias"] if layer.use_bias else out
    if name == "conv2d":
        p = layer.params()
        out = conv2d(_to_float(value), p["weight"].astype(np.float64), layer.stride, layer.padding, 0)
        return out + p["bias"] if layer.use_bias else out
    if name == "maxpool2d":
        return maxpool(value, layer.kernel_size, layer.stride, layer.padding)
    if name == "batch_norm":
        p = {k: v.astype(np.float64) for k, v in layer.params().items()}
        return p["gamma"] * (_to_float(value) - p["mean"]) / np.sqrt(p["var"] + layer.eps) + p["beta"]
    if name == "sign":
        return sign(value)
    if name == "flatten":
        return np.asarray(value).reshape(len(value), -1)
    if name == "softmax":
        x = _to_float(value)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise TypeError(f"no reference for layer type {name!r}")


def forward(layers, x: np.ndarray) -> np.ndarray:
    """The network's output for batch ``x`` (uint8 pixels or floats, batch axis first)."""
    value = x
    for layer in layers:
        value = layer_forward(layer, value)
    return value
