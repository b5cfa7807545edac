"""Declarative layers: configuration, parameters and shape inference; no device code.

Values flowing between layers have a *kind*:

``uint8``  real 8-bit input (pixels)
``float``  real values
``int``    exact integer accumulators of a binary layer (range known)
``pm1``    +-1 values: packed bits on the device in binary mode, float +-1 in float mode

Images are NHWC; shapes here exclude the batch axis. :mod:`espresso_cl.plan` turns a list
of layers into device kernels, folding batch-norm + sign into thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import reference
from .fold import BatchNormParams
from .geometry import ConvGeometry, PADDINGS
from .layout import storage_shape

PAD_VALUES = ("zero", "one")


class ShapeError(ValueError):
    """A layer cannot take the shape or kind its predecessor produces."""


@dataclass(frozen=True)
class Spec:
    """What flows between layers: per-sample ``shape``, ``kind``, and for kind pm1 the packing
    ``segment`` (channels packed together); for kind int the accumulator range."""

    shape: tuple
    kind: str
    segment: int | None = None
    acc_range: tuple | None = None

    def __post_init__(self):
        if self.kind == "pm1" and self.segment is None:
            object.__setattr__(self, "segment", self.shape[-1])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layer:
    """Base class: a named layer with NumPy parameters whose shapes follow from its input."""

    type_name = "layer"

    def __init__(self, name: str | None = None):
        self.name = name
        self.input_spec: Spec | None = None
        self.output_spec: Spec | None = None
        self._params: dict = {}

    # -- shape inference -------------------------------------------------------------
    def build(self, spec: Spec) -> Spec:
        """Check that this layer can take ``spec``; return what it produces."""
        self.input_spec = spec
        self.output_spec = self._infer(spec)
        return self.output_spec

    def _infer(self, spec: Spec) -> Spec:
        raise NotImplementedError

    def _fail(self, why: str) -> ShapeError:
        return ShapeError(f"layer {self.name!r} ({self.type_name}): {why}")

    # -- parameters ------------------------------------------------------------------
    def param_shapes(self) -> dict:
        """name -> shape of the real-valued parameters :meth:`set_params` takes."""
        return {}

    def set_params(self, **arrays) -> None:
        """Set parameters from real-valued arrays (binary weights: any real values; their sign is kept)."""
        expected = self.param_shapes()
        unknown = set(arrays) - set(expected)
        if unknown:
            raise KeyError(f"layer {self.name!r} has no parameter(s) {sorted(unknown)}; "
                           f"it takes {sorted(expected)}")
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.shape != tuple(expected[key]):
                raise ValueError(f"layer {self.name!r} parameter {key!r}: expected shape "
                                 f"{tuple(expected[key])}, got {value.shape}")
            if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
                raise TypeError(f"layer {self.name!r} parameter {key!r}: expected real numbers, got {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"layer {self.name!r} parameter {key!r} holds NaN or infinity")
            self._store(key, value)

    def _store(self, key: str, value: np.ndarray) -> None:
        self._params[key] = value.astype(np.float32)

    def params(self) -> dict:
        """name -> stored array (binary weights packed as uint32 words)."""
        return dict(self._params)

    def load_stored(self, key: str, array: np.ndarray) -> None:
        """Set one parameter from its stored form (as :meth:`params` returns it)."""
        self._params[key] = np.asarray(array)

    def stored_shapes(self) -> dict:
        """name -> (shape, dtype) of each parameter as stored."""
        return {k: (tuple(s), np.dtype(np.float32)) for k, s in self.param_shapes().items()}

    def missing_params(self) -> list:
        return [k for k in self.param_shapes() if k not in self._params]

    def param_bytes(self) -> tuple[int, int]:
        """(bytes as stored, bytes as float32) of the parameters."""
        stored = sum(a.nbytes for a in self._params.values())
        as_float = sum(int(np.prod(s)) * 4 for s in self.param_shapes().values())
        return stored, as_float

    def initialize(self, rng: np.random.Generator) -> None:
        """Random parameters (for timing and tests)."""
        self.set_params(**{k: rng.standard_normal(s).astype(np.float32)
                           for k, s in self.param_shapes().items()})

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer: ``layer_from_config(config())``."""
        return {"type": self.type_name, "name": self.name, **self._config()}

    def _config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args}{', ' if args else ''}name={self.name!r})"


class _BinaryWeights(Layer):
    """Weights kept as packed sign bits (1 bit each), packed like the layer's input rows."""

    def _store(self, key, value):
        if key != "weight":
            return super()._store(key, value)
        self._params[key] = reference.pack_bits(reference.sign(value), self._weight_segment())

    def _weight_segment(self) -> int:
        raise NotImplementedError

    def stored_shapes(self):
        shapes = super().stored_shapes()
        weight = self.param_shapes()["weight"]
        shapes["weight"] = (storage_shape(weight, "bits", self._weight_segment()), np.dtype(np.uint32))
        return shapes

    def weight_pm1(self) -> np.ndarray:
        """The weights as int8 +-1, shaped like the ``weight`` parameter."""
        shape = self.param_shapes()["weight"]
        flat = reference.unpack_bits(self._params["weight"], shape[-1], self._weight_segment())
        return flat.reshape(shape)


