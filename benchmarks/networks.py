"""The BinaryNet networks, and float32 forwards of the same networks in NumPy and PyTorch.

The baselines compute the function the espresso_cl model computes, in float32 throughout:
+-1 activations and weights as floats, convolutions as im2col + one matmul (NumPy) or
``nn.Conv2d`` (PyTorch). Batch-norm followed by sign is the per-channel comparison
``espresso_cl.fold`` derives from it: the same function as float batch-norm then sign, at
the same cost, without float32 rounding flipping a sign at the boundary, so outputs can be
compared tightly.
"""

from __future__ import annotations

import numpy as np

import espresso_cl as ec
from espresso_cl import fold
from espresso_cl.demo import binarynet_mlp
from espresso_cl.layout import storage_shape

from .case import REFERENCE, Case
from .timing import Contender

SIZES = {
    # BinaryNet's networks at full size; quick mode scales their widths down for CI.
    "full": {"mlp": {"hidden": 4096, "batches": (1, 16, 256)},
             "cnn": {"widths": (128, 256, 512), "dense": 1024, "batches": (1, 16, 64)}},
    "quick": {"mlp": {"hidden": 1024, "batches": (1, 16)},
              "cnn": {"widths": (32, 64, 128), "dense": 256, "batches": (1, 8)}},
}

F32 = np.float32


def binarynet_cnn(widths=(128, 256, 512), dense: int = 1024, classes: int = 10) -> ec.Sequential:
    """BinaryNet's CIFAR-10 CNN on uint8 32x32x3 pixels: per width, two 3x3 'same' binary
    convs and a 2x2 max-pool; then two binary dense layers and a 10-way one. Batch-norm after
    every weight layer (after the pool where there is one), sign after every batch-norm but the last."""
    stack = []
    for width in widths:
        stack += [ec.BinaryConv2D(width), ec.BatchNorm(), ec.Sign(),
                  ec.BinaryConv2D(width), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign()]
    stack.append(ec.Flatten())
    for _ in range(2):
        stack += [ec.BinaryDense(dense), ec.BatchNorm(), ec.Sign()]
    stack += [ec.BinaryDense(classes), ec.BatchNorm()]
    return ec.Sequential(stack, input_shape=(32, 32, 3), input_dtype="uint8")


def build(family: str, mode: str) -> ec.Sequential:
    """The family's network at the mode's size, with random weights (seed 0)."""
    size = SIZES[mode][family]
    model = binarynet_mlp(size["hidden"]) if family == "mlp" else binarynet_cnn(size["widths"], size["dense"])
    return model.initialize(seed=0)


def on_runtime(model: ec.Sequential, runtime) -> ec.Sequential:
    """The same layers (and so the same parameters) as a model bound to ``runtime``."""
    return ec.Sequential(model.layers, model.input_shape, model.input_dtype, runtime=runtime)


# -- description of a network's work and memory ---------------------------------------------------

def macs_per_image(model: ec.Sequential) -> int:
    """Multiply-accumulates of the dense and conv layers for one image."""
    total = 0
    for layer in model.layers:
        if layer.type_name in ("binary_dense", "dense"):
            total += layer.units * layer.input_spec.shape[0]
        elif layer.type_name in ("binary_conv2d", "conv2d"):
            g = layer.geometry()
            total += g.oh * g.ow * int(np.prod(layer.param_shapes()["weight"]))
    return total


