"""Import a Larq Compute Engine (LCE) ``.tflite`` model as an espresso_cl model, exactly, or refuse.

``from_lce(path_or_bytes)`` reads the flatbuffer that ``larq_compute_engine.convert_keras_model``
writes (tested with LCE 0.16 / TensorFlow 2.16) with the pure-Python ``tflite`` schema package
and ``flatbuffers``; TensorFlow is never imported. The graph must be one chain from one float32
input (batch, H, W, C) or (batch, features) to one output, the operators in file order:

- ``LceQuantize`` (float -> packed signs) -> ``Sign``: LCE sets a bit for x < 0, so its
  sign(0) is +1 as espresso_cl's. After a flatten it goes in front of the ``Flatten``. ``LceDequantize`` (packed -> +-1 floats) adds nothing.
- ``LceBconv2d`` -> ``BinaryConv2D`` (``BinaryDense`` on a 1x1 image that a ``RESHAPE`` made
  from flat values: a binary dense layer written as a 1x1 convolution). Its filter, packed
  along the input channels (OHWI, 32 channels a word, LSB first, a set bit meaning -1), is
  unpacked to +-1; espresso_cl packs it its own way. ``padding`` SAME or VALID, ``pad_values``
  1 (a padded tap is +1, ``pad_value='one'``) or 0 (zero padding), equal strides,
  ``channels_in`` equal to the channels it reads. Float output ``clamp(acc) * multiplier +
  bias`` with no clamp (fused activation NONE) -> a ``BatchNorm`` (eps 0, mean 0, variance 1,
  gamma the multiplier, beta the bias). Packed output: LCE writes -1 when the xor-popcount
  ``p > t`` (its threshold); with ``acc = K - 2p`` (K = kh * kw * channels_in, padded taps
  included, as one-padding makes them +1) that is +1 exactly when ``acc >= K - 2t``: a
  ``BatchNorm`` (gamma 1, beta 0, mean K - 2t, variance 1, eps 0) and ``Sign``, which fold into
  that integer threshold.
- ``LceBMaxPool2d`` -> ``MaxPool2D`` on the signs (packed bits on the device).
- ``CONV_2D`` and ``FULLY_CONNECTED`` (float32, fused activation NONE, no dilation) ->
  ``Conv2D`` / ``Dense``, or ``BinaryConv2D`` / ``BinaryDense`` + ``BatchNorm`` where each
  output's weights are +-s (a Larq binary layer whose batch-norm the converter folded in);
  ``PAD`` of H and W with zeros just before a ``CONV_2D`` becomes part of its padding. A 1x1
  ``CONV_2D`` on a 1x1 image is a dense layer.
- ``MAX_POOL_2D`` -> ``MaxPool2D``; ``RESHAPE`` of an image to (batch, features) or (batch, 1,
  1, features) -> ``Flatten`` (TFLite flattens NHWC, as espresso_cl), of flat values to (batch,
  1, 1, features) -> nothing (a 1x1 image held flat); ``SOFTMAX`` (beta 1) -> ``Softmax``; ``MUL`` and ``ADD`` of
  a constant per channel (a batch-norm the converter left unfused) join the ``BatchNorm``
  before them (``x * gamma + beta``), or make one. A max-pool after such a ``BatchNorm`` whose
  gammas are all >= 0 goes in front of it (the max of a non-decreasing function is the function
  of the max, in float32 too), so BinaryNet's conv -> pool -> batch-norm -> sign folds into
  integer thresholds on the pooled accumulators.

Float results agree with LCE's to float32 rounding (LCE computes ``float(2p) * -m + (b + K m)``,
espresso_cl ``acc * m + b``), and signs agree except where a float value lies within that
rounding of 0. Everything else (grouped or dilated binary convolutions, fused activations,
int8 tensors, int8 output, zero-padded packed output, other operators, branches, several
inputs or outputs) raises :class:`UnsupportedModelError` naming the operator and its index.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .geometry import ConvGeometry, simplest_padding
from .importing import UnsupportedModelError, split_binary_weights
from .layers import BatchNorm, BinaryConv2D, BinaryDense, Conv2D, Dense, Flatten, MaxPool2D, Sign, Softmax
from .layers.base import ShapeError
from .model import INPUT_DTYPES

INSTALL = "pip install 'espresso_cl[lce]'"
IDENTIFIER = b"TFL3"
WORD = 32  # LCE packs 32 channels into one int32
# TensorFlow Lite tensor types (schema TensorType) that can appear here
FLOAT32, INT32 = 0, 2
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
              7: "int16", 9: "int8", 10: "float64"}
SAME, VALID = 0, 1  # schema Padding (LCE's options use the same numbers)
ACTIVATION_NONE = 0


class LceFileError(ValueError):
    """The bytes are not a readable TensorFlow Lite flatbuffer; the message says why."""


def from_lce(model, input_dtype: str = "float32", runtime=None):
    """The espresso_cl :class:`~espresso_cl.model.Sequential` that computes what the LCE model
    ``model`` (a ``.tflite`` path or its bytes) computes.

    The model takes what the ``.tflite`` takes, without the batch axis: NHWC images or flat
    features. ``input_dtype='uint8'`` when the network reads raw pixel values 0..255 (as
    floats). A packed (sign) output comes back as +-1 floats. ``runtime``: the device runtime
    (default: the default one). Needs ``tflite`` and ``flatbuffers`` (``pip install
    'espresso_cl[lce]'``).
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    graph = _Graph(_read(model))
    walk = _Walk(graph)
    walk.run()
    from .model import Sequential

    try:
        built = Sequential(walk.layers, walk.input_shape, input_dtype, runtime=runtime)
        for layer, params in zip(walk.layers, walk.params):
            if params:
                built.set_params(layer.name, **params)
    except ShapeError as exc:
        raise UnsupportedModelError(f"the LCE model does not map onto espresso_cl layers: {exc}") from None
    return built