def _acc_range(spec: Spec, fan_in: int) -> tuple:
    """Range of an exact integer dot product of ``fan_in`` inputs of ``spec`` with +-1 weights."""
    top = 255 if spec.kind == "uint8" else 1
    return (-top * fan_in, top * fan_in)


def _binary_input(layer, spec: Spec) -> None:
    if spec.kind == "int":
        raise layer._fail("takes uint8, +-1 or float input, got integer accumulators; "
                          "add BatchNorm and Sign (or Sign) before it")


class BinaryDense(_BinaryWeights):
    """Dense layer with +-1 weights (units, features), no bias (a following batch-norm
    absorbs one). uint8 or pm1 input -> exact int accumulators; float input -> float."""

    type_name = "binary_dense"

    def __init__(self, units: int, name: str | None = None):
        super().__init__(name)
        if int(units) < 1:
            raise ValueError(f"BinaryDense needs units >= 1, got {units}")
        self.units = int(units)

    def _infer(self, spec):
        if len(spec.shape) != 1:
            raise self._fail(f"expects a flat input (features,), got {spec.shape}; add Flatten()")
        _binary_input(self, spec)
        if spec.kind == "float":
            return Spec((self.units,), "float")
        return Spec((self.units,), "int", acc_range=_acc_range(spec, spec.shape[0]))

    def _config(self):
        return {"units": self.units}

    def _weight_segment(self):
        spec = self.input_spec
        return spec.segment if spec.kind == "pm1" else spec.shape[0]

    def param_shapes(self):
        return {"weight": (self.units, self.input_spec.shape[0])}


class Dense(Layer):
    """Dense layer with float32 weights (units, features) and bias (units,) -> float."""

    type_name = "dense"

    def __init__(self, units: int, use_bias: bool = True, name: str | None = None):
        super().__init__(name)
        if int(units) < 1:
            raise ValueError(f"Dense needs units >= 1, got {units}")
        self.units = int(units)
        self.use_bias = use_bias

    def _infer(self, spec):
        if len(spec.shape) != 1:
            raise self._fail(f"expects a flat input (features,), got {spec.shape}; add Flatten()")
        return Spec((self.units,), "float")

    def _config(self):
        return {"units": self.units, "use_bias": self.use_bias}

    def param_shapes(self):
        shapes = {"weight": (self.units, self.input_spec.shape[0])}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes


def _conv_geometry(layer, spec) -> ConvGeometry:
    if len(spec.shape) != 3:
        raise layer._fail(f"expects an image (height, width, channels), got {spec.shape}")
    h, w, _ = spec.shape
    try:
        return ConvGeometry.of(h, w, layer.kernel_size[0], layer.kernel_size[1], layer.stride, layer.padding)
    except ValueError as exc:
        raise layer._fail(str(exc)) from None


def _pair(value) -> tuple:
    pair = (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"expected a positive size or (height, width) pair, got {value!r}")
    return pair


class _ConvBase(Layer):
    use_bias = False

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", name=None):
        super().__init__(name)
        if int(filters) < 1:
            raise ValueError(f"{type(self).__name__} needs filters >= 1, got {filters}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.stride = int(stride)
        self.padding = padding

    def _config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size), "stride": self.stride,
                "padding": self.padding}

    def param_shapes(self):
        kh, kw = self.kernel_size
        shapes = {"weight": (self.filters, kh, kw, self.input_spec.shape[2])}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def geometry(self) -> ConvGeometry:
        return _conv_geometry(self, self.input_spec)


class BinaryConv2D(_ConvBase, _BinaryWeights):
    """2-D convolution with +-1 weights (filters, kh, kw, channels), NHWC, no bias.

    pm1 or uint8 input -> exact int accumulators; float input -> float. ``pad_value`` says
    what a padded tap holds: 'zero' (contributes 0, exact zero padding) or 'one' (+1; pm1
    input only)."""

    type_name = "binary_conv2d"

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", pad_value="zero", name=None):
        super().__init__(filters, kernel_size, stride, padding, name)
        if pad_value not in PAD_VALUES:
            raise ValueError(f"pad_value must be one of {PAD_VALUES}, got {pad_value!r}")
        self.pad_value = pad_value

    def _config(self):
        return {**super()._config(), "pad_value": self.pad_value}

    def _infer(self, spec):
        geom = _conv_geometry(self, spec)
        _binary_input(self, spec)
        if self.pad_value == "one" and spec.kind != "pm1":
            raise self._fail(f"pad_value='one' needs +-1 input, got {spec.kind}")
        fan_in = self.kernel_size[0] * self.kernel_size[1] * spec.shape[2]
        shape = (geom.oh, geom.ow, self.filters)
        if spec.kind == "float":
            return Spec(shape, "float")
        return Spec(shape, "int", acc_range=_acc_range(spec, fan_in))

    def _weight_segment(self):
        return self.input_spec.shape[2]


