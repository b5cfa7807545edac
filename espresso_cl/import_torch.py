"""Import a trained PyTorch ``nn.Module`` as an espresso_cl model, exactly, or refuse.

``from_torch(module, input_shape, input_dtype)`` traces the module with ``torch.fx`` and reads
every layer from the module and the traced graph itself, so nothing is rebuilt by hand:

- ``nn.Conv2d`` / ``F.conv2d``: stride (equal on both axes), padding (an int, a pair, 'same',
  'valid'; PyTorch's symmetric amounts kept exactly), ``padding_mode='zeros'``;
  ``nn.Linear`` / ``F.linear``; ``nn.BatchNorm1d/2d`` (running statistics, eps, affine);
  ``nn.MaxPool2d`` / ``F.max_pool2d`` (padding ignored in the max, as PyTorch's -inf);
  ``nn.Flatten`` / ``torch.flatten`` / ``view`` / ``reshape`` to (batch, features), after an
  optional ``permute(0, 2, 3, 1)`` (NHWC order); ``nn.Softmax`` last; ``nn.Identity``,
  ``nn.Dropout`` (eval mode) and ``contiguous`` pass values through.
- A weight is binary when the value the forward multiplies by is exactly +-1: the parameter
  itself, or the parameter through any elementwise expression (``torch.sign``,
  ``torch.where(w >= 0, 1, -1)``, a straight-through ``autograd.Function``, which ``torch.fx``
  inlines); that value is evaluated, not pattern-matched. ``torch.sign`` of a weight that is
  exactly 0 gives 0, which a binary layer cannot hold: refused. Other weights stay float32.
- An activation is a binarization when a run of elementwise operations on the previous layer's
  output computes a sign: it is evaluated on :data:`espresso_cl.importing.SIGN_PROBE` values
  (negative, positive, tiny, both zeros). What it gives at 0 is compared with espresso_cl's
  sign(0) = +1 (``torch.sign`` gives 0, ``x > 0`` gives -1): a :class:`SignSemanticsWarning`
  says so, and the example check counts such ties apart.

Anything else (groups, dilation, other padding modes, ceil_mode, hardtanh, ReLU or any
activation that is not a sign, a scale on a sign, average pooling, residual additions,
branches, more than one input) raises :class:`UnsupportedModelError` naming the node or module
and the reason. Given ``example`` (a batch in the module's own layout), the module and the
import both run it, and disagreements other than sign(0) ties raise
:class:`ImportMismatchError` unless ``allow_mismatch``.
"""

from __future__ import annotations

import operator

import numpy as np

from .importing import (SIGN_PROBE, Recipe, UnsupportedModelError, agreement, binary_weights,
                        check_agreement, sign_at_zero, warn_sign_semantics)
from .geometry import simplest_padding
from .layers import BatchNorm, BinaryConv2D, BinaryDense, Conv2D, Dense, Flatten, MaxPool2D, Sign, Softmax
from .layers.base import ShapeError
from .model import INPUT_DTYPES
from .torch_import import StateDictError


