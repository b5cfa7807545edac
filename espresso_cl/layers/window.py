"""What the sliding-window layers (convolution, pooling) share: sizes and output geometry."""

from __future__ import annotations

from ..geometry import ConvGeometry
from .base import Layer, Spec


def window_geometry(layer: Layer, spec: Spec) -> ConvGeometry:
    """Where ``layer``'s windows (its kernel_size, stride, padding) land on an image of ``spec``."""
    if len(spec.shape) != 3:
        raise layer._fail(f"expects an image (height, width, channels), got {spec.shape}")
    h, w, _ = spec.shape
    try:
        return ConvGeometry.of(h, w, layer.kernel_size[0], layer.kernel_size[1], layer.stride, layer.padding)
    except ValueError as exc:
        raise layer._fail(str(exc)) from None

