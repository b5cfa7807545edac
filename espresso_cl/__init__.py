"""espresso_cl: fast forward propagation of binary neural networks in OpenCL.

The names that need OpenCL (``Sequential``, ``Tensor``, ``get_runtime``, ...) load on first
use, so that ``espresso_cl.reference``, ``espresso_cl.tuning`` and the layer definitions import
without pyopencl, and importing the package touches no OpenCL state.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "BatchNorm": "layers", "BinaryConv2D": "layers", "BinaryDense": "layers", "Conv2D": "layers",
    "Dense": "layers", "Flatten": "layers", "MaxPool2D": "layers", "ShapeError": "layers",
    "Sign": "layers", "Softmax": "layers",
    "Sequential": "model",
    "DeviceError": "device", "select_device": "device",
    "KernelBuildError": "build",
    "get_runtime": "runtime",
    "Tensor": "tensor",
    "from_torch": "import_torch", "from_onnx": "import_onnx", "from_lce": "import_lce",
}

__all__ = sorted(_EXPORTS) + ["layers"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "layers":
        return importlib.import_module(".layers", __name__)
    raise AttributeError(f"module 'espresso_cl' has no attribute {name!r}")


def __dir__():
    return __all__
