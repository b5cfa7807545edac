"""espresso_cl: fast forward propagation of binary neural networks in OpenCL."""

from . import layers
from .layers import (BatchNorm, BinaryConv2D, BinaryDense, Conv2D, Dense, Flatten, MaxPool2D,
                     ShapeError, Sign, Softmax)
from .model import Sequential
from .runtime import DeviceError, KernelBuildError, get_runtime, select_device
from .tensor import Tensor

__version__ = "0.1.0"

__all__ = [
    "BatchNorm", "BinaryConv2D", "BinaryDense", "Conv2D", "Dense", "DeviceError", "Flatten",
    "KernelBuildError", "MaxPool2D", "Sequential", "ShapeError", "Sign", "Softmax", "Tensor",
    "get_runtime", "layers", "select_device",
]