def from_torch(module, input_shape, input_dtype: str = "float32", example=None,
               allow_mismatch: bool = False, runtime=None):
    """The espresso_cl :class:`~espresso_cl.model.Sequential` that computes what ``module`` (a
    ``torch.nn.Module`` in eval mode) computes.

    ``input_shape``: one sample as the module takes it: (C, H, W) or (features,). The model
    takes NHWC images (H, W, C). ``input_dtype='uint8'`` when the module reads raw pixel
    values 0..255 (as floats): the first binary layer then reads them by bit planes.
    ``example``: a batch (NumPy or torch, the module's layout) on which to compare the two.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    if module.training:
        raise UnsupportedModelError("the module is in training mode (batch-norm would use batch "
                                    "statistics); call module.eval() first")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (features,), got {input_shape!r}")
    graph = _Graph(module, shape)
    recipe = _Walk(graph, shape, input_dtype).recipe()
    try:
        model = recipe.build(runtime)
    except (ShapeError, StateDictError) as exc:
        raise UnsupportedModelError(f"the traced network does not map onto espresso_cl layers: {exc}") from None
    if example is not None:
        check_agreement(_compare(graph, model, example, input_dtype), allow_mismatch)
    return model


def _compare(graph: "_Graph", model, example, input_dtype: str):
    import torch

    x = torch.as_tensor(np.asarray(example), dtype=torch.float32)
    if tuple(x.shape[1:]) != graph.input_shape:
        raise ValueError(f"example has samples of shape {tuple(x.shape[1:])}, the module takes {graph.input_shape}")
    values = graph.run(x)
    theirs = values[graph.output].detach().numpy()
    tied = np.zeros(len(x), bool)
    for source in graph.tie_sources:
        tied |= (values[source].detach().numpy() == 0).reshape(len(x), -1).any(axis=1)
    ours_input = x.numpy()
    if ours_input.ndim == 4:
        ours_input = ours_input.transpose(0, 2, 3, 1)
    if input_dtype == "uint8":
        if not np.array_equal(ours_input, np.clip(np.rint(ours_input), 0, 255)):
            raise ValueError("input_dtype is 'uint8' but the example holds values other than integers 0..255")
        ours_input = ours_input.astype(np.uint8)
    return agreement(model.predict(np.ascontiguousarray(ours_input)), theirs, tied)


class _Graph:
    """The module's traced graph, with every node's value on a probe batch."""

    def __init__(self, module, input_shape: tuple):
        import torch
        import torch.fx

        self.module, self.input_shape = module, input_shape
        try:
            self.traced = torch.fx.symbolic_trace(module)
        except Exception as exc:  # tracing runs the user's forward: anything can come out
            raise UnsupportedModelError(f"torch.fx cannot trace the module ({type(exc).__name__}: {exc}); "
                                        f"data-dependent control flow is not supported") from None
        self.nodes = list(self.traced.graph.nodes)
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"the module takes {len(inputs)} inputs; espresso_cl models take one")
        self.input = inputs[0]
        self.output = next(n for n in self.nodes if n.op == "output").args[0]
        if not isinstance(self.output, torch.fx.Node):
            raise UnsupportedModelError("the module returns more than one tensor")
        self.tie_sources: list = []  # inputs of binarizations whose sign(0) is not +1
        try:
            self.values = self.run(torch.zeros((2,) + input_shape))
        except Exception as exc:  # the user's forward on the shape they gave
            raise ValueError(f"the module does not run on input of shape {(2,) + input_shape} "
                             f"({type(exc).__name__}: {exc}); input_shape is one sample as the module "
                             f"takes it") from None

    def run(self, x) -> dict:
        """Every node's value for input ``x``."""
        import torch

        values = {}
        with torch.no_grad():
            for node in self.nodes:
                if node.op == "placeholder":
                    values[node] = x
                elif node.op != "output":
                    values[node] = self.evaluate(node, values)
        return values

    def evaluate(self, node, values: dict):
        """``node``'s value, its inputs taken from ``values``."""
        import torch.fx

        args = torch.fx.node.map_arg(node.args, values.__getitem__)
        kwargs = torch.fx.node.map_arg(node.kwargs, values.__getitem__)
        if node.op == "get_attr":
            target = self.traced
            for part in node.target.split("."):
                target = getattr(target, part)
            return target
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return self.submodule(node)(*args, **kwargs)

    def submodule(self, node):
        return self.traced.get_submodule(node.target)

    def depends_on_input(self, node) -> bool:
        return node is self.input or any(self.depends_on_input(a) for a in node.all_input_nodes)

    def constant(self, node, what: str) -> np.ndarray:
        """The value of ``node``, which must not depend on the input (a weight expression)."""
        import torch

        if node is None:
            return None
        if isinstance(node, torch.Tensor):
            value = node
        elif self.depends_on_input(node):
            raise UnsupportedModelError(f"node {node.name!r}: the {what} depends on the input")
        else:
            value = self.values[node]
        return value.detach().double().numpy()


