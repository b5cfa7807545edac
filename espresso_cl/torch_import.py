"""PyTorch weights into an espresso_cl model: a ``state_dict`` -> the parameters of a Sequential.

The architecture comes from the espresso_cl :class:`Sequential` you build to mirror the PyTorch
network; the ``state_dict`` (torch tensors or NumPy arrays; torch is never imported here)
supplies the numbers. Conventions (docs/models.md has the full list):

- Modules pair with the model's layers that have parameters, in order: the ``state_dict``'s
  keys ``<module>.<tensor>`` are grouped by module in the order PyTorch lists them (the order
  of registration, as ``nn.Sequential`` gives). ``num_batches_tracked`` is ignored.
- ``BinaryDense`` / ``Dense`` <- ``nn.Linear`` (``weight`` (out, in), optional ``bias``).
  ``BinaryConv2D`` / ``Conv2D`` <- ``nn.Conv2d`` (``weight`` (OC, C, KH, KW), transposed to
  espresso_cl's (OC, KH, KW, C)). ``BatchNorm`` <- ``nn.BatchNorm1d/2d`` (``running_mean``,
  ``running_var``, and ``weight`` / ``bias`` unless ``affine=False``); its eps is the
  espresso_cl layer's, not stored in a ``state_dict``.
- Binary weights keep their sign, sign(0) = +1. A binary layer has no bias: a PyTorch bias on
  one is folded into the batch-norm that must follow it (max-pooling between is allowed):
  ``running_mean' = running_mean - bias``.
- PyTorch flattens NCHW; espresso_cl flattens NHWC. The per-feature tensors after a
  ``Flatten`` (the next Linear's columns, a BatchNorm1d between) are permuted to match, except
  after the Flatten layers named in ``nhwc_flattens`` (the network permuted to NHWC itself).
- The architecture is yours, so padding is too: ``'same'`` is TensorFlow's convention, which
  for a stride-2 convolution on an even size pads differently from PyTorch's ``padding=1``
  (a warning says so); give such layers ``padding=1``. :func:`espresso_cl.from_torch`
  reads the architecture from the module itself and needs none of this.

Any mismatch raises :class:`StateDictError` naming the espresso_cl layer and the tensor.
"""

from __future__ import annotations

import warnings

import numpy as np

from .layers import BatchNorm, BinaryConv2D, BinaryDense, Conv2D, Dense, Flatten, MaxPool2D
from .model import Sequential

IGNORED = ("num_batches_tracked",)


class StateDictError(ValueError):
    """A ``state_dict`` does not fit the model; the message names the layer and the tensor."""


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; bfloat16 and friends have no NumPy dtype
        value = value.detach().cpu()
        value = value.double() if value.is_floating_point() else value
        value = value.numpy()
    return np.asarray(value)


def _modules(state_dict) -> list:
    """[(module prefix, {tensor name: (state_dict key, array)})] in state_dict order."""
    groups: dict = {}
    for key, value in state_dict.items():
        prefix, _, tensor = key.rpartition(".")
        if tensor in IGNORED:
            continue
        groups.setdefault(prefix, {})[tensor] = (key, _to_numpy(value))
    return list(groups.items())


def _nhwc_order(shape: tuple) -> np.ndarray:
    """For a flattened (h, w, c) image: index into PyTorch's (c, h, w) order of each NHWC feature."""
    h, w, c = shape
    return np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


