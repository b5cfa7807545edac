"""Import an ONNX network as an espresso_cl model, exactly, or refuse.

``from_onnx(path_or_model, input_dtype)`` reads the graph from its one input to its one output
as a chain of espresso_cl layers. Tested with PyTorch 2.13's exporters (``dynamo=True`` at
opset 18, the legacy ``dynamo=False`` at opset 17) and onnx 1.23 / onnxruntime 1.32; opsets 13
and newer are read, since the semantics of the operations below are the same in all of them.

Constants first: initializers, ``Constant`` nodes, and every node whose inputs are all constant
(``Identity``, a ``Sign`` or ``Where`` of a latent weight, a ``Transpose``, a ``Shape`` of a
tensor whose shape is static, ...) are evaluated with onnx's reference evaluator, so a weight
is the value the graph multiplies by, however it is written. Then, from the input (float32
(batch, C, H, W) or (batch, features); a batch size fixed at export is fine, as exporters bake
the example's into reshapes and constants, but reading a dynamic one with ``Shape`` is not):

- ``Conv`` (2-D, ``group`` 1, ``dilations`` 1, the same stride on both axes, constant weights;
  ``pads`` or ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID, turned into exact amounts: 'valid'
  when none, 'same' for stride 1 and the amounts 'same' pads, else ((top, bottom), (left,
  right))) -> ``BinaryConv2D`` when the weights of each output channel are +-s (s >= 0, one
  per channel), else ``Conv2D``. ``Gemm`` (``transA`` 0, ``alpha`` and ``beta`` 1, either
  ``transB``) and ``MatMul`` [+ ``Add`` of a constant bias] -> ``BinaryDense`` / ``Dense`` by
  the same rule per output row.
- A binary layer's weights s * B are split exactly: B (+-1; +1 where s is 0) into the binary
  layer, s and the bias into a ``BatchNorm`` (eps 0, mean 0, variance 1, gamma s, beta the
  bias). That is how the dynamo exporter writes a binary conv whose batch-norm it fused. A bias
  on +-1 weights followed (after max-pooling, if any) by a ``BatchNormalization`` goes into
  that batch-norm instead. Weights that are +-s per output but for a few exact zeros
  (``torch.sign`` of a weight that is exactly 0, perhaps with a batch-norm folded in) are
  refused: a binary layer holds +-1 only.
- ``BatchNormalization`` (inference: ``training_mode`` 0, the ``epsilon`` attribute; eps 0
  only when every variance is positive) -> ``BatchNorm``. ``MaxPool`` (``ceil_mode`` 0,
  ``dilations`` 1, ``storage_order`` 0, no indices output, padding less than the window;
  padded taps take no part in the max, as in ONNX) -> ``MaxPool2D``.
- ``Flatten`` (axis 1) and ``Reshape`` to (batch, -1 or the features) -> ``Flatten``: NCHW
  order, which :func:`espresso_cl.torch_import.load_state_dict` permutes into espresso_cl's
  NHWC; after a ``Transpose`` with perm [0, 2, 3, 1] the flatten is in NHWC order already.
  ``Softmax`` over the last axis of flat values -> ``Softmax``.
- A maximal run of elementwise nodes on one tensor (``Sign``, ``Where``, comparisons with a
  constant 0, ``Neg``, ``Cast``, ``Identity``, ``Dropout`` in inference mode, ``Mul`` / ``Add``
  with constants, and any activation: ``Relu``, ``Clip``, ...) is evaluated on
  :data:`espresso_cl.importing.SIGN_PROBE` values, never judged by its names: one that passes
  values through adds nothing, a sign becomes ``Sign`` (a :class:`SignSemanticsWarning` when it
  maps 0 to 0 or -1, espresso_cl's sign(0) being +1, and the example check counts those ties
  apart), anything else is refused.

Everything else (other operations, branches and residual connections, several inputs or
outputs, weights computed from the input, and what the rules above leave out) raises
:class:`UnsupportedModelError` naming the node (op type and name) and the reason. Given
``example`` (a batch in the graph's own layout, NCHW), onnxruntime runs the graph, the import
runs it too, and disagreements other than sign(0) ties raise :class:`ImportMismatchError`
unless ``allow_mismatch``.
"""