def memory(model: ec.Sequential) -> dict:
    """Parameter bytes (stored vs float32) and, per image, the bytes of what the weight layers
    read: packed bits (uint8 pixels for the first) in binary mode, float32 in float mode."""
    stored = float32 = 0
    for layer in model.layers:
        s, f = layer.param_bytes()
        stored, float32 = stored + s, float32 + f
    binary_inputs, float_inputs = [], []
    for layer in model.layers:
        if layer.type_name not in ("binary_dense", "dense", "binary_conv2d", "conv2d"):
            continue
        spec = layer.input_spec
        float_inputs.append(spec.size * 4)
        if spec.kind == "pm1":
            binary_inputs.append(int(np.prod(storage_shape(spec.shape, "bits", spec.segment))) * 4)
        elif spec.kind == "uint8":
            binary_inputs.append(spec.size)
        else:
            binary_inputs.append(spec.size * 4)
    return {"params_stored_bytes": int(stored), "params_float32_bytes": int(float32),
            "layer_inputs_per_image_binary_bytes": int(sum(binary_inputs)),
            "layer_inputs_per_image_float32_bytes": int(sum(float_inputs)),
            "largest_layer_input_binary_bytes": int(max(binary_inputs)),
            "largest_layer_input_float32_bytes": int(max(float_inputs))}


# -- the network as float32 operations ------------------------------------------------------------

def float_program(model: ec.Sequential) -> list:
    """The network as a list of float32 operations, shared by the NumPy and PyTorch forwards:
    ``("dense", w, bias)``, ``("conv", w, bias, geometry, pad)``, ``("pool", geometry)``,
    ``("threshold", ts, s)`` (+1 where ``x * s >= ts``), ``("affine", scale, shift)``,
    ``("sign",)``, ``("flatten",)``, ``("softmax",)``."""
    program = []
    layers = model.layers
    i = 0
    while i < len(layers):
        layer, name = layers[i], layers[i].type_name
        following = layers[i + 1] if i + 1 < len(layers) else None
        if name in ("binary_dense", "binary_conv2d", "dense", "conv2d"):
            binary = name.startswith("binary")
            weight = (layer.weight_pm1() if binary else layer.params()["weight"]).astype(F32)
            bias = layer.params()["bias"].astype(F32) if getattr(layer, "use_bias", False) else None
            if name.endswith("dense"):
                program.append(("dense", weight, bias))
            else:
                pad = 1.0 if getattr(layer, "pad_value", "zero") == "one" else 0.0
                program.append(("conv", weight, bias, layer.geometry(), pad))
        elif name == "maxpool2d":
            program.append(("pool", layer.geometry()))
        elif name == "batch_norm":
            spec, channels = layer.input_spec, layer.input_spec.shape[-1]
            if spec.kind == "int" and isinstance(following, ec.Sign):
                thresh, flip = fold.sign_thresholds(layer.bn_params(), *spec.acc_range, channels)
                s = np.where(flip > 0, -1, 1)
                program.append(("threshold", (thresh * s).astype(F32), s.astype(F32)))
                i += 1
            else:
                program.append(("affine", *fold.affine(layer.bn_params(), channels)))
        elif name in ("sign", "flatten", "softmax"):
            program.append((name,))
        else:
            raise TypeError(f"no float32 baseline for layer type {name!r}")
        i += 1
    return program


def _padded(x: np.ndarray, g, fill: float) -> np.ndarray:
    """NHWC ``x`` in a frame large enough for every window of ``g``, borders set to ``fill``."""
    n, h, w, c = x.shape
    ph = max((g.oh - 1) * g.stride + g.kh, g.pad_top + h)
    pw = max((g.ow - 1) * g.stride + g.kw, g.pad_left + w)
    if (ph, pw) == (h, w):
        return x
    out = np.full((n, ph, pw, c), fill, F32)
    out[:, g.pad_top:g.pad_top + h, g.pad_left:g.pad_left + w] = x
    return out


def _taps(xp: np.ndarray, g):
    span_h, span_w = (g.oh - 1) * g.stride + 1, (g.ow - 1) * g.stride + 1
    for ky in range(g.kh):
        for kx in range(g.kw):
            yield xp[:, ky:ky + span_h:g.stride, kx:kx + span_w:g.stride]