class _Importer:
    def __init__(self, model: Sequential, state_dict, nhwc_flattens=()):
        self.model = model
        self.nhwc_flattens = set(nhwc_flattens)
        self.modules = _modules(state_dict)
        self.next_module = 0
        self.order = None          # NHWC permutation of the current flat features, after a Flatten
        self.pending_bias = None   # (layer, key, bias) of a binary layer, for the next BatchNorm

    def fail(self, layer, why: str) -> StateDictError:
        return StateDictError(f"layer {layer.name!r} ({layer.type_name}): {why}")

    def take(self, layer, torch_kind: str, required: tuple, optional: tuple) -> dict:
        if self.next_module >= len(self.modules):
            raise self.fail(layer, f"the state_dict has no {torch_kind} module left for it "
                                   f"({len(self.modules)} modules, all used by earlier layers)")
        prefix, tensors = self.modules[self.next_module]
        self.next_module += 1
        missing = [t for t in required if t not in tensors]
        extra = [t for t in tensors if t not in required + optional]
        if missing or extra:
            found = [key for key, _ in tensors.values()]
            missing = [f"{prefix}.{t}" if prefix else t for t in missing]
            extra = [tensors[t][0] for t in extra]
            raise self.fail(layer, f"expects a PyTorch {torch_kind} with tensors {list(required)}"
                                   f"{f' (optional {list(optional)})' if optional else ''}; module "
                                   f"{prefix!r} has {found}: missing {missing}, unexpected {extra}")
        return tensors

    def check_shape(self, layer, tensors: dict, name: str, shape: tuple, meaning: str) -> np.ndarray:
        key, array = tensors[name]
        if array.shape != tuple(shape):
            raise self.fail(layer, f"tensor {key!r} has shape {array.shape}, expected {tuple(shape)} "
                                   f"({meaning})")
        if not np.issubdtype(array.dtype, np.floating):
            raise self.fail(layer, f"tensor {key!r} holds {array.dtype}, expected floating point")
        return array

    def set(self, layer, tensors: dict, **arrays) -> None:
        try:
            self.model.set_params(layer.name, **arrays)
        except ValueError as exc:
            keys = [key for key, _ in tensors.values()]
            raise self.fail(layer, f"tensors {keys}: {exc}") from None

    def weights_and_bias(self, layer, torch_kind: str, weight_shape: tuple, meaning: str):
        tensors = self.take(layer, torch_kind, ("weight",), ("bias",))
        weight = self.check_shape(layer, tensors, "weight", weight_shape, meaning)
        bias = None
        if "bias" in tensors:
            bias = self.check_shape(layer, tensors, "bias", (weight_shape[0],), "one per output")
        return tensors, weight, bias

    def linear_tensors(self, layer) -> tuple:
        """(tensors, weight, bias) of a PyTorch Linear for a dense layer, in our column order."""
        features = layer.input_spec.shape[0]
        tensors, weight, bias = self.weights_and_bias(
            layer, "Linear", (layer.units, features), "(out_features, in_features) of a PyTorch Linear")
        if self.order is not None:
            weight = weight[:, self.order]
            self.order = None
        return tensors, weight, bias

    def conv_tensors(self, layer) -> tuple:
        """(tensors, weight, bias) of a PyTorch Conv2d for a conv layer, weight as (OC, KH, KW, C)."""
        kh, kw = layer.kernel_size
        channels = layer.input_spec.shape[2]
        tensors, weight, bias = self.weights_and_bias(
            layer, "Conv2d", (layer.filters, channels, kh, kw),
            "(out_channels, in_channels, kh, kw) of a PyTorch Conv2d")
        return tensors, weight.transpose(0, 2, 3, 1), bias

    def binary_weights(self, layer, tensors, weight, bias) -> None:
        self.set(layer, tensors, weight=weight)
        if bias is not None:
            self.pending_bias = (layer, tensors["bias"][0], bias)

    def float_weights(self, layer, tensors, weight, bias) -> None:
        self.set(layer, tensors, **self.float_bias(layer, tensors, weight, bias))

    def binary_dense(self, layer) -> None:
        self.binary_weights(layer, *self.linear_tensors(layer))

    def dense(self, layer) -> None:
        self.float_weights(layer, *self.linear_tensors(layer))

    def binary_conv2d(self, layer) -> None:
        self.binary_weights(layer, *self.conv_tensors(layer))

    def conv2d(self, layer) -> None:
        self.float_weights(layer, *self.conv_tensors(layer))

    def float_bias(self, layer, tensors, weight, bias) -> dict:
        if layer.use_bias and bias is None:
            raise self.fail(layer, f"has a bias but module {tensors['weight'][0]!r} has none; "
                                   f"build the layer with use_bias=False")
        if bias is not None and not layer.use_bias:
            raise self.fail(layer, f"has no bias but the state_dict has {tensors['bias'][0]!r}; "
                                   f"build the layer with use_bias=True")
        return {"weight": weight, "bias": bias} if layer.use_bias else {"weight": weight}

    def batch_norm(self, layer) -> None:
        channels = layer.input_spec.shape[-1]
        tensors = self.take(layer, "BatchNorm", ("running_mean", "running_var"), ("weight", "bias"))
        if ("weight" in tensors) != ("bias" in tensors):
            raise self.fail(layer, f"module tensors {[k for k, _ in tensors.values()]}: an affine "
                                   f"batch-norm has both weight and bias")
        p = {ours: self.check_shape(layer, tensors, theirs, (channels,), "one per channel")
             for ours, theirs in (("mean", "running_mean"), ("var", "running_var"),
                                  ("gamma", "weight"), ("beta", "bias")) if theirs in tensors}
        p.setdefault("gamma", np.ones(channels))
        p.setdefault("beta", np.zeros(channels))
        if self.order is not None:
            p = {k: v[self.order] for k, v in p.items()}
        if self.pending_bias is not None:
            p["mean"] = p["mean"] - self.pending_bias[2]
            self.pending_bias = None
        self.set(layer, tensors, **p)

    def flatten(self, layer) -> None:
        if len(layer.input_spec.shape) == 3 and layer.name not in self.nhwc_flattens:
            self.order = _nhwc_order(layer.input_spec.shape)

    def run(self) -> Sequential:
        for layer in self.model.layers:
            if self.pending_bias is not None and not isinstance(layer, (MaxPool2D, BatchNorm)):
                source, key, _ = self.pending_bias
                raise self.fail(source, f"tensor {key!r}: binary layers have no bias; a BatchNorm must "
                                        f"follow (max-pooling between is fine) to absorb it, but "
                                        f"{layer.name!r} ({layer.type_name}) follows")
            importer = _importer_of(layer)
            if importer is not None:
                importer(self, layer)
            elif layer.param_shapes():
                raise self.fail(layer, "has parameters but no PyTorch counterpart is known")
        if self.pending_bias is not None:
            source, key, _ = self.pending_bias
            raise self.fail(source, f"tensor {key!r}: binary layers have no bias and no BatchNorm "
                                    f"follows to absorb it")
        left = [key for _, tensors in self.modules[self.next_module:] for key, _ in tensors.values()]
        if left:
            raise StateDictError(f"the state_dict has tensors no layer takes (after layer "
                                 f"{self.model.layers[-1].name!r}): {left}")
        return self.model