def _modules():
    try:
        import tflite
        from flatbuffers import flexbuffers
    except ImportError:
        raise ImportError(f"from_lce needs the tflite and flatbuffers packages: {INSTALL}") from None
    return tflite, flexbuffers


def _read(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    raise TypeError(f"model must be a .tflite path or its bytes, got {type(model).__name__}")


class _Graph:
    """The flatbuffer's one subgraph: tensors (shape, type, constant value) and operators."""

    def __init__(self, data: bytes):
        tflite, self.flexbuffers = _modules()
        if len(data) < 8 or data[4:8] != IDENTIFIER:
            raise LceFileError(f"not a TensorFlow Lite flatbuffer: {len(data)} bytes without the "
                               f"identifier {IDENTIFIER!r} at offset 4")
        self.data = data
        self.tflite = tflite
        try:
            self._parse()
        except LceFileError:
            raise
        except Exception as exc:  # a truncated or corrupt buffer fails anywhere in the reader
            raise LceFileError(f"the TensorFlow Lite flatbuffer is truncated or corrupt ({len(data)} bytes): "
                               f"{type(exc).__name__}: {exc}") from None

    def _parse(self) -> None:
        tflite = self.tflite
        model = tflite.Model.GetRootAsModel(self.data, 0)
        if model.SubgraphsLength() != 1:
            raise UnsupportedModelError(f"the model has {model.SubgraphsLength()} subgraphs; espresso_cl "
                                        f"imports one chain (no control flow)")
        graph = model.Subgraphs(0)
        self.shapes, self.types, self.constants = [], [], {}
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            self.shapes.append(tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ())
            self.types.append(tensor.Type())
            value = self._buffer(model, tensor.Buffer())
            if value is not None:
                dtype = {FLOAT32: np.float32, INT32: np.int32}.get(tensor.Type(), np.uint8)
                if len(value) % np.dtype(dtype).itemsize:
                    raise LceFileError(f"tensor {i} has {len(value)} bytes, not whole {np.dtype(dtype).name}s")
                array = np.frombuffer(value, dtype)
                if dtype is not np.uint8:
                    array = array.reshape(self.shapes[i])
                self.constants[i] = array
        self.inputs = [int(t) for t in graph.InputsAsNumpy()] if graph.InputsLength() else []
        self.outputs = [int(t) for t in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
        self.operators = []
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            custom = code.CustomCode()
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = custom.decode() if custom else self._builtin_name(builtin)
            inputs = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
            options = None
            if custom:
                raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
                options = self.flexbuffers.Loads(raw) if raw else {}
            self.operators.append(_Op(index, name, builtin if not custom else None, inputs, outputs, options, op))

    def _buffer(self, model, index: int):
        if index <= 0 or index >= model.BuffersLength():
            return None
        buffer = model.Buffers(index)
        offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
        if offset > 1:  # models over 2 GB keep their data after the flatbuffer
            size = buffer.Size()
            if offset + size > len(self.data):
                raise LceFileError(f"buffer {index} lies past the end of the file")
            return self.data[offset:offset + size]
        if buffer.DataLength() == 0:
            return None
        return buffer.DataAsNumpy().tobytes()

    def _builtin_name(self, code: int) -> str:
        names = {v: k for k, v in vars(self.tflite.BuiltinOperator).items() if not k.startswith("_")}
        return names.get(code, f"builtin operator {code}")

    def type_name(self, tensor: int) -> str:
        return TYPE_NAMES.get(self.types[tensor], f"type {self.types[tensor]}")


class _Op:
    def __init__(self, index, name, builtin, inputs, outputs, options, raw):
        self.index, self.name, self.builtin = index, name, builtin
        self.inputs, self.outputs, self.options, self.raw = inputs, outputs, options, raw

    def __str__(self):
        return f"operator {self.index} ({self.name})"

    def builtin_options(self, cls):
        table = self.raw.BuiltinOptions()
        if table is None:
            return None
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options


class _Walk:
    """The operators from input to output as a chain of espresso_cl layers and their parameters."""

    def __init__(self, graph: _Graph):
        self.graph = graph
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise UnsupportedModelError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                                        f"outputs; espresso_cl imports one chain from one input to one output")
        self.current = graph.inputs[0]
        shape = graph.shapes[self.current]
        if graph.types[self.current] != FLOAT32 or len(shape) not in (2, 4):
            raise UnsupportedModelError(f"the model input is {graph.type_name(self.current)} of shape {shape}; "
                                        f"espresso_cl takes float32 (batch, H, W, C) or (batch, features) "
                                        f"(int8 models are not supported)")
        self.input_shape = shape[1:]
        self.channels = shape[-1]  # channels (features) of the current value, packed or not
        self.layers: list = []
        self.params: list = []
        self.packed = False      # the current tensor holds LCE's packed signs
        self.signs = False       # its values are +-1 (espresso_cl's pm1)
        self.flat_image = False  # a (1, 1, C) image espresso_cl holds as C flat features
        self.pending_pad = None  # (op, ((top, bottom), (left, right))) of a PAD awaiting its CONV_2D
        self.affines: list = []  # the BatchNorms that compute x * gamma + beta (add_affine)

    def run(self) -> None:
        graph = self.graph
        for op in graph.operators:
            handler = HANDLERS.get(op.name)
            if handler is None:
                raise UnsupportedModelError(f"{op}: espresso_cl has no mapping for this operator")
            dynamic = [t for t in op.inputs if t >= 0 and t not in graph.constants]
            if dynamic != [self.current] or op.inputs[0] != self.current or len(op.outputs) != 1:
                raise UnsupportedModelError(f"{op}: reads tensors {op.inputs} and writes {op.outputs}; espresso_cl "
                                            f"imports a chain in which each operator reads the previous one's "
                                            f"output (tensor {self.current}) and constants")
            for t in op.inputs[:1] + op.outputs:
                if graph.types[t] not in (FLOAT32, INT32):
                    raise UnsupportedModelError(f"{op}: tensor {t} is {graph.type_name(t)}; quantized (int8) "
                                                f"tensors are not supported")
            if self.pending_pad is not None and op.name != "CONV_2D":
                raise UnsupportedModelError(f"{self.pending_pad[0]}: a PAD feeds {op}; espresso_cl takes explicit "
                                            f"zero-padding only as part of a CONV_2D")
            handler(self, op)
            self.current = op.outputs[0]
        if self.pending_pad is not None:
            raise UnsupportedModelError(f"{self.pending_pad[0]}: a PAD is the last operator")
        if self.current != graph.outputs[0]:
            raise UnsupportedModelError(f"the chain of operators ends at tensor {self.current}, the model "
                                        f"output is tensor {graph.outputs[0]}")
        if not self.layers:
            raise UnsupportedModelError("the model computes nothing espresso_cl can hold (no layers)")

    # -- helpers ----------------------------------------------------------------------------
    def add(self, layer, **params) -> None:
        self.layers.append(layer)
        self.params.append(params)

    def shape(self, tensor=None) -> tuple:
        return self.graph.shapes[self.current if tensor is None else tensor]

    def constant(self, op, position: int, what: str, required: bool = True):
        tensor = op.inputs[position] if position < len(op.inputs) else -1
        if tensor < 0:
            if required:
                raise UnsupportedModelError(f"{op}: has no {what} (input {position})")
            return None
        value = self.graph.constants.get(tensor)
        if value is None:
            raise UnsupportedModelError(f"{op}: its {what} (tensor {tensor}) is not a constant")
        return np.asarray(value)

    def float_input(self, op) -> None:
        if self.packed:
            raise UnsupportedModelError(f"{op}: reads packed signs (int32); it takes float32")

    def packed_input(self, op) -> None:
        if not self.packed:
            raise UnsupportedModelError(f"{op}: reads float values; it takes LCE's packed signs "
                                        f"(an LceQuantize first)")

    @staticmethod
    def no_activation(op, activation: int) -> None:
        if activation != ACTIVATION_NONE:
            raise UnsupportedModelError(f"{op}: fused activation function {activation} (not NONE); espresso_cl "
                                        f"has no clamp or ReLU layer")

    @staticmethod
    def stride(op, height: int, width: int) -> int:
        if height != width or height < 1:
            raise UnsupportedModelError(f"{op}: strides ({height}, {width}); espresso_cl convolutions and pools "
                                        f"take one stride for both axes")
        return int(height)

    @staticmethod
    def padding_name(op, padding: int) -> str:
        if padding not in (SAME, VALID):
            raise UnsupportedModelError(f"{op}: padding {padding} (neither SAME nor VALID)")
        return "same" if padding == SAME else "valid"

    def add_affine(self, gamma, beta) -> None:
        """A BatchNorm computing ``x * gamma + beta`` (eps 0, mean 0, variance 1), which a MUL or
        ADD after it joins and a max-pool after it may move in front of."""
        channels = len(gamma)
        self.add(BatchNorm(eps=0.0), gamma=np.asarray(gamma, np.float64), beta=np.asarray(beta, np.float64),
                 mean=np.zeros(channels), var=np.ones(channels))
        self.affines.append(self.layers[-1])

    def ends_in_affine(self) -> bool:
        return bool(self.layers) and any(self.layers[-1] is layer for layer in self.affines)

    def became(self, packed: bool, signs: bool) -> None:
        self.packed, self.signs = packed, signs

    # -- LCE operators ----------------------------------------------------------------------
    def quantize(self, op) -> None:
        self.float_input(op)
        if self.graph.types[op.outputs[0]] != INT32:
            raise UnsupportedModelError(f"{op}: writes {self.graph.type_name(op.outputs[0])}, not packed int32")
        if not self.signs:  # the signs of +-1 values (after an LceDequantize) are those values
            if self.layers and self.layers[-1].reshapes_only:
                # sign(flatten(x)) = flatten(sign(x)): a batch-norm before the flatten then
                # folds with the sign into thresholds, and the flatten moves packed bits.
                self.layers.insert(len(self.layers) - 1, Sign())
                self.params.insert(len(self.params) - 1, {})
            else:
                self.add(Sign())
        self.became(packed=True, signs=True)

    def dequantize(self, op) -> None:
        self.packed_input(op)
        if self.graph.types[op.outputs[0]] != FLOAT32:
            raise UnsupportedModelError(f"{op}: writes {self.graph.type_name(op.outputs[0])}; espresso_cl reads "
                                        f"float32 (int8 models are not supported)")
        self.became(packed=False, signs=True)

    def bconv2d(self, op) -> None:
        self.packed_input(op)
        o = op.options or {}
        for key in ("channels_in", "padding", "pad_values", "stride_height", "stride_width"):
            if key not in o:
                raise UnsupportedModelError(f"{op}: its options lack {key!r}")
        if o.get("dilation_height_factor", 1) != 1 or o.get("dilation_width_factor", 1) != 1:
            raise UnsupportedModelError(f"{op}: dilation ({o.get('dilation_height_factor')}, "
                                        f"{o.get('dilation_width_factor')}); espresso_cl convolutions are not dilated")
        self.no_activation(op, o.get("fused_activation_function", ACTIVATION_NONE))
        channels = self.channels
        channels_in = int(o["channels_in"])
        weight = self.unpacked_filter(op, channels_in)
        if channels_in != channels:
            raise UnsupportedModelError(f"{op}: channels_in {channels_in}, but it reads {channels} channels")
        filters, kh, kw, _ = weight.shape
        stride = self.stride(op, o["stride_height"], o["stride_width"])
        padding = self.padding_name(op, o["padding"])
        if o["pad_values"] not in (0, 1):
            raise UnsupportedModelError(f"{op}: pad_values {o['pad_values']} (LCE pads with 0 or 1)")
        pad_value = "one" if o["pad_values"] == 1 else "zero"
        output_type = self.graph.types[op.outputs[0]]
        if output_type == INT32 and padding == "same" and pad_value == "zero":
            raise UnsupportedModelError(f"{op}: packed output with zero padding (LCE's optimized kernels "
                                        f"refuse it)")
        if self.flat_image:
            if (kh, kw) != (1, 1):
                raise UnsupportedModelError(f"{op}: a {kh}x{kw} binary convolution of a 1x1 image")
            self.add(BinaryDense(filters), weight=weight.reshape(filters, channels))
        else:
            self.add(BinaryConv2D(filters, (kh, kw), stride, padding, pad_value), weight=weight)
        if output_type == INT32:
            thresholds = self.constant(op, 4, "output_threshold").astype(np.int64).reshape(-1)
            if thresholds.shape != (filters,):
                raise UnsupportedModelError(f"{op}: {thresholds.size} output thresholds for {filters} filters")
            fan_in = kh * kw * channels_in
            self.add(BatchNorm(eps=0.0), gamma=np.ones(filters), beta=np.zeros(filters),
                     mean=(fan_in - 2 * thresholds).astype(np.float64), var=np.ones(filters))
            self.add(Sign())
            self.became(packed=True, signs=True)
        else:
            multiplier = self.per_channel(op, 2, "post_activation_multiplier", filters)
            bias = self.per_channel(op, 3, "post_activation_bias", filters)
            self.add_affine(multiplier, bias)
            self.became(packed=False, signs=False)
        self.channels = filters

    def unpacked_filter(self, op, channels_in: int) -> np.ndarray:
        """The filter as +-1 float64 (O, KH, KW, channels_in): LCE packs it along the input
        channels, 32 to an int32, LSB first, a set bit meaning -1 (or keeps +-1 floats)."""
        filt = self.constant(op, 1, "filter")
        if filt.ndim != 4:
            raise UnsupportedModelError(f"{op}: a filter of shape {filt.shape}, not (O, KH, KW, I)")
        words = math.ceil(channels_in / WORD)
        if self.graph.types[op.inputs[1]] == FLOAT32:
            if filt.shape[3] != channels_in:
                raise UnsupportedModelError(f"{op}: grouped binary convolution ({channels_in} input channels, "
                                            f"filter depth {filt.shape[3]}); espresso_cl's are dense (groups 1)")
            if not np.all(np.abs(filt) == 1):
                raise UnsupportedModelError(f"{op}: a float filter that is not all +-1")
            return filt.astype(np.float64)
        if filt.shape[3] != words:
            raise UnsupportedModelError(f"{op}: grouped binary convolution ({channels_in} input channels in "
                                        f"{words} words, filter depth {filt.shape[3]} words); espresso_cl's are "
                                        f"dense (groups 1)")
        bits = (filt.astype(np.uint32)[..., None] >> np.arange(WORD, dtype=np.uint32)) & 1
        bits = bits.reshape(filt.shape[:3] + (words * WORD,))[..., :channels_in]
        return 1.0 - 2.0 * bits

    def per_channel(self, op, position: int, what: str, channels: int) -> np.ndarray:
        value = self.constant(op, position, what).astype(np.float64).reshape(-1)
        if value.shape != (channels,):
            raise UnsupportedModelError(f"{op}: {what} has {value.size} values for {channels} channels")
        if not np.all(np.isfinite(value)):
            raise UnsupportedModelError(f"{op}: {what} holds NaN or infinity")
        return value

    def bmaxpool(self, op) -> None:
        self.packed_input(op)
        o = op.options or {}
        for key in ("filter_height", "filter_width", "padding", "stride_height", "stride_width"):
            if key not in o:
                raise UnsupportedModelError(f"{op}: its options lack {key!r}")
        self.pool(op, o["filter_height"], o["filter_width"], o["stride_height"], o["stride_width"], o["padding"])

    def pool(self, op, fh, fw, sh, sw, padding) -> None:
        if self.flat_image:
            raise UnsupportedModelError(f"{op}: pools a 1x1 image")
        pool = MaxPool2D((int(fh), int(fw)), self.stride(op, sh, sw), self.padding_name(op, padding))
        if self.ends_in_affine() and np.all(self.params[-1]["gamma"] >= 0):
            # The max of x * gamma + beta (gamma >= 0) is that of x, in float32 too (rounding is
            # monotone): pooling first lets the batch-norms after it fold with a sign into
            # integer thresholds on the pooled accumulators.
            self.layers.insert(len(self.layers) - 1, pool)
            self.params.insert(len(self.params) - 1, {})
            return
        self.add(pool)

    # -- builtin operators ------------------------------------------------------------------
    def conv2d(self, op) -> None:
        self.float_input(op)
        o = op.builtin_options(self.graph.tflite.Conv2DOptions)
        if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
            raise UnsupportedModelError(f"{op}: dilation ({o.DilationHFactor()}, {o.DilationWFactor()}); "
                                        f"espresso_cl convolutions are not dilated")
        self.no_activation(op, o.FusedActivationFunction())
        weight = self.constant(op, 1, "filter").astype(np.float64)
        bias = self.constant(op, 2, "bias", required=False)
        if weight.ndim != 4 or weight.shape[3] != self.channels:
            raise UnsupportedModelError(f"{op}: a filter of shape {weight.shape} for {self.channels} input "
                                        f"channels (grouped convolutions are not supported)")
        filters, kh, kw, _ = weight.shape
        bias = None if bias is None else self.bias(op, bias, filters)
        stride = self.stride(op, o.StrideH(), o.StrideW())
        padding = self.padding_name(op, o.Padding())
        if self.pending_pad is not None:
            padding = self.with_pad(padding, (kh, kw), stride)
        if self.flat_image:  # a dense layer written as a 1x1 convolution
            if (kh, kw) != (1, 1):
                raise UnsupportedModelError(f"{op}: a {kh}x{kw} convolution of a 1x1 image")
            self.weighted(op, weight.reshape(filters, -1), bias, lambda: BinaryDense(filters),
                          lambda: Dense(filters, use_bias=bias is not None))
        else:
            self.weighted(op, weight, bias, lambda: BinaryConv2D(filters, (kh, kw), stride, padding),
                          lambda: Conv2D(filters, (kh, kw), stride, padding, use_bias=bias is not None))
        self.channels = filters

    def with_pad(self, padding: str, kernel: tuple, stride: int):
        """The explicit amounts of the pending PAD plus the convolution's own padding."""
        (_, (rows, cols)), self.pending_pad = self.pending_pad, None
        h, w = self.shape()[1:3]
        geom = ConvGeometry.of(h, w, kernel[0], kernel[1], stride, padding)
        total_h = max((geom.oh - 1) * stride + kernel[0] - h, 0) if padding == "same" else 0
        total_w = max((geom.ow - 1) * stride + kernel[1] - w, 0) if padding == "same" else 0
        amounts = ((rows[0] + geom.pad_top, rows[1] + total_h - geom.pad_top),
                   (cols[0] + geom.pad_left, cols[1] + total_w - geom.pad_left))
        return simplest_padding(amounts, kernel, stride)

    def fully_connected(self, op) -> None:
        o = op.builtin_options(self.graph.tflite.FullyConnectedOptions)
        self.no_activation(op, o.FusedActivationFunction())
        if o.WeightsFormat() != 0:
            raise UnsupportedModelError(f"{op}: shuffled weights format {o.WeightsFormat()}")
        if self.packed:
            raise UnsupportedModelError(f"{op}: reads packed signs")
        if len(self.shape()) != 2 and not self.flat_image:
            raise UnsupportedModelError(f"{op}: multiplies a tensor of shape {self.shape()}; espresso_cl's "
                                        f"dense layers take (batch, features)")
        weight = self.constant(op, 1, "weights").astype(np.float64)
        bias = self.constant(op, 2, "bias", required=False)
        if weight.ndim != 2 or weight.shape[1] != self.channels:
            raise UnsupportedModelError(f"{op}: weights of shape {weight.shape} for {self.channels} features")
        units = weight.shape[0]
        bias = None if bias is None else self.bias(op, bias, units)
        self.weighted(op, weight, bias, lambda: BinaryDense(units), lambda: Dense(units, use_bias=bias is not None))
        self.channels = units

    def bias(self, op, value, units: int) -> np.ndarray:
        value = np.asarray(value, np.float64).reshape(-1)
        if value.shape != (units,):
            raise UnsupportedModelError(f"{op}: a bias of {value.size} values for {units} outputs")
        return value

    def weighted(self, op, weight, bias, binary, floating) -> None:
        """A float conv or dense layer (weights OHWI or (O, I), as espresso_cl's): binary, with
        a batch-norm for a per-output scale and the bias, where each output's weights are +-s."""
        split = split_binary_weights(weight, str(op), f"tensor {op.inputs[1]}")
        if split is None:
            self.add(floating(), **({"weight": weight, "bias": bias} if bias is not None else {"weight": weight}))
        else:
            signs, scale = split
            self.add(binary(), weight=signs)
            if scale is not None or bias is not None:
                units = len(signs)
                self.add_affine(np.ones(units) if scale is None else scale, np.zeros(units) if bias is None else bias)
        self.became(packed=False, signs=False)

    def max_pool(self, op) -> None:
        self.float_input(op)
        o = op.builtin_options(self.graph.tflite.Pool2DOptions)
        self.no_activation(op, o.FusedActivationFunction())
        self.pool(op, o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW(), o.Padding())

    def reshape(self, op) -> None:
        before, after = self.shape(), self.shape(op.outputs[0])
        if self.packed or not before or not after or before[0] != after[0] or math.prod(before) != math.prod(after):
            raise UnsupportedModelError(f"{op}: a reshape of {before} to {after}")
        image = len(after) == 4 and after[1:3] == (1, 1)
        if len(after) != 2 and not image:
            raise UnsupportedModelError(f"{op}: a reshape of {before} to {after}; espresso_cl flattens "
                                        f"images and reads flat values as a 1x1 image")
        if len(before) == 4 and not self.flat_image:
            self.add(Flatten())  # TFLite's order is NHWC, espresso_cl's too
            self.channels = math.prod(before[1:])
        self.flat_image = image

    def softmax(self, op) -> None:
        o = op.builtin_options(self.graph.tflite.SoftmaxOptions)
        if o is not None and o.Beta() != 1.0:
            raise UnsupportedModelError(f"{op}: beta {o.Beta()}; espresso_cl's softmax has beta 1")
        if len(self.shape()) != 2:
            raise UnsupportedModelError(f"{op}: a softmax of shape {self.shape()}; espresso_cl's is over flat values")
        self.add(Softmax())
        self.became(packed=False, signs=False)

    def elementwise(self, op) -> None:
        self.float_input(op)
        cls = self.graph.tflite.MulOptions if op.name == "MUL" else self.graph.tflite.AddOptions
        o = op.builtin_options(cls)
        self.no_activation(op, o.FusedActivationFunction() if o is not None else ACTIVATION_NONE)
        position = 1 if op.inputs[0] == self.current else 0
        value = self.constant(op, position, "operand").astype(np.float64)
        if self.shape(op.outputs[0]) != self.shape():
            raise UnsupportedModelError(f"{op}: broadcasts its input {self.shape()} to {self.shape(op.outputs[0])}")
        try:
            per_channel = np.broadcast_to(value, (1,) * (len(self.shape()) - 1) + (self.channels,))
        except ValueError:
            per_channel = None
        if per_channel is None or value.size not in (1, self.channels) or not np.all(np.isfinite(value)):
            raise UnsupportedModelError(f"{op}: an operand of shape {value.shape}; espresso_cl takes one "
                                        f"finite value per channel (a batch-norm)")
        per_channel = per_channel.reshape(-1)
        if not self.ends_in_affine():
            self.add_affine(np.ones(self.channels), np.zeros(self.channels))
        p = self.params[-1]  # x * gamma + beta, then * c or + c
        if op.name == "MUL":
            p["gamma"], p["beta"] = p["gamma"] * per_channel, p["beta"] * per_channel
        else:
            p["beta"] = p["beta"] + per_channel
        self.became(packed=False, signs=False)

    def pad(self, op) -> None:
        self.float_input(op)
        amounts = self.constant(op, 1, "paddings").astype(np.int64)
        if amounts.shape != (4, 2) or np.any(amounts[[0, 3]] != 0) or np.any(amounts < 0):
            raise UnsupportedModelError(f"{op}: paddings {amounts.tolist()}; espresso_cl pads height and width only")
        self.pending_pad = (op, tuple(tuple(int(a) for a in amounts[i]) for i in (1, 2)))


# What each operator becomes.
HANDLERS = {
    "LceQuantize": _Walk.quantize,
    "LceDequantize": _Walk.dequantize,
    "LceBconv2d": _Walk.bconv2d,
    "LceBMaxPool2d": _Walk.bmaxpool,
    "CONV_2D": _Walk.conv2d,
    "FULLY_CONNECTED": _Walk.fully_connected,
    "MAX_POOL_2D": _Walk.max_pool,
    "RESHAPE": _Walk.reshape,
    "SOFTMAX": _Walk.softmax,
    "MUL": _Walk.elementwise,
    "ADD": _Walk.elementwise,
    "PAD": _Walk.pad,
}