class Conv2D(_ConvBase):
    """2-D convolution with float32 weights (filters, kh, kw, channels), NHWC, zero padding -> float."""

    type_name = "conv2d"

    def __init__(self, filters, kernel_size=3, stride=1, padding="same", use_bias=True, name=None):
        super().__init__(filters, kernel_size, stride, padding, name)
        self.use_bias = use_bias

    def _config(self):
        return {**super()._config(), "use_bias": self.use_bias}

    def _infer(self, spec):
        geom = _conv_geometry(self, spec)
        return Spec((geom.oh, geom.ow, self.filters), "float")


class MaxPool2D(Layer):
    """Max-pooling over (ph, pw) windows, NHWC; the kind is kept (pm1 pools on packed bits)."""

    type_name = "maxpool2d"

    def __init__(self, pool_size=2, stride=None, padding="valid", name=None):
        super().__init__(name)
        self.kernel_size = _pair(pool_size)
        self.stride = int(stride) if stride is not None else self.kernel_size[0]
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.padding = padding

    def _config(self):
        return {"pool_size": list(self.kernel_size), "stride": self.stride, "padding": self.padding}

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("pooling raw uint8 input is not supported; pool after the first layer")
        geom = _conv_geometry(self, spec)
        return replace(spec, shape=(geom.oh, geom.ow, spec.shape[2]))

    def geometry(self) -> ConvGeometry:
        return _conv_geometry(self, self.input_spec)


class BatchNorm(Layer):
    """Batch normalization over the last axis: gamma, beta, mean, var (channels,) -> float.
    Followed by :class:`Sign`, it folds into one integer threshold per channel."""

    type_name = "batch_norm"

    def __init__(self, eps: float = 1e-5, name=None):
        super().__init__(name)
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def _config(self):
        return {"eps": self.eps}

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("batch-norm of raw uint8 input is not supported")
        if spec.kind == "pm1":
            raise self._fail("batch-norm of +-1 values is not supported; put it before Sign")
        return Spec(spec.shape, "float")

    def param_shapes(self):
        c = self.input_spec.shape[-1]
        return {"gamma": (c,), "beta": (c,), "mean": (c,), "var": (c,)}

    def set_params(self, **arrays):
        if "var" in arrays and np.any(np.asarray(arrays["var"]) < 0):
            raise ValueError(f"layer {self.name!r} parameter 'var' holds negative values")
        super().set_params(**arrays)

    def initialize(self, rng):
        c = self.input_spec.shape[-1]
        lo, hi = self.input_spec.acc_range or (-1.0, 1.0)
        spread = max(1.0, np.sqrt(max(abs(lo), abs(hi))))
        self.set_params(gamma=rng.standard_normal(c), beta=rng.standard_normal(c),
                        mean=rng.standard_normal(c) * spread, var=rng.uniform(0.5, 2.0, c) * spread ** 2)

    def bn_params(self) -> BatchNormParams:
        p = self._params
        return BatchNormParams(p["gamma"].astype(np.float64), p["beta"].astype(np.float64),
                               p["mean"].astype(np.float64), p["var"].astype(np.float64), self.eps)


class Sign(Layer):
    """sign(x) with sign(0) = +1 -> pm1 (packed bits in binary mode)."""

    type_name = "sign"

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("sign of raw uint8 input is always +1; binarize after the first layer")
        return Spec(spec.shape, "pm1")


class Flatten(Layer):
    """(h, w, c) -> (h * w * c,) in NHWC order; packed bits keep each pixel's padding (free)."""

    type_name = "flatten"

    def _infer(self, spec):
        return replace(spec, shape=(spec.size,))


class Softmax(Layer):
    """Softmax over the last axis of a flat input -> float probabilities."""

    type_name = "softmax"

    def _infer(self, spec):
        if len(spec.shape) != 1:
            raise self._fail(f"expects a flat input (classes,), got {spec.shape}")
        if spec.kind not in ("float", "int"):
            raise self._fail(f"expects real scores, got {spec.kind}")
        return Spec(spec.shape, "float")


LAYER_TYPES = {cls.type_name: cls for cls in
               (BinaryDense, Dense, BinaryConv2D, Conv2D, MaxPool2D, BatchNorm, Sign, Flatten, Softmax)}


def layer_from_config(config: dict) -> Layer:
    """Rebuild a layer from :meth:`Layer.config`; unknown types or arguments raise ValueError."""
    config = dict(config)
    type_name = config.pop("type", None)
    if type_name not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {type_name!r}; known: {sorted(LAYER_TYPES)}")
    try:
        return LAYER_TYPES[type_name](**config)
    except TypeError as exc:
        raise ValueError(f"bad arguments for a {type_name} layer: {exc}") from None