# What each layer type takes from the state_dict (or, for Flatten, how it reorders what follows).
IMPORTERS = {
    BinaryDense: _Importer.binary_dense,
    Dense: _Importer.dense,
    BinaryConv2D: _Importer.binary_conv2d,
    Conv2D: _Importer.conv2d,
    BatchNorm: _Importer.batch_norm,
    Flatten: _Importer.flatten,
}


def _importer_of(layer):
    """The importer of ``layer``'s type, or of the nearest base class that has one."""
    return next((IMPORTERS[cls] for cls in type(layer).__mro__ if cls in IMPORTERS), None)


def load_state_dict(model: Sequential, state_dict, nhwc_flattens=()) -> Sequential:
    """Set every parameter of ``model`` from a PyTorch ``state_dict`` (a mapping of names to torch
    tensors or NumPy arrays) following the conventions of this module; returns ``model``.

    ``nhwc_flattens``: names of Flatten layers whose input the PyTorch network had permuted to
    NHWC before flattening. Raises :class:`StateDictError` naming the layer and the tensor on
    any mismatch. Write the result to a model file with :func:`espresso_cl.io.save`.
    """
    _warn_tensorflow_same(model)
    return _Importer(model, state_dict, nhwc_flattens).run()


def _warn_tensorflow_same(model: Sequential) -> None:
    for layer in model.layers:
        if isinstance(layer, (BinaryConv2D, Conv2D, MaxPool2D)) and layer.padding == "same" and layer.stride > 1:
            h, w = layer.input_spec.shape[:2]
            if h % layer.stride == 0 or w % layer.stride == 0:
                warnings.warn(f"layer {layer.name!r}: padding 'same' with stride {layer.stride} on a "
                              f"{h}x{w} input pads {layer.geometry().pad_top} row(s) on top, PyTorch's "
                              f"symmetric padding pads more; if the PyTorch layer has padding=p, build "
                              f"this one with padding=p", stacklevel=3)
