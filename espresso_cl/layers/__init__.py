"""Declarative layers: configuration, parameters, shape inference, and what each layer type
is to the interpreters of a layer list (device plan, NumPy reference, float32 baseline); no
device code: :mod:`espresso_cl.plan` hands the device operations to :meth:`Layer.plan`.
"""

from .base import Layer, ShapeError, Spec
from .conv import PAD_VALUES, BinaryConv2D, Conv2D
from .dense import BinaryDense, Dense
from .norm import BatchNorm, Sign
from .pool import MaxPool2D
from .shape import Flatten, Softmax

LAYER_TYPES = {cls.type_name: cls for cls in
               (BinaryDense, Dense, BinaryConv2D, Conv2D, MaxPool2D, BatchNorm, Sign, Flatten, Softmax)}

__all__ = ["BatchNorm", "BinaryConv2D", "BinaryDense", "Conv2D", "Dense", "Flatten", "LAYER_TYPES", "Layer",
           "MaxPool2D", "PAD_VALUES", "ShapeError", "Sign", "Softmax", "Spec", "layer_from_config"]


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
