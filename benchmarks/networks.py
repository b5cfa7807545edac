"""The BinaryNet networks, and float32 forwards of the same networks in NumPy, PyTorch and ONNX Runtime.

The baselines run the network's float32 program (``espresso_cl.float_program``: +-1
activations and weights as floats, batch-norm + sign as the folded per-channel comparison),
in NumPy (its own forward: convolutions as im2col + one matmul), in PyTorch (``nn.Conv2d``,
``nn.Linear``) and in ONNX Runtime (the program as one ONNX graph, ``benchmarks/onnx_float.py``),
so their outputs can be compared tightly.

Each case also counts the kernel launches of one binary-mode call and times the first call at
a batch size the model has not seen (against the warm time of that size).
"""

from __future__ import annotations

import copy
import itertools
import time

import numpy as np

import espresso_cl as ec
from espresso_cl import float_program as fp
from espresso_cl.demo import binarynet_mlp
from espresso_cl.layers.binary import BinaryWeights
from espresso_cl.layout import storage_shape

from . import onnx_float, system
from .case import REFERENCE, Case
from .timing import Contender, Timing, progress, time_interleaved

SIZES = {
    # BinaryNet's networks at full size; quick mode scales their widths down for CI.
    "full": {"mlp": {"hidden": 4096, "batches": (1, 16, 256)},
             "cnn": {"widths": (128, 256, 512), "dense": 1024, "batches": (1, 16, 64)}},
    "quick": {"mlp": {"hidden": 1024, "batches": (1, 16)},
              "cnn": {"widths": (32, 64, 128), "dense": 256, "batches": (1, 8)}},
}


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
    """A copy of ``model`` (the same parameters) bound to ``runtime``."""
    return ec.Sequential(copy.deepcopy(model.layers), model.input_shape, model.input_dtype, runtime=runtime)


# -- description of a network's work and memory ---------------------------------------------------

def macs_per_image(model: ec.Sequential) -> int:
    """Multiply-accumulates of the dense and conv layers for one image."""
    return sum(layer.macs() for layer in model.layers)


def memory(model: ec.Sequential) -> dict:
    """Parameter bytes (stored vs float32) and, per image, the bytes of what the weight layers
    read: packed bits (uint8 pixels for the first) in binary mode, float32 in float mode."""
    stored = float32 = 0
    for layer in model.layers:
        s, f = layer.param_bytes()
        stored, float32 = stored + s, float32 + f
    binary_inputs, float_inputs = [], []
    for layer in model.layers:
        if not layer.macs():  # not a weight layer
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


# -- the float32 program in PyTorch ---------------------------------------------------------------

def _per_channel(v, x):
    """A (C,) vector broadcast over NCHW or (N, C) ``x``."""
    return v.view(1, -1, 1, 1) if x.dim() == 4 else v


def _torch_matmul(op: fp.MatMul, torch):
    weight, bias = op.weight, op.bias
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight.data = torch.from_numpy(weight)
    if bias is not None:
        linear.bias.data = torch.from_numpy(bias)
    return linear


def _torch_conv(op: fp.Conv, torch):
    weight, bias, g, pad = op.weight, op.bias, op.geometry, op.pad
    bottom = (g.oh - 1) * g.stride + g.kh - g.h - g.pad_top
    right = (g.ow - 1) * g.stride + g.kw - g.w - g.pad_left
    native = pad == 0.0 and bottom == g.pad_top and right == g.pad_left
    conv = torch.nn.Conv2d(weight.shape[3], weight.shape[0], (g.kh, g.kw), stride=g.stride,
                           padding=(g.pad_top, g.pad_left) if native else 0, bias=bias is not None)
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(weight.transpose(0, 3, 1, 2)))
    if bias is not None:
        conv.bias.data = torch.from_numpy(bias)
    if native:
        return conv
    borders = (g.pad_left, max(right, 0), g.pad_top, max(bottom, 0))
    return lambda x: conv(torch.nn.functional.pad(x, borders, value=pad))