def numpy_forward(program: list):
    """A function uint8/float (N, ...) -> float32 output, running ``program`` in NumPy float32."""
    steps = []
    for op, *args in program:
        if op == "dense":
            weight, bias = args
            wt = np.ascontiguousarray(weight.T)
            steps.append(lambda x, wt=wt, b=bias: x @ wt if b is None else x @ wt + b)
        elif op == "conv":
            weight, bias, g, pad = args
            # Columns in (ky, kx, channel) order, the order of the flattened (OC, KH, KW, C) weights.
            wt = np.ascontiguousarray(weight.reshape(len(weight), -1).T)

            def conv(x, wt=wt, b=bias, g=g, pad=pad):
                cols = np.concatenate(list(_taps(_padded(x, g, pad), g)), axis=-1)
                out = cols.reshape(-1, wt.shape[0]) @ wt
                out = out.reshape(len(x), g.oh, g.ow, -1)
                return out if b is None else out + b
            steps.append(conv)
        elif op == "pool":
            (g,) = args

            def pool(x, g=g):
                taps = _taps(_padded(x, g, -np.inf), g)
                out = next(taps).copy()
                for tap in taps:
                    np.maximum(out, tap, out=out)
                return out
            steps.append(pool)
        elif op == "threshold":
            ts, s = args
            steps.append(lambda x, ts=ts, s=s: np.where(x * s >= ts, F32(1), F32(-1)))
        elif op == "affine":
            scale, shift = args
            steps.append(lambda x, a=scale, b=shift: x * a + b)
        elif op == "sign":
            steps.append(lambda x: np.where(x >= 0, F32(1), F32(-1)))
        elif op == "flatten":
            steps.append(lambda x: x.reshape(len(x), -1))
        elif op == "softmax":
            def softmax(x):
                e = np.exp(x - x.max(axis=-1, keepdims=True))
                return e / e.sum(axis=-1, keepdims=True)
            steps.append(softmax)

    def forward(x: np.ndarray) -> np.ndarray:
        value = x.astype(F32)
        for step in steps:
            value = step(value)
        return value

    return forward


