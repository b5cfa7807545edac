"""espresso_cl: fast forward propagation of binary neural networks in OpenCL."""

from .runtime import DeviceError, KernelBuildError, get_runtime, select_device
from .tensor import Tensor

__version__ = "0.1.0"

__all__ = ["DeviceError", "KernelBuildError", "Tensor", "get_runtime", "select_device"]