def _torch_max_pool(op: fp.MaxPool, torch):
    g, F = op.geometry, torch.nn.functional
    bottom = max((g.oh - 1) * g.stride + g.kh - g.h - g.pad_top, 0)
    right = max((g.ow - 1) * g.stride + g.kw - g.w - g.pad_left, 0)
    borders = (g.pad_left, right, g.pad_top, bottom)
    return lambda x: F.max_pool2d(F.pad(x, borders, value=-float("inf")) if any(borders) else x,
                                  (g.kh, g.kw), g.stride)


def _torch_threshold(op: fp.Threshold, torch):
    bound, direction = torch.from_numpy(op.bound), torch.from_numpy(op.direction)
    return lambda x: torch.where(x * _per_channel(direction, x) >= _per_channel(bound, x), 1.0, -1.0)


def _torch_affine(op: fp.Affine, torch):
    scale, shift = torch.from_numpy(op.scale), torch.from_numpy(op.shift)
    return lambda x: x * _per_channel(scale, x) + _per_channel(shift, x)


def _torch_sign(op: fp.Sign, torch):
    return lambda x: torch.where(x >= 0, 1.0, -1.0)


def _torch_flatten(op: fp.Flatten, torch):
    # NCHW inside, NHWC order out, as the model flattens.
    return lambda x: (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(len(x), -1)


def _torch_softmax(op: fp.Softmax, torch):
    return lambda x: torch.softmax(x, dim=-1)


TORCH_STEPS = {
    fp.MatMul: _torch_matmul, fp.Conv: _torch_conv, fp.MaxPool: _torch_max_pool,
    fp.Threshold: _torch_threshold, fp.Affine: _torch_affine, fp.Sign: _torch_sign,
    fp.Flatten: _torch_flatten, fp.Softmax: _torch_softmax,
}


def torch_forward(program: list, torch):
    """The float32 ``program`` in PyTorch on the CPU (NCHW inside, NHWC order at flatten)."""
    steps = [TORCH_STEPS[type(op)](op, torch) for op in program]

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


# ONNX Runtime's contenders by execution provider: (label, role).
ONNX_CONTENDERS = {onnx_float.CPU: ("ONNX Runtime float32", "onnxruntime"),
                   onnx_float.CUDA: ("ONNX Runtime CUDA float32", "onnxruntime-cuda")}


def binary_layers(model: ec.Sequential) -> int:
    """Layers with binary weights (the bit-plane first layer included)."""
    return sum(isinstance(layer, BinaryWeights) for layer in model.layers)


def cuda_gpu(devices) -> str | None:
    """The key of the first NVIDIA GPU under test (where ONNX Runtime's CUDA provider runs), or None."""
    return next((d.key for d in devices
                 if d.runtime.kind == "gpu" and "nvidia" in d.runtime.device.vendor.lower()), None)


class Network:
    """A family's network with its baselines built once; :meth:`case` makes one batch's case.

    ``onnx_modules`` is ``(onnx, onnxruntime)`` to add the ONNX Runtime baseline, or None."""

    def __init__(self, family: str, mode: str, devices, torch, onnx_modules=None):
        self.family = family
        self.model = build(family, mode)
        self.devices = devices
        self.models = {d.key: on_runtime(self.model, d.runtime) for d in devices}
        program = fp.program(self.model.layers)
        self.numpy = fp.numpy_forward(program)
        self.torch = torch_forward(program, torch) if torch is not None else None
        self.onnx = (onnx_float.forwards(self.model, program, cuda_gpu(devices), system.usable_cores(),
                                         *onnx_modules) if onnx_modules is not None else [])
        self.macs = macs_per_image(self.model)
        self.memory = memory(self.model)
        self.binary_layers = binary_layers(self.model)
        self.seen: set = set()  # batch sizes the models have been called with

    def _pixels(self, batch: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, size=(batch,) + self.model.input_shape, dtype=np.uint8)

    def case(self, batch: int, seed: int = 1) -> Case:
        x = self._pixels(batch, seed)
        self.seen.add(batch)
        contenders = []
        for device in self.devices:
            model = self.models[device.key]
            for mode in ("binary", "float"):
                contenders.append(Contender(f"{mode} {device.key}", mode, device.key,
                                            lambda m=model, mode=mode: m.predict(x, mode=mode, batch_size=batch)))
        contenders.append(Contender(REFERENCE, "numpy", None, lambda: self.numpy(x)))
        if self.torch is not None:
            contenders.append(Contender("PyTorch float32", "torch", None, lambda: self.torch(x)))
        for provider, device_key, forward in self.onnx:
            label, role = ONNX_CONTENDERS[provider]
            contenders.append(Contender(label, role, device_key, lambda f=forward: f(x)))
        return Case(self.family, f"batch {batch}", {"batch": batch}, self.macs * batch, contenders,
                    self._check, items=batch, memory=self.memory,
                    extra=lambda settings: self.launches_and_first_call(batch, settings))

    def launches_and_first_call(self, batch: int, settings) -> dict:
        """Per device: kernel launches of one binary-mode call at ``batch`` (and the binary
        layers they are judged against), and the first call at a batch size none of the
        models has seen, against the warm median of that size timed right after."""
        fresh = next(n for n in itertools.count(batch + 1) if n not in self.seen)
        self.seen.add(fresh)
        x = self._pixels(fresh, seed=2)
        launches, first_call = {}, {}
        for device in self.devices:
            model = self.models[device.key]
            try:
                launches[device.key] = {"launches": model.launch_count(batch, mode="binary"),
                                        "binary_layers": self.binary_layers}
            except Exception as exc:  # noqa: BLE001 - a missing figure must not end the run
                launches[device.key] = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                first_call[device.key] = first_call_figures(
                    lambda m=model: m.predict(x, mode="binary", batch_size=fresh), fresh, settings)
            except Exception as exc:  # noqa: BLE001
                first_call[device.key] = {"batch": fresh, "error": f"{type(exc).__name__}: {exc}"}
            progress(f"    {device.key}: {_launch_text(launches[device.key])}; "
                     f"{_first_call_text(first_call[device.key])}")
        return {"launches": launches, "first_call": first_call}

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


# Single calls after the suite's pause, timed at the new size once it is warm: the first call is
# such a call too, and one call after a pause costs 2-3x a call in a loop (PoCL's threads and the
# caches are cold; measured on Zen 5: MLP batch 1 in 0.77 ms against 0.26-0.40 ms).
SINGLE_CALLS = 5


def first_call_figures(call, batch: int, settings) -> dict:
    """Seconds of ``call``'s first run (a single call after the suite's pause); then, the size
    warm, the median of :data:`SINGLE_CALLS` single calls after the same pause, which the
    ratio compares it with; and the median of warm runs timed as the suite times a contender
    (samples of looped calls, a pause before each), reported beside it."""
    def single() -> float:
        time.sleep(settings.settle_s)
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    first = single()
    call()  # the size's second sighting records its own launch list
    singles = [single() for _ in range(SINGLE_CALLS)]
    start = time.perf_counter()
    call()  # sizes the warm samples
    warm = Timing("first call", "binary", None)
    time_interleaved([Contender("first call", "binary", None, call)], {"first call": warm},
                     {"first call": time.perf_counter() - start}, settings)
    warm_single = float(np.median(singles))
    return {"batch": batch, "first_s": first, "warm_single_s": warm_single, "warm_median_s": warm.median,
            "warm_repeats": len(warm.samples), "ratio": first / warm_single,
            "ratio_to_looped": first / warm.median}


def _launch_text(figures: dict) -> str:
    if "error" in figures:
        return f"launches not counted ({figures['error']})"
    return f"{figures['launches']} launches per call ({figures['binary_layers']} binary layers)"


def _first_call_text(figures: dict) -> str:
    if "error" in figures:
        return f"first call at batch {figures['batch']} not timed ({figures['error']})"
    return (f"first call at batch {figures['batch']} {figures['first_s'] * 1e3:.3g} ms, "
            f"warm single call {figures['warm_single_s'] * 1e3:.3g} ms ({figures['ratio']:.2g}x), "
            f"looped {figures['warm_median_s'] * 1e3:.3g} ms")


def cases(family: str, mode: str, devices, torch, onnx_modules=None):
    """The family's cases at the mode's batch sizes, made one at a time."""
    network = Network(family, mode, devices, torch, onnx_modules)
    for batch in SIZES[mode][family]["batches"]:
        yield network.case(batch)
