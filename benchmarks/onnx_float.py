"""The float32 program of a network as one ONNX graph, run by ONNX Runtime (an optional baseline).

The graph is built straight from the program the NumPy and PyTorch baselines run
(``espresso_cl.float_program``), so it holds the same parameters; nothing is traced or
converted. It takes the model's input as it is (uint8 pixels, NHWC) and casts and transposes
inside, as the PyTorch forward does, so that every baseline pays for the same conversions.
Convolutions and pools run NCHW, ONNX's layout; the flatten goes back to NHWC order so the
dense weights match.

ONNX Runtime runs it on the CPU (``CPUExecutionProvider``, one intra-op thread per usable core,
sequential execution) and, when the installed build has ``CUDAExecutionProvider`` and a GPU is
benchmarked, on that GPU as well. ``onnx`` builds the graph, ``onnxruntime`` runs it: both
come with the ``onnx`` extra (``pip install -e '.[onnx]'``).
"""

from __future__ import annotations

import numpy as np

from espresso_cl import float_program as fp

OPSET = 17
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class _Graph:
    """Nodes and constants of the graph under construction, and the layout of the current value."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.constants = [], []
        self.nchw = False  # whether the current value is an NCHW image (else (N, features))

    def constant(self, array: np.ndarray) -> str:
        name = f"c{len(self.constants)}"
        self.constants.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list, **attributes) -> str:
        out = f"v{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attributes))
        return out

    def per_channel(self, vector: np.ndarray) -> str:
        """A (C,) float vector shaped to broadcast over the current value's channels."""
        vector = vector.astype(fp.F32)
        return self.constant(vector.reshape(-1, 1, 1) if self.nchw else vector)

    def plus_minus_one(self, condition: str) -> str:
        return self.node("Where", [condition, self.constant(np.array(1, fp.F32)),
                                   self.constant(np.array(-1, fp.F32))])


def _pads(g) -> list:
    """ONNX pads (top, left, bottom, right) of a window geometry; rows and columns past the
    last window are left out (a negative amount), as the NumPy forward never reads them."""
    bottom = max((g.oh - 1) * g.stride + g.kh - g.h - g.pad_top, 0)
    right = max((g.ow - 1) * g.stride + g.kw - g.w - g.pad_left, 0)
    return [g.pad_top, g.pad_left, bottom, right]


def _matmul(graph: _Graph, op: fp.MatMul, x: str) -> str:
    inputs = [x, graph.constant(op.weight.astype(fp.F32))]
    if op.bias is not None:
        inputs.append(graph.constant(op.bias.astype(fp.F32)))
    return graph.node("Gemm", inputs, transB=1)


def _conv(graph: _Graph, op: fp.Conv, x: str) -> str:
    g, pads = op.geometry, _pads(op.geometry)
    if op.pad != 0.0 and any(pads):
        # Conv pads with zeros only: another fill is an explicit Pad (NCHW: no batch or channel padding).
        top, left, bottom, right = pads
        x = graph.node("Pad", [x, graph.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)),
                               graph.constant(np.array(op.pad, fp.F32))], mode="constant")
        pads = [0, 0, 0, 0]
    inputs = [x, graph.constant(np.ascontiguousarray(op.weight.transpose(0, 3, 1, 2)).astype(fp.F32))]
    if op.bias is not None:
        inputs.append(graph.constant(op.bias.astype(fp.F32)))
    return graph.node("Conv", inputs, kernel_shape=[g.kh, g.kw], strides=[g.stride, g.stride], pads=pads)


def _max_pool(graph: _Graph, op: fp.MaxPool, x: str) -> str:
    g = op.geometry  # ONNX's MaxPool leaves padded taps out of every maximum, as the NumPy forward does
    return graph.node("MaxPool", [x], kernel_shape=[g.kh, g.kw], strides=[g.stride, g.stride], pads=_pads(g))


def _threshold(graph: _Graph, op: fp.Threshold, x: str) -> str:
    signed = graph.node("Mul", [x, graph.per_channel(op.direction)])
    return graph.plus_minus_one(graph.node("GreaterOrEqual", [signed, graph.per_channel(op.bound)]))


def _affine(graph: _Graph, op: fp.Affine, x: str) -> str:
    return graph.node("Add", [graph.node("Mul", [x, graph.per_channel(op.scale)]), graph.per_channel(op.shift)])


def _sign(graph: _Graph, op: fp.Sign, x: str) -> str:
    return graph.plus_minus_one(graph.node("GreaterOrEqual", [x, graph.constant(np.array(0, fp.F32))]))


def _flatten(graph: _Graph, op: fp.Flatten, x: str) -> str:
    if graph.nchw:
        x = graph.node("Transpose", [x], perm=[0, 2, 3, 1])
        graph.nchw = False
    return graph.node("Reshape", [x, graph.constant(np.array([0, -1], np.int64))])


def _softmax(graph: _Graph, op: fp.Softmax, x: str) -> str:
    return graph.node("Softmax", [x], axis=-1)


STEPS = {
    fp.MatMul: _matmul, fp.Conv: _conv, fp.MaxPool: _max_pool, fp.Threshold: _threshold,
    fp.Affine: _affine, fp.Sign: _sign, fp.Flatten: _flatten, fp.Softmax: _softmax,
}


def graph(program: list, model, onnx):
    """The ONNX model (a ``ModelProto``) of ``program``, the float32 program of ``model`` (an
    ``espresso_cl.Sequential``, which gives the input and output shapes); the batch axis is dynamic."""
    g = _Graph(onnx)
    helper, TensorProto = onnx.helper, onnx.TensorProto
    value = g.node("Cast", ["x"], to=TensorProto.FLOAT)
    if len(model.input_shape) == 3:
        value = g.node("Transpose", [value], perm=[0, 3, 1, 2])
        g.nchw = True
    for op in program:
        value = STEPS[type(op)](g, op, value)
    if g.nchw:  # an image output goes back to NHWC, as the model gives it
        value = g.node("Transpose", [value], perm=[0, 2, 3, 1])
    g.nodes.append(helper.make_node("Identity", [value], ["y"]))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.input_dtype))
    inputs = [helper.make_tensor_value_info("x", elem, ["batch", *model.input_shape])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *model.output_spec.shape])]
    proto = helper.make_model(helper.make_graph(g.nodes, "float_program", inputs, outputs, g.constants),
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="espresso_cl benchmarks")
    onnx.checker.check_model(proto)
    return proto


def session(model_bytes: bytes, provider: str, threads: int, onnxruntime):
    """An inference session of the serialised model on ``provider``: ``threads`` intra-op
    threads, sequential execution, every graph optimisation."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=[provider])


def forward(sess):
    """A function (N, ...) input -> float32 output running ``sess``."""
    return lambda x: sess.run(None, {"x": x})[0]


def forwards(model, program: list, gpu_key: str | None, threads: int, onnx, onnxruntime) -> list:
    """``(provider, device key or None, forward)`` per provider to benchmark: the CPU, and CUDA
    on the GPU ``gpu_key`` where the build has it. The graph is built and serialised once."""
    model_bytes = graph(program, model, onnx).SerializeToString()
    made = [(CPU, None, forward(session(model_bytes, CPU, threads, onnxruntime)))]
    if gpu_key is not None and CUDA in onnxruntime.get_available_providers():
        cuda = session(model_bytes, CUDA, threads, onnxruntime)
        # Where CUDA's libraries fail to load, ONNX Runtime warns and runs the session on the CPU.
        if CUDA in cuda.get_providers():
            made.append((CUDA, gpu_key, forward(cuda)))
    return made