from __future__ import annotations

import math

import numpy as np

from .importing import (SIGN_PROBE, Recipe, UnsupportedModelError, agreement, check_agreement, sign_at_zero,
                        split_binary_weights, warn_sign_semantics)
from .geometry import simplest_padding
from .layers import BatchNorm, BinaryConv2D, BinaryDense, Conv2D, Dense, Flatten, MaxPool2D, Sign, Softmax
from .layers.base import ShapeError
from .model import INPUT_DTYPES
from .torch_import import StateDictError

MIN_OPSET = 13
INSTALL = "pip install 'espresso_cl[onnx]'"
DEFAULT_DOMAINS = ("", "ai.onnx")
# Never evaluated ahead: their value is not a function of their inputs.
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
              "Bernoulli", "Dropout"}
# Elementwise operations that may make up a binarization or pass values through; what a run of
# them computes is found by evaluating it.
ELEMENTWISE_OPS = {
    "Sign", "Where", "GreaterOrEqual", "Greater", "LessOrEqual", "Less", "Equal", "Not", "And", "Or",
    "Xor", "Neg", "Abs", "Cast", "CastLike", "Identity", "Dropout", "Mul", "Add", "Sub", "Div", "Min",
    "Max", "Clip", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid",
    "HardSwish", "Sigmoid", "Tanh", "Softsign", "Softplus", "Mish", "ThresholdedRelu", "Shrink",
    "Round", "Floor", "Ceil", "Sqrt", "Pow", "Exp", "Log", "Erf",
}
COMPARISONS = {"GreaterOrEqual", "Greater", "LessOrEqual", "Less", "Equal"}