def _describe(graph: _Graph, node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(graph.submodule(node)).__name__})"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"node {node.name!r} ({node.op} {target})"


def _pair(value, what: str, where: str) -> tuple:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise UnsupportedModelError(f"{where}: {what} {value!r} is not a pair")
    return tuple(int(v) for v in pair)


def _padding(padding, kernel: tuple, stride: int, where: str):
    """PyTorch's padding as espresso_cl's: 'valid', 'same' (stride 1, where PyTorch's and
    TensorFlow's agree), else explicit ((top, bottom), (left, right))."""
    if padding == "same":
        if stride != 1:
            raise UnsupportedModelError(f"{where}: padding 'same' with stride {stride}")
        return "same"
    if padding == "valid":
        return "valid"
    ph, pw = _pair(padding, "padding", where)
    return simplest_padding(((ph, ph), (pw, pw)), kernel, stride)


def _stride(stride, where: str) -> int:
    sh, sw = _pair(stride, "stride", where)
    if sh != sw:
        raise UnsupportedModelError(f"{where}: stride ({sh}, {sw}) differs between the axes; "
                                    f"espresso_cl convolutions and pools take one stride")
    return sh


# Elementwise operations that may make up a binarization (or pass a value through); what they
# compute is decided by evaluating them, never by their names.
def _elementwise_functions():
    import torch
    from torch.nn import functional as F

    return {torch.sign, torch.where, torch.ge, torch.gt, torch.le, torch.lt, torch.eq, torch.ne,
            torch.ones_like, torch.zeros_like, torch.full_like, torch.neg, torch.mul, torch.add, torch.sub,
            torch.clamp, torch.clip, torch.tanh, torch.relu, torch.abs, F.hardtanh, F.relu, F.relu6, F.elu,
            F.leaky_relu, torch.sigmoid, F.silu, F.gelu, F.tanh, F.sigmoid,
            operator.ge, operator.gt, operator.le, operator.lt, operator.eq, operator.ne, operator.neg,
            operator.pos, operator.mul, operator.add, operator.sub, operator.truediv}


ELEMENTWISE_METHODS = {"sign", "ge", "gt", "le", "lt", "eq", "ne", "neg", "mul", "add", "sub", "div",
                       "to", "float", "type", "type_as", "detach", "clone", "clamp", "clip", "abs",
                       "tanh", "relu", "sigmoid", "contiguous", "where"}


def _elementwise_modules():
    from torch import nn

    return (nn.Identity, nn.Dropout, nn.Hardtanh, nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
            nn.ELU, nn.GELU, nn.SiLU, nn.PReLU, nn.Softsign, nn.Hardswish, nn.Mish)