def torch_forward(program: list, torch):
    """The same function in PyTorch float32 on the CPU (NCHW inside, NHWC order at flatten)."""
    nn, F = torch.nn, torch.nn.functional
    steps = []

    def per_channel(v, x):  # broadcast a (C,) vector over NCHW or (N, C)
        return v.view(1, -1, 1, 1) if x.dim() == 4 else v

    for op, *args in program:
        if op == "dense":
            weight, bias = args
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            linear.weight.data = torch.from_numpy(weight)
            if bias is not None:
                linear.bias.data = torch.from_numpy(bias)
            steps.append(linear)
        elif op == "conv":
            weight, bias, g, pad = args
            bottom = (g.oh - 1) * g.stride + g.kh - g.h - g.pad_top
            right = (g.ow - 1) * g.stride + g.kw - g.w - g.pad_left
            native = pad == 0.0 and bottom == g.pad_top and right == g.pad_left
            conv = nn.Conv2d(weight.shape[3], weight.shape[0], (g.kh, g.kw), stride=g.stride,
                             padding=(g.pad_top, g.pad_left) if native else 0, bias=bias is not None)
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(weight.transpose(0, 3, 1, 2)))
            if bias is not None:
                conv.bias.data = torch.from_numpy(bias)
            if native:
                steps.append(conv)
            else:
                borders = (g.pad_left, max(right, 0), g.pad_top, max(bottom, 0))
                steps.append(lambda x, conv=conv, b=borders, v=pad: conv(F.pad(x, b, value=v)))
        elif op == "pool":
            (g,) = args
            bottom = max((g.oh - 1) * g.stride + g.kh - g.h - g.pad_top, 0)
            right = max((g.ow - 1) * g.stride + g.kw - g.w - g.pad_left, 0)
            borders = (g.pad_left, right, g.pad_top, bottom)
            steps.append(lambda x, g=g, b=borders: F.max_pool2d(
                F.pad(x, b, value=-float("inf")) if any(b) else x, (g.kh, g.kw), g.stride))
        elif op == "threshold":
            ts, s = (torch.from_numpy(v) for v in args)
            steps.append(lambda x, ts=ts, s=s: torch.where(x * per_channel(s, x) >= per_channel(ts, x), 1.0, -1.0))
        elif op == "affine":
            scale, shift = (torch.from_numpy(v) for v in args)
            steps.append(lambda x, a=scale, b=shift: x * per_channel(a, x) + per_channel(b, x))
        elif op == "sign":
            steps.append(lambda x: torch.where(x >= 0, 1.0, -1.0))
        elif op == "flatten":
            steps.append(lambda x: (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(len(x), -1))
        elif op == "softmax":
            steps.append(lambda x: torch.softmax(x, dim=-1))

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            value = torch.from_numpy(x).float()
            if value.dim() == 4:
                value = value.permute(0, 3, 1, 2).contiguous()
            for step in steps:
                value = step(value)
            return value.numpy()

    return forward


# -- cases -------------------------------------------------------------------------------------------

def _close(a: np.ndarray, b: np.ndarray) -> tuple[bool, float]:
    """float32 outputs equal up to rounding (relative to the output's scale)."""
    scale = max(1.0, float(np.abs(b).max()))
    diff = float(np.abs(a.astype(np.float64) - b).max())
    return a.shape == b.shape and diff <= 1e-4 * scale, diff


class Network:
    """A family's network with its baselines built once; :meth:`case` makes one batch's case."""

    def __init__(self, family: str, mode: str, devices, torch):
        self.family = family
        self.model = build(family, mode)
        self.devices = devices
        self.models = {d.key: on_runtime(self.model, d.runtime) for d in devices}
        program = float_program(self.model)
        self.numpy = numpy_forward(program)
        self.torch = torch_forward(program, torch) if torch is not None else None
        self.macs = macs_per_image(self.model)
        self.memory = memory(self.model)

    def case(self, batch: int, seed: int = 1) -> Case:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, size=(batch,) + self.model.input_shape, dtype=np.uint8)
        contenders = []
        for device in self.devices:
            model = self.models[device.key]
            for mode in ("binary", "float"):
                contenders.append(Contender(f"{mode} {device.key}", mode, device.key,
                                            lambda m=model, mode=mode: m.predict(x, mode=mode, batch_size=batch)))
        contenders.append(Contender(REFERENCE, "numpy", None, lambda: self.numpy(x)))
        if self.torch is not None:
            contenders.append(Contender("PyTorch float32", "torch", None, lambda: self.torch(x)))
        return Case(self.family, f"batch {batch}", {"batch": batch}, self.macs * batch, contenders,
                    self._check, items=batch, memory=self.memory)

    def _check(self, outputs: dict) -> tuple[bool, str]:
        ref = outputs[REFERENCE]
        classes = ref.argmax(axis=-1)
        problems, worst = [], 0.0
        for device in self.devices:
            binary, floating = outputs.get(f"binary {device.key}"), outputs.get(f"float {device.key}")
            if binary is None:
                continue
            if floating is not None and not np.array_equal(binary.argmax(-1), floating.argmax(-1)):
                problems.append(f"binary and float mode predictions differ on {device.key}")
        for label, out in outputs.items():
            if label == REFERENCE:
                continue
            close, diff = _close(out, ref)
            worst = max(worst, diff)
            if not close:
                problems.append(f"{label} output differs from NumPy float32 by {diff:.3g}")
            elif not np.array_equal(out.argmax(-1), classes):
                problems.append(f"{label} predictions differ from NumPy float32")
        if problems:
            return False, "; ".join(problems)
        return True, (f"binary == float mode predictions on every device; all {len(outputs)} outputs "
                      f"agree with NumPy float32 (max |diff| {worst:.2g}, same predictions)")


def cases(family: str, mode: str, devices, torch):
    """The family's cases at the mode's batch sizes, made one at a time."""
    network = Network(family, mode, devices, torch)
    for batch in SIZES[mode][family]["batches"]:
        yield network.case(batch)