def from_onnx(model, input_dtype: str = "float32", example=None, allow_mismatch: bool = False,
              runtime=None):
    """The espresso_cl :class:`~espresso_cl.model.Sequential` that computes what the ONNX
    network ``model`` (a file path or an ``onnx.ModelProto``) computes.

    The graph takes (batch, C, H, W) or (batch, features) float32; the model takes NHWC images
    (H, W, C). ``input_dtype='uint8'`` when the network reads raw pixel values 0..255 (as
    floats): the first binary layer then reads them by bit planes. ``example``: a batch in the
    graph's layout (NCHW) on which onnxruntime and the import are compared (needs onnxruntime);
    disagreements other than sign(0) ties raise :class:`ImportMismatchError` unless
    ``allow_mismatch``. ``runtime``: the device runtime of the model (default: the default one).
    Needs the ``onnx`` package (``pip install 'espresso_cl[onnx]'``); never imports torch.
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    graph = _Graph(_load(model))
    walk = _Walk(graph, input_dtype)
    recipe = walk.recipe()
    try:
        built = recipe.build(runtime)
    except (ShapeError, StateDictError) as exc:
        raise UnsupportedModelError(f"the ONNX graph does not map onto espresso_cl layers: {exc}"
                                    f"{walk.source_of(str(exc))}") from None
    if example is not None:
        check_agreement(_compare(graph, built, example, input_dtype), allow_mismatch)
    return built


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(f"from_onnx needs the onnx package: {INSTALL}") from None
    return onnx


def _load(model):
    onnx = _onnx()
    return model if isinstance(model, onnx.ModelProto) else onnx.load(model)


def _describe(node) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node computing {node.output[0]!r}"


def _attributes(node) -> dict:
    from onnx import helper

    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


class _Graph:
    """The graph with its constants evaluated, shapes inferred and the nodes the output needs."""

    def __init__(self, proto):
        onnx = _onnx()
        self.opset = _opset(proto)
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise UnsupportedModelError(f"not a valid ONNX model: {exc}") from None
        if proto.functions:
            proto = onnx.inliner.inline_local_functions(proto)
        try:
            self.proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
        except Exception as exc:  # onnx raises its own error types, by version
            raise UnsupportedModelError(f"ONNX shape inference fails on the graph: {exc}") from None
        g = self.proto.graph
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i.name for i in g.input if i.name not in self.constants]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UnsupportedModelError(f"the graph has {len(inputs)} inputs {inputs} and {len(g.output)} "
                                        f"outputs; espresso_cl models take one input and give one output")
        self.input, self.output = inputs[0], g.output[0].name
        self.value_info = {v.name: v for v in (*g.input, *g.value_info, *g.output)}
        self.evaluators: dict = {}
        self.fold(g.node)
        self.nodes = self.needed(g.node)
        self.consumers: dict = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.input):
                self.consumers.setdefault(name, []).append(node)
        self.tie_sources: list = []  # inputs of binarizations whose sign(0) is not +1

    def evaluate(self, node, feeds: dict) -> list:
        """``node``'s outputs for the input values ``feeds`` (onnx's reference evaluator)."""
        from onnx.reference import ReferenceEvaluator

        key = id(node)
        if key not in self.evaluators:
            self.evaluators[key] = ReferenceEvaluator(node, opsets={"": self.opset})
        try:
            return self.evaluators[key].run(None, {name: feeds[name] for name in node.input if name})
        except Exception as exc:  # the evaluator raises whatever NumPy raises
            raise UnsupportedModelError(f"{_describe(node)}: cannot evaluate it ({type(exc).__name__}: "
                                        f"{exc})") from None

    def fold(self, nodes) -> None:
        """Evaluate every node whose value does not depend on the input, in graph order."""
        for node in nodes:
            if node.domain not in DEFAULT_DOMAINS or node.op_type in RANDOM_OPS:
                continue
            inputs = [name for name in node.input if name]
            if node.op_type in ("Shape", "Size") and None not in self.shape(inputs[0], strict=False):
                # The tensor's shape is static: its values do not matter.
                feeds = {inputs[0]: np.zeros(self.shape(inputs[0]), np.float32)}
            elif all(name in self.constants for name in inputs):
                feeds = self.constants
            else:
                continue
            self.constants.update(zip(node.output, self.evaluate(node, feeds)))

    def needed(self, nodes) -> list:
        """The nodes that compute the output from the input (constants already evaluated)."""
        producer = {out: node for node in nodes for out in node.output if out}
        needed, stack = set(), [self.output]
        while stack:
            name = stack.pop()
            node = producer.get(name)
            if name in self.constants or node is None or id(node) in needed:
                continue
            needed.add(id(node))
            stack.extend(i for i in node.input if i)
        return [node for node in nodes if id(node) in needed]

    def shape(self, name: str, strict: bool = True) -> tuple:
        """The inferred shape of tensor ``name``: ints, None where not static."""
        info = self.value_info.get(name)
        tensor = info.type.tensor_type if info is not None and info.type.HasField("tensor_type") else None
        if tensor is None or not tensor.HasField("shape"):
            if strict:
                raise UnsupportedModelError(f"ONNX shape inference does not tell the shape of tensor {name!r}")
            return (None,)
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)

    def dtype(self, name: str):
        from onnx import helper

        return helper.tensor_dtype_to_np_dtype(self.value_info[name].type.tensor_type.elem_type)

    def dynamic_inputs(self, node) -> list:
        return [name for name in node.input if name and name not in self.constants]

    def used(self, name: str) -> bool:
        return name == self.output or bool(self.consumers.get(name))


def _opset(proto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions or versions[0] < MIN_OPSET:
        raise UnsupportedModelError(f"the model uses opset {versions[0] if versions else 'none'}; "
                                    f"from_onnx reads opset {MIN_OPSET} and newer (tested 17 and 18): "
                                    f"export again with opset_version=17 or newer")
    return versions[0]


def _bias(value: np.ndarray, units: int, where: str, name: str) -> np.ndarray:
    try:
        return np.broadcast_to(value, (1, units))[0].astype(np.float64)
    except ValueError:
        raise UnsupportedModelError(f"{where}: bias {name!r} of shape {value.shape} is not one value per "
                                    f"output ({units})") from None


class _Walk:
    """The nodes from input to output as a chain of espresso_cl layers."""

    def __init__(self, graph: _Graph, input_dtype: str):
        self.graph = graph
        shape = graph.shape(graph.input)
        if graph.dtype(graph.input) != np.float32 or len(shape) not in (2, 4) or None in shape[1:]:
            raise UnsupportedModelError(f"the graph input {graph.input!r} is {graph.dtype(graph.input)} "
                                        f"of shape {shape}; espresso_cl takes float32 (batch, C, H, W) or "
                                        f"(batch, features) with static sizes")
        self.input_shape = (shape[2], shape[3], shape[1]) if len(shape) == 4 else shape[1:]
        self.input_dtype = input_dtype
        self.layers: list = []
        self.state_dict: dict = {}
        self.nhwc_flattens: set = set()
        self.sources: dict = {}   # layer name -> the nodes it comes from
        self.permuted = None      # a Transpose to NHWC awaiting its flatten

    def recipe(self) -> Recipe:
        graph = self.graph
        current = graph.input
        while True:
            current = self.activation(current)
            if current == graph.output:
                break
            node = self.next_node(current)
            handler = HANDLERS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
            if handler is None:
                raise UnsupportedModelError(f"{_describe(node)}: espresso_cl has no counterpart of "
                                            f"{node.domain + '.' if node.domain else ''}{node.op_type} "
                                            f"(it maps {', '.join(sorted(HANDLERS))} and sign activations)")
            if self.permuted is not None and node.op_type not in ("Flatten", "Reshape"):
                raise UnsupportedModelError(f"{_describe(self.permuted)}: a transpose not followed by a flatten")
            current = handler(self, node, current)
        if self.permuted is not None:
            raise UnsupportedModelError(f"{_describe(self.permuted)}: a transpose not followed by a flatten")
        if not self.layers:
            raise UnsupportedModelError("the graph computes nothing espresso_cl holds as a layer")
        return Recipe(self.layers, self.input_shape, self.input_dtype, self.state_dict, self.nhwc_flattens)

    def source_of(self, message: str) -> str:
        """Which nodes the layer a build error names comes from."""
        found = [f"; layer {name!r} comes from {source}" for name, source in self.sources.items()
                 if repr(name) in message]
        return found[0] if found else ""

    def add(self, layer, source: str, **tensors) -> None:
        index = len(self.layers)
        layer.name = layer.name or f"{index}_{layer.type_name}"
        self.layers.append(layer)
        self.sources[layer.name] = source
        for name, value in tensors.items():
            if value is not None:
                self.state_dict[f"{index}.{name}"] = np.asarray(value, np.float64)

    def constant(self, node, index: int, what: str):
        """Input ``index`` of ``node``, which must be a constant; None if absent."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.graph.constants:
            raise UnsupportedModelError(f"{_describe(node)}: its {what} {name!r} is computed from the input; "
                                        f"it must be an initializer or computed from initializers")
        return self.graph.constants[name]

    # -- the chain ------------------------------------------------------------------------
    def next_node(self, current: str):
        """The one node that reads ``current`` (its handler refuses other inputs that are not
        constants)."""
        graph = self.graph
        consumers = graph.consumers.get(current, [])
        if not consumers:
            raise UnsupportedModelError(f"the graph's output {graph.output!r} does not depend on its input")
        for node in consumers:
            if node.op_type in ("Shape", "Size"):
                # Not evaluated ahead: the shape is not static (a dynamic batch size).
                raise UnsupportedModelError(f"{_describe(node)}: reads the shape of {current!r} at run time; "
                                            f"export with a fixed batch size, or flatten with torch.flatten")
        if len(consumers) > 1:
            combining = [n for n in consumers if len(set(graph.dynamic_inputs(n))) > 1]
            culprit = (combining or consumers)[-1]
            others = ", ".join(_describe(n) for n in consumers if n is not culprit)
            raise UnsupportedModelError(f"{_describe(culprit)}: reads {current!r}, which {others} reads too: "
                                        f"branches and residual connections are not supported (espresso_cl "
                                        f"networks are chains)")
        node = consumers[0]
        if node.input[0] != current:
            raise UnsupportedModelError(f"{_describe(node)}: reads the activations {current!r} as input "
                                        f"{list(node.input).index(current)}, not as its data input")
        return node

    def activation(self, start: str) -> str:
        """The tensor after the maximal elementwise run from ``start``: a Sign layer if it is a
        sign, nothing if it passes values through; anything else is refused."""
        run, end = self.elementwise_run(start)
        if not run:
            return start
        names = " -> ".join(_describe(n) for n in run)
        probes = SIGN_PROBE.astype(self.graph.dtype(start))
        outputs = [self.probe(run, start, end, value) for value in probes]
        if all(o == value for o, value in zip(outputs, probes)):
            return end  # identity, dropout in inference mode, a cast to the same type
        zero = sign_at_zero(outputs) if None not in outputs else None
        if zero is None:
            shown = ", ".join(f"{SIGN_PROBE[i]:g} -> {outputs[i]}" for i in (1, 5, 6, 9))
            raise UnsupportedModelError(f"{names}: an activation that is not a sign ({shown}; None where it "
                                        f"differs across elements); espresso_cl activations are signs (+-1)")
        warn_sign_semantics(names, zero)
        if zero != 1:
            self.graph.tie_sources.append(start)
        self.add(Sign(), names)
        return end

    def elementwise_run(self, start: str):
        """(the elementwise nodes computed from ``start`` alone, in order; the one tensor that
        leaves them)."""
        graph = self.graph
        run, tensors = [], {start}
        for node in graph.nodes:
            dynamic = graph.dynamic_inputs(node)
            if (node.op_type in ELEMENTWISE_OPS and node.domain in DEFAULT_DOMAINS and dynamic
                    and all(name in tensors for name in dynamic)):
                self.check_elementwise(node)
                run.append(node)
                tensors.update(name for name in node.output if name)
        if not run:
            return run, start
        inside = {id(n) for n in run}
        outside = {t: [n for n in graph.consumers.get(t, []) if id(n) not in inside] for t in tensors}
        exits = sorted(t for t in tensors if t == graph.output or outside[t])
        if len(exits) != 1 or start in exits:
            readers = ", ".join(_describe(n) for t in exits for n in outside[t])
            raise UnsupportedModelError(f"{readers}: read {exits}, all computed from {start!r} by "
                                        f"{', '.join(_describe(n) for n in run)}: branches and residual "
                                        f"connections are not supported (espresso_cl networks are chains)")
        end = exits[0]
        if graph.shape(end) != graph.shape(start):
            raise UnsupportedModelError(f"{_describe(run[-1])}: turns {start!r} of shape {graph.shape(start)} "
                                        f"into shape {graph.shape(end)}")
        return run, end

    def check_elementwise(self, node) -> None:
        """Refuse what evaluating a run on probe values would not see: dropout in training
        mode, comparisons with a threshold other than 0."""
        where = _describe(node)
        if node.op_type == "Dropout":
            training = self.constant(node, 2, "training_mode")
            if training is not None and bool(np.any(training)):
                raise UnsupportedModelError(f"{where}: dropout in training mode (random)")
            if any(self.graph.used(name) for name in node.output[1:] if name):
                raise UnsupportedModelError(f"{where}: its mask output is used")
        if node.op_type in COMPARISONS:
            threshold = [self.graph.constants[n] for n in node.input if n in self.graph.constants]
            if not threshold or np.any(threshold[0] != 0):
                against = threshold[0] if threshold else "a computed value"
                raise UnsupportedModelError(f"{where}: compares with {against}, not 0: not a sign")

    def probe(self, run: list, start: str, end: str, value: float):
        """The run's output when ``start`` is ``value`` everywhere: one number, or None if it
        differs across elements (a per-channel scale, say)."""
        graph = self.graph
        shape = tuple(d if d is not None else 1 for d in graph.shape(start))
        values = dict(graph.constants)
        values[start] = np.full(shape, value, graph.dtype(start))
        for node in run:
            values.update(zip(node.output, graph.evaluate(node, values)))
        out = np.asarray(values[end], np.float64).reshape(-1)
        return float(out[0]) if out.size and np.all(out == out[0]) else None

    # -- layers ---------------------------------------------------------------------------
    def conv(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        weight = self.constant(node, 1, "weight")
        bias = self.constant(node, 2, "bias")
        if weight.ndim != 4:
            raise UnsupportedModelError(f"{where}: a {weight.ndim - 2}-D convolution; espresso_cl's are 2-D")
        if a.get("group", 1) != 1:
            raise UnsupportedModelError(f"{where}: group={a['group']}; espresso_cl convolutions are dense "
                                        f"(group 1)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedModelError(f"{where}: dilations {a['dilations']}; espresso_cl convolutions are not "
                                        f"dilated")
        kernel = tuple(int(k) for k in weight.shape[2:])
        if tuple(a.get("kernel_shape", kernel)) != kernel:
            raise UnsupportedModelError(f"{where}: kernel_shape {a['kernel_shape']} differs from the weight's "
                                        f"{kernel}")
        stride = self.stride(where, a)
        padding = simplest_padding(self.pad_amounts(where, a, current, kernel, stride), kernel, stride)
        filters = weight.shape[0]
        self.weighted(node, node.output[0], weight, bias,
                      lambda: BinaryConv2D(filters, kernel, stride, padding),
                      lambda: Conv2D(filters, kernel, stride, padding, use_bias=bias is not None))
        return node.output[0]

    def gemm(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        self.check_flat(where, current)
        weight = self.constant(node, 1, "weight")
        bias = self.constant(node, 2, "bias")
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or (bias is not None and a.get("beta", 1.0) != 1.0):
            raise UnsupportedModelError(f"{where}: transA={a.get('transA', 0)}, alpha={a.get('alpha', 1.0)}, "
                                        f"beta={a.get('beta', 1.0)}; espresso_cl dense layers compute x W^T + b")
        weight = weight if a.get("transB", 0) else weight.T
        if bias is not None:
            bias = _bias(bias, weight.shape[0], where, node.input[2])
        self.dense(node, node.output[0], weight, bias)
        return node.output[0]

    def matmul(self, node, current: str) -> str:
        where = _describe(node)
        self.check_flat(where, current)
        weight = self.constant(node, 1, "weight")
        if weight.ndim != 2:
            raise UnsupportedModelError(f"{where}: multiplies by a {weight.ndim}-D tensor; a dense layer's is 2-D")
        out, bias = node.output[0], None
        consumers = self.graph.consumers.get(out, [])
        add = consumers[0] if len(consumers) == 1 and consumers[0].op_type == "Add" else None
        if add is not None and len(self.graph.dynamic_inputs(add)) == 1:  # + a constant: the bias
            name = next(n for n in add.input if n != out)
            bias = _bias(self.graph.constants[name], weight.shape[1], _describe(add), name)
            out = add.output[0]
        self.dense(node, out, weight.T, bias)
        return out

    def dense(self, node, output: str, weight: np.ndarray, bias) -> None:
        units = weight.shape[0]
        self.weighted(node, output, weight, bias, lambda: BinaryDense(units),
                      lambda: Dense(units, use_bias=bias is not None))

    def weighted(self, node, output: str, weight, bias, binary, floating) -> None:
        """A conv or dense layer with ``weight`` (PyTorch layout) and ``bias``, computing
        ``output``: binary (+ a batch-norm for a per-channel scale, or for a bias no batch-norm
        after it absorbs), or float."""
        where = _describe(node)
        split = split_binary_weights(weight, where, node.input[1])
        if split is None:
            self.add(floating(), where, weight=weight, bias=bias)
            return
        signs, scale = split
        if scale is None and (bias is None or self.batch_norm_follows(output)):
            self.add(binary(), where, weight=signs, bias=bias)  # load_state_dict folds the bias
            return
        self.add(binary(), where, weight=signs)
        units = len(signs)
        self.add(BatchNorm(eps=0.0), f"{where} (its per-channel scale and bias)",
                 running_mean=np.zeros(units), running_var=np.ones(units),
                 weight=np.ones(units) if scale is None else scale,
                 bias=np.zeros(units) if bias is None else bias)

    def batch_norm_follows(self, name: str) -> bool:
        """Whether ``name`` reaches a BatchNormalization through max-pooling only."""
        consumers = self.graph.consumers.get(name, [])
        if len(consumers) != 1 or name == self.graph.output:
            return False
        node = consumers[0]
        if node.op_type == "MaxPool":
            return self.batch_norm_follows(node.output[0])
        return node.op_type == "BatchNormalization"

    def batch_norm(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        if a.get("training_mode", 0):
            raise UnsupportedModelError(f"{where}: training_mode=1 (batch statistics)")
        if any(self.graph.used(name) for name in node.output[1:] if name):
            raise UnsupportedModelError(f"{where}: its running-statistics outputs are used")
        if len(self.graph.shape(current)) not in (2, 4):
            raise UnsupportedModelError(f"{where}: normalizes a tensor of shape {self.graph.shape(current)}; "
                                        f"espresso_cl's takes (batch, C, H, W) or (batch, features)")
        scale, beta, mean, var = (self.constant(node, i, what) for i, what in
                                  enumerate(("scale", "bias", "mean", "variance"), 1))
        eps = float(a.get("epsilon", 1e-5))
        if np.any(var < 0) or (eps <= 0 and np.any(var <= 0)):
            raise UnsupportedModelError(f"{where}: variance {node.input[4]!r} with epsilon {eps} is not positive")
        self.add(BatchNorm(eps=eps), where, weight=scale, bias=beta, running_mean=mean, running_var=var)
        return node.output[0]

    def max_pool(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        kernel = tuple(a["kernel_shape"])
        if len(kernel) != 2:
            raise UnsupportedModelError(f"{where}: a {len(kernel)}-D pool; espresso_cl's are 2-D")
        if a.get("ceil_mode", 0):
            raise UnsupportedModelError(f"{where}: ceil_mode=1; espresso_cl pools take whole windows (ceil_mode 0)")
        if any(d != 1 for d in a.get("dilations", [1, 1])) or a.get("storage_order", 0):
            raise UnsupportedModelError(f"{where}: dilations {a.get('dilations')} / storage_order "
                                        f"{a.get('storage_order')}; espresso_cl pools are not dilated")
        if len(node.output) > 1 and self.graph.used(node.output[1]):
            raise UnsupportedModelError(f"{where}: its indices output is used")
        stride = self.stride(where, a)
        amounts = self.pad_amounts(where, a, current, kernel, stride)
        if any(p >= k for pair, k in zip(amounts, kernel) for p in pair):
            raise UnsupportedModelError(f"{where}: padding {amounts} not less than the window {kernel}")
        self.add(MaxPool2D(kernel, stride, simplest_padding(amounts, kernel, stride)), where)
        return node.output[0]

    def flatten(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        rank = len(self.graph.shape(current))
        axis = a.get("axis", 1)
        if (axis + rank if axis < 0 else axis) != 1:
            raise UnsupportedModelError(f"{where}: axis {axis}; espresso_cl flattens each sample (axis 1)")
        return self.flattened(node, current)

    def reshape(self, node, current: str) -> str:
        where, a = _describe(node), _attributes(node)
        target = [int(d) for d in self.constant(node, 1, "shape")]
        shape = self.graph.shape(current)
        features = math.prod(shape[1:])
        if not a.get("allowzero", 0):
            target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
        if not (len(target) == 2 and ((target[0] == shape[0] and target[1] in (-1, features))
                                      or target == [-1, features])):
            raise UnsupportedModelError(f"{where}: a reshape of {shape} to {target}, not a flatten of each "
                                        f"sample to (batch, {features})")
        return self.flattened(node, current)

    def flattened(self, node, current: str) -> str:
        if len(self.graph.shape(current)) == 2:
            return node.output[0]  # already flat
        name = f"{len(self.layers)}_flatten"
        if self.permuted is not None:
            self.nhwc_flattens.add(name)
        self.add(Flatten(name=name), _describe(node) if self.permuted is None
                 else f"{_describe(self.permuted)} -> {_describe(node)}")
        self.permuted = None
        return node.output[0]

    def transpose(self, node, current: str) -> str:
        perm = list(_attributes(node).get("perm", []))
        rank = len(self.graph.shape(current))
        if perm == list(range(rank)):
            return node.output[0]
        if perm != [0, 2, 3, 1]:
            raise UnsupportedModelError(f"{_describe(node)}: perm {perm}; only [0, 2, 3, 1] (to NHWC) before a "
                                        f"flatten")
        self.permuted = node
        return node.output[0]

    def softmax(self, node, current: str) -> str:
        axis = _attributes(node).get("axis", -1)
        if len(self.graph.shape(current)) != 2 or axis not in (1, -1):
            raise UnsupportedModelError(f"{_describe(node)}: softmax over axis {axis} of shape "
                                        f"{self.graph.shape(current)}; espresso_cl's is over the features of "
                                        f"flat values")
        self.add(Softmax(), _describe(node))
        return node.output[0]

    # -- attributes -----------------------------------------------------------------------
    def check_flat(self, where: str, current: str) -> None:
        if len(self.graph.shape(current)) != 2:
            raise UnsupportedModelError(f"{where}: multiplies a tensor of shape {self.graph.shape(current)}; "
                                        f"flatten it to (batch, features) first")

    @staticmethod
    def stride(where: str, a: dict) -> int:
        strides = list(a.get("strides", [1, 1]))
        if len(strides) != 2 or strides[0] != strides[1]:
            raise UnsupportedModelError(f"{where}: strides {strides}; espresso_cl convolutions and pools take "
                                        f"one stride for both axes")
        return int(strides[0])

    def pad_amounts(self, where: str, a: dict, current: str, kernel: tuple, stride: int) -> tuple:
        """((top, bottom), (left, right)) from ``pads`` or ``auto_pad`` (ONNX pads are
        [top, left, bottom, right])."""
        auto = a.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return ((0, 0), (0, 0))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            amounts = []
            for size, k in zip(self.graph.shape(current)[2:], kernel):
                total = max((-(-size // stride) - 1) * stride + k - size, 0)
                small, big = total // 2, total - total // 2  # SAME_UPPER puts the odd one at the end
                amounts.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return tuple(amounts)
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        if auto != "NOTSET" or len(pads) != 4 or min(pads) < 0:
            raise UnsupportedModelError(f"{where}: auto_pad {auto!r}, pads {pads}")
        return ((pads[0], pads[2]), (pads[1], pads[3]))


# What each ONNX operation on the chain becomes (elementwise runs: :meth:`_Walk.activation`).
HANDLERS = {
    "Conv": _Walk.conv,
    "Gemm": _Walk.gemm,
    "MatMul": _Walk.matmul,
    "BatchNormalization": _Walk.batch_norm,
    "MaxPool": _Walk.max_pool,
    "Flatten": _Walk.flatten,
    "Reshape": _Walk.reshape,
    "Transpose": _Walk.transpose,
    "Softmax": _Walk.softmax,
}


# -- the check against onnxruntime -------------------------------------------------------------
def _compare(graph: _Graph, model, example, input_dtype: str):
    x = np.asarray(example)
    shape = graph.shape(graph.input)
    if x.ndim != len(shape) or x.shape[1:] != shape[1:] or len(x) == 0:
        raise ValueError(f"example has shape {x.shape}; the graph takes batches of {shape[1:]}")
    theirs, tied = _onnx_outputs(graph, x.astype(np.float32))
    ours_input = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    if input_dtype == "uint8":
        if not np.array_equal(ours_input, np.clip(np.rint(ours_input), 0, 255)):
            raise ValueError("input_dtype is 'uint8' but the example holds values other than integers 0..255")
    ours = model.predict(np.ascontiguousarray(ours_input, np.uint8 if input_dtype == "uint8" else np.float32))
    if ours.ndim == 4:
        ours = ours.transpose(0, 3, 1, 2)  # NHWC back to the graph's NCHW
    return agreement(ours, theirs, tied)


def _onnx_outputs(graph: _Graph, x: np.ndarray):
    """onnxruntime's output for ``x``, and which samples a binarization with sign(0) != +1
    saw an exact 0 in; in runs of the graph's batch size where it is static (exporters bake
    the example's batch size into reshapes and constants)."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"checking an import against an example needs onnxruntime: {INSTALL}") from None
    proto = type(graph.proto)()
    proto.CopyFrom(graph.proto)
    for name in graph.tie_sources:
        proto.graph.output.append(graph.value_info[name])  # its shape was inferred: a probe used it
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = graph.shape(graph.input)[0] or len(x)
    padded = np.concatenate([x, np.repeat(x[-1:], -len(x) % batch, axis=0)])
    runs = [session.run(None, {graph.input: padded[i:i + batch]}) for i in range(0, len(padded), batch)]
    output = np.concatenate([r[0] for r in runs])[:len(x)]
    tied = np.zeros(len(padded), bool)
    for k in range(len(graph.tie_sources)):
        values = np.concatenate([r[k + 1] for r in runs])
        tied |= (values.reshape(len(values), -1) == 0).any(axis=1)
    return output, tied[:len(x)]