class _Walk:
    """The traced nodes from input to output as a chain of espresso_cl layers."""

    def __init__(self, graph: _Graph, shape: tuple, input_dtype: str):
        self.graph = graph
        self.input_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        self.input_dtype = input_dtype
        self.layers: list = []
        self.state_dict: dict = {}
        self.nhwc_flattens: set = set()
        self.current = graph.input      # the value the next layer reads
        self.run: list = []             # elementwise nodes applied to current since the last layer
        self.permuted = None            # the node of a permute(0, 2, 3, 1) awaiting its flatten
        self.functions = _elementwise_functions()
        self.modules = _elementwise_modules()

    def recipe(self) -> Recipe:
        graph = self.graph
        for node in graph.nodes:
            if node.op in ("placeholder", "get_attr") or not graph.depends_on_input(node):
                continue  # the input, parameters and expressions of parameters (weights)
            if node.op == "output":
                self.reads(node, graph.output)
                break
            if not isinstance(graph.values.get(node), _tensor_type()):
                continue  # sizes and shapes (x.size(0) for a view): read where they are used
            if self.elementwise(node):
                self.run.append(node)
                continue
            self.layer(node)
        if self.permuted is not None:
            raise UnsupportedModelError(f"{_describe(graph, self.permuted)}: a permute not followed by a flatten")
        return Recipe(self.layers, self.input_shape, self.input_dtype, self.state_dict, self.nhwc_flattens)

    # -- elementwise runs ------------------------------------------------------------------------
    def elementwise(self, node) -> bool:
        graph = self.graph
        if node.op == "call_function":
            ok = node.target in self.functions
        elif node.op == "call_method":
            ok = node.target in ELEMENTWISE_METHODS
        else:
            ok = node.op == "call_module" and isinstance(graph.submodule(node), self.modules)
        if not ok:
            return False
        inputs = [a for a in node.all_input_nodes
                  if graph.depends_on_input(a) and isinstance(graph.values[a], _tensor_type())]
        chain = {self.current, *self.run}
        if not all(a in chain for a in inputs):
            return False  # reads a value off the chain (a residual): refused by layer()
        return graph.values[node].shape == graph.values[self.current].shape

    def reads(self, node, value) -> None:
        """``node`` (a layer) reads ``value``: the elementwise run up to it becomes a Sign layer
        (or nothing, if it passes values through); anything but the chain's value is refused."""
        graph = self.graph
        if value is self.current and not self.run:
            return
        if value not in self.run:
            raise UnsupportedModelError(f"{_describe(graph, node)} reads {value.name!r}, not the output of "
                                        f"the layer before it: branches and residual connections are "
                                        f"not supported")
        run = self.run[:self.run.index(value) + 1]
        outputs = [self.probe(run, value, c) for c in SIGN_PROBE]
        names = " -> ".join(_describe(graph, n) for n in run)
        if all(o is not None and o == c for o, c in zip(outputs, SIGN_PROBE)):
            pass  # passes values through (identity, dropout in eval mode)
        else:
            zero = sign_at_zero(outputs) if None not in outputs else None
            if zero is None:
                shown = {float(c): o for c, o in zip(SIGN_PROBE[[1, 5, 6, 9]], np.asarray(outputs, object)[[1, 5, 6, 9]])}
                raise UnsupportedModelError(f"{names}: an activation that is not a sign (on -7, -0, 0, 1 "
                                            f"it gives {shown}); espresso_cl has +-1 activations only")
            warn_sign_semantics(names, zero)
            if zero != 1:
                self.graph.tie_sources.append(self.current)
            self.add(Sign())
        self.current, self.run = value, []

    def probe(self, run: list, value, constant: float):
        """The run's output when the chain's value is ``constant`` everywhere: one number, or
        None if the output is not constant (a per-channel scale, say)."""
        import torch

        graph = self.graph
        values = dict(graph.values)
        values[self.current] = torch.full_like(graph.values[self.current], constant)
        with torch.no_grad():
            for node in run:
                values[node] = graph.evaluate(node, values)
        out = values[value].double()
        return float(out.reshape(-1)[0]) if bool((out == out.reshape(-1)[0]).all()) else None

    # -- layers ---------------------------------------------------------------------------------
    def add(self, layer, **tensors) -> None:
        index = len(self.layers)
        self.layers.append(layer)
        for name, value in tensors.items():
            if value is not None:
                self.state_dict[f"{index}.{name}"] = value

    def layer(self, node) -> None:
        import torch
        from torch import nn
        from torch.nn import functional as F

        graph = self.graph
        where = _describe(graph, node)
        tensor_args = [a for a in node.all_input_nodes if graph.depends_on_input(a)
                       and isinstance(graph.values.get(a), torch.Tensor)]
        if len(tensor_args) != 1:
            raise UnsupportedModelError(f"{where}: combines {len(tensor_args)} values computed from the "
                                        f"input (a residual addition or concatenation?); espresso_cl "
                                        f"networks are chains")
        self.reads(node, tensor_args[0])
        if self.permuted is not None and not self.flattens(node):
            raise UnsupportedModelError(f"{_describe(graph, self.permuted)}: a permute not followed by a flatten")
        target = node.target
        if node.op == "call_module":
            module = graph.submodule(node)
            kind = type(module)
            if kind is nn.Conv2d:
                if module.padding_mode != "zeros":
                    raise UnsupportedModelError(f"{where}: padding_mode {module.padding_mode!r}; only zeros")
                self.conv(where, module.weight, module.bias, module.stride, module.padding,
                          module.dilation, module.groups)
            elif kind is nn.Linear:
                self.linear(where, module.weight, module.bias)
            elif kind in (nn.BatchNorm1d, nn.BatchNorm2d):
                self.batch_norm(where, module)
            elif kind is nn.MaxPool2d:
                self.max_pool(where, module.kernel_size, module.stride, module.padding, module.dilation,
                              module.ceil_mode, module.return_indices)
            elif kind is nn.Flatten:
                self.flatten(where, node, module.start_dim, module.end_dim)
            elif kind is nn.Softmax:
                self.softmax(where, node, module.dim)
            else:
                raise UnsupportedModelError(f"{where}: espresso_cl has no counterpart of {kind.__name__}")
        elif node.op == "call_function" and target in (F.conv2d, torch.conv2d):
            a = _bound(node, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
                       {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
            self.conv(where, a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"])
        elif node.op == "call_function" and target is F.linear:
            a = _bound(node, ("input", "weight", "bias"), {"bias": None})
            self.linear(where, a["weight"], a["bias"])
        elif node.op == "call_function" and target in (F.max_pool2d, torch.max_pool2d):
            a = _bound(node, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                              "return_indices"), {"stride": None, "padding": 0, "dilation": 1,
                                                  "ceil_mode": False, "return_indices": False})
            self.max_pool(where, a["kernel_size"], a["stride"] or a["kernel_size"], a["padding"], a["dilation"],
                          a["ceil_mode"], a["return_indices"])
        elif (node.op, target) in (("call_function", torch.flatten), ("call_method", "flatten")):
            a = _bound(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
            self.flatten(where, node, a["start_dim"], a["end_dim"])
        elif (node.op, target) in (("call_method", "view"), ("call_method", "reshape"),
                                   ("call_function", torch.reshape)):
            self.flatten(where, node, 1, -1)
        elif (node.op, target) in (("call_method", "permute"), ("call_function", torch.permute)):
            dims = node.args[1:] if len(node.args) > 2 else node.args[1]
            if tuple(dims) != (0, 2, 3, 1) or graph.values[node].dim() != 4:
                raise UnsupportedModelError(f"{where}: permute{tuple(dims)}; only (0, 2, 3, 1) before a flatten")
            self.permuted = node
        elif (node.op, target) in (("call_function", F.softmax), ("call_function", torch.softmax),
                                   ("call_method", "softmax")):
            a = _bound(node, ("input", "dim"), {"dim": None})
            self.softmax(where, node, a["dim"])
        else:
            raise UnsupportedModelError(f"{where}: espresso_cl has no counterpart of this operation")
        self.current = node

    def flattens(self, node) -> bool:
        import torch

        value, before = self.graph.values[node], self.graph.values[self.current]
        return (isinstance(value, torch.Tensor) and value.dim() == 2 and before.dim() == 4
                and value.shape[1] == before[0].numel())

    def conv(self, where, weight, bias, stride, padding, dilation, groups) -> None:
        if groups != 1:
            raise UnsupportedModelError(f"{where}: groups={groups}; espresso_cl convolutions are dense (groups=1)")
        if _pair(dilation, "dilation", where) != (1, 1):
            raise UnsupportedModelError(f"{where}: dilation {dilation}; espresso_cl convolutions are not dilated")
        w = self.graph.constant(weight, "weight")
        b = self.graph.constant(bias, "bias")
        kernel = (w.shape[2], w.shape[3])
        s = _stride(stride, where)
        pad = _padding(padding, kernel, s, where)
        if self.weights_are_binary(where, weight, w):
            self.add(BinaryConv2D(w.shape[0], kernel, s, pad), weight=w, bias=b)
        else:
            self.add(Conv2D(w.shape[0], kernel, s, pad, use_bias=b is not None), weight=w, bias=b)

    def linear(self, where, weight, bias) -> None:
        w = self.graph.constant(weight, "weight")
        b = self.graph.constant(bias, "bias")
        if self.weights_are_binary(where, weight, w):
            self.add(BinaryDense(w.shape[0]), weight=w, bias=b)
        else:
            self.add(Dense(w.shape[0], use_bias=b is not None), weight=w, bias=b)

    def weights_are_binary(self, where, weight, values: np.ndarray) -> bool:
        if binary_weights(values):
            return True
        computed = not isinstance(weight, _tensor_type()) and weight.op != "get_attr"
        if computed and np.all(np.isin(values, (-1.0, 0.0, 1.0))) and np.any(values == 0):
            raise UnsupportedModelError(f"{where}: the binarized weight has {int((values == 0).sum())} "
                                        f"entries of exactly 0 (torch.sign(0) = 0); a binary layer holds "
                                        f"+-1 only")
        return False

    def batch_norm(self, where, module) -> None:
        if module.running_mean is None or module.running_var is None:
            raise UnsupportedModelError(f"{where}: no running statistics (track_running_stats=False)")
        self.add(BatchNorm(eps=float(module.eps)),
                 running_mean=self.graph.constant(module.running_mean, "mean"),
                 running_var=self.graph.constant(module.running_var, "variance"),
                 weight=self.graph.constant(module.weight, "weight") if module.affine else None,
                 bias=self.graph.constant(module.bias, "bias") if module.affine else None)

    def max_pool(self, where, kernel, stride, padding, dilation, ceil_mode, return_indices) -> None:
        if ceil_mode:
            raise UnsupportedModelError(f"{where}: ceil_mode=True; espresso_cl pools take whole windows")
        if return_indices:
            raise UnsupportedModelError(f"{where}: return_indices=True")
        if _pair(dilation, "dilation", where) != (1, 1):
            raise UnsupportedModelError(f"{where}: dilation {dilation}")
        k = _pair(kernel, "kernel_size", where)
        s = _stride(stride if stride is not None else kernel, where)
        ph, pw = _pair(padding, "padding", where)
        self.add(MaxPool2D(k, s, ((ph, ph), (pw, pw))))

    def flatten(self, where, node, start_dim, end_dim) -> None:
        before = self.graph.values[self.current]
        after = self.graph.values[node]
        if not (start_dim == 1 and end_dim == -1 and after.dim() == 2 and after.shape[0] == before.shape[0]):
            raise UnsupportedModelError(f"{where}: a reshape to {tuple(after.shape)} that is not a flatten of "
                                        f"each sample (start_dim 1)")
        if before.dim() == 2:
            return  # already flat
        name = f"{len(self.layers)}_flatten"
        if self.permuted is not None:
            self.nhwc_flattens.add(name)
            self.permuted = None
        self.add(Flatten(name=name))

    def softmax(self, where, node, dim) -> None:
        if node is not self.graph.output:
            raise UnsupportedModelError(f"{where}: softmax is supported as the last operation only")
        if dim not in (1, -1) or self.graph.values[node].dim() != 2:
            raise UnsupportedModelError(f"{where}: softmax over dim {dim}; only over the features of flat outputs")
        self.add(Softmax())


def _tensor_type():
    import torch

    return torch.Tensor


def _bound(node, names: tuple, defaults: dict) -> dict:
    """A call's arguments by name: positional ones first, then keywords, then defaults."""
    bound = dict(defaults)
    bound.update(zip(names, node.args))
    bound.update(node.kwargs)
    return bound
