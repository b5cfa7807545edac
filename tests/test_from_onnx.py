"""from_onnx: ONNX exports of PyTorch networks imported with 0 disagreements, or refused with a
reason (issue 13). Networks are exported with PyTorch's current exporter (``dynamo=True``,
opset 18) and its legacy one (``dynamo=False``, opset 17), once per module."""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402
from torch_nets import (NETWORKS, BinaryConv2d, BinaryLinear, Sign, SignConv2d, SignSTE,  # noqa: E402
                        assert_same_function, random_input)

import espresso_cl as ec  # noqa: E402
from espresso_cl.import_onnx import from_onnx  # noqa: E402
from espresso_cl.importing import ImportMismatchError, SignSemanticsWarning, UnsupportedModelError  # noqa: E402

EXPORTERS = ("dynamo", "legacy")


def export(net: nn.Module, shape: tuple, path, exporter: str = "dynamo") -> str:
    """``net`` as an ONNX file, exported from a batch of 2 (which the exporters bake in)."""
    x = random_input(shape, False, 2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation, torchvision's absence
        torch.onnx.export(net, (x,), str(path), dynamo=exporter == "dynamo",
                          opset_version=18 if exporter == "dynamo" else 17, verbose=False)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (module, input shape, dtype, {exporter: path}) for every network of torch_nets."""
    folder = tmp_path_factory.mktemp("onnx")
    found = {}
    for name, build in NETWORKS.items():
        net, shape, dtype = build()
        found[name] = (net, shape, dtype, {e: export(net, shape, folder / f"{name}-{e}.onnx", e) for e in EXPORTERS})
    return found


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_import_with_no_disagreement(runtime, exported, name, exporter):
    net, shape, dtype, paths = exported[name]
    example = random_input(shape, dtype == "uint8", 64, 5).numpy()
    model = from_onnx(paths[exporter], dtype, example=example, runtime=runtime)
    assert model.input_shape == ((shape[1], shape[2], shape[0]) if len(shape) == 3 else shape)
    assert_same_function(net, model, random_input(shape, dtype == "uint8", 200, 6), dtype)


@pytest.mark.parametrize("name", ["mlp", "pool-cnn-28"])
def test_networks_agree_on_real_mnist(runtime, exported, name):
    data = pytest.importorskip("espresso_cl.data")
    try:
        images, _ = data.load_mnist("test")
    except (data.DataUnavailable, FileNotFoundError, ImportError) as exc:
        pytest.skip(f"MNIST not installed: {exc}")
    net, shape, dtype, paths = exported[name]
    x = torch.from_numpy(images[:200].astype(np.float32)).permute(0, 3, 1, 2).reshape((200,) + shape)
    model = from_onnx(paths["dynamo"], dtype, example=x.numpy(), runtime=runtime)
    assert_same_function(net, model, x, dtype)


def test_fused_batch_norm_is_split_and_pytorch_padding_kept(runtime, exported):
    # The dynamo exporter folds each batch-norm into the binary conv before it (weights +-s per
    # channel); the import splits it back into +-1 weights and a batch-norm with eps 0.
    net, _, _, paths = exported["strided-cnn-even"]
    weights = onnx.load(paths["dynamo"]).graph.initializer
    assert any(t.dims[0] == 16 and len(np.unique(np.abs(numpy_helper.to_array(t)))) == 16 for t in weights)
    model = from_onnx(paths["dynamo"], "uint8", runtime=runtime)
    conv, norm = model.layers[:2]
    assert isinstance(conv, ec.BinaryConv2D) and conv.stride == 2 and conv.padding == ((1, 1), (1, 1))
    assert isinstance(norm, ec.BatchNorm) and norm.eps == 0.0
    gamma = norm.params()["gamma"]
    scale = net.b1.weight.detach().numpy() / np.sqrt(net.b1.running_var.numpy() + net.b1.eps)
    np.testing.assert_allclose(gamma, np.abs(scale), rtol=1e-6)


def test_layouts_paddings_and_nhwc_flatten(runtime, exported):
    *_, paths = exported["padded-cnn-float-input"]
    for exporter in EXPORTERS:
        layers = from_onnx(paths[exporter], "float32", runtime=runtime).layers
        assert [type(layer).__name__ for layer in layers[:4]] == ["Conv2D", "Sign", "BinaryConv2D", "MaxPool2D"]
        assert layers[0].padding == "same" and layers[2].padding == "valid"
        assert layers[3].padding == ((1, 1), (1, 1)) and layers[3].stride == 2


# -- a hand-written graph: auto_pad, Gemm with transB 0, MatMul + Add, Softmax --------------------
def _handmade_graph(rng) -> "onnx.ModelProto":
    """(N, 2, 7, 6) -> Conv +-1 (stride 2, SAME_LOWER) -> sign -> MaxPool (2, stride 1,
    SAME_UPPER) -> Transpose to NHWC -> Flatten -> Gemm (transB 0, +-s per output: a fused
    batch-norm) -> sign -> MatMul + Add -> Softmax."""
    conv_w = np.where(rng.random((4, 2, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
    gemm_w = (np.where(rng.random((48, 5)) < 0.5, -1.0, 1.0) * rng.uniform(0.5, 2, 5)).astype(np.float32)
    values = {"conv_w": conv_w, "conv_b": rng.normal(0, 2, 4).astype(np.float32), "zero": np.float32(0),
              "one": np.float32(1), "minus": np.float32(-1), "gemm_w": gemm_w,
              "gemm_b": rng.normal(0, 3, 5).astype(np.float32), "mm_w": rng.normal(0, 1, (5, 3)).astype(np.float32),
              "mm_b": rng.normal(0, 1, 3).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], strides=[2, 2], auto_pad="SAME_LOWER"),
        helper.make_node("GreaterOrEqual", ["c", "zero"], ["ge"]),
        helper.make_node("Where", ["ge", "one", "minus"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["t"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["g"], transB=0),
        helper.make_node("Sign", ["g"], ["s2"]),
        helper.make_node("MatMul", ["s2", "mm_w"], ["m"]),
        helper.make_node("Add", ["m", "mm_b"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=-1),
    ]
    for node in nodes:
        node.name = node.output[0]
    graph = helper.make_graph(nodes, "handmade",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_handmade_graph_with_auto_pad_and_transposed_weights(runtime):
    rng = np.random.default_rng(3)
    proto = _handmade_graph(rng)
    example = rng.normal(0, 2, (300, 2, 7, 6)).astype(np.float32)
    with pytest.warns(SignSemanticsWarning, match="Sign node 's2'.* to 0"):
        model = from_onnx(proto, example=example, runtime=runtime)
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["BinaryConv2D", "BatchNorm", "Sign", "MaxPool2D", "Flatten", "BinaryDense", "BatchNorm",
                     "Sign", "Dense", "Softmax"]
    assert model.layers[0].padding == ((1, 1), (1, 0)) and model.layers[3].padding == "same"
    session = importlib.import_module("onnxruntime").InferenceSession(proto.SerializeToString(),
                                                                      providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"x": example})[0]
    np.testing.assert_allclose(model.predict(example.transpose(0, 2, 3, 1).copy()), theirs, rtol=1e-4, atol=1e-6)


# -- refusals ---------------------------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = BinaryConv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.c2, self.b2 = BinaryConv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        a = SignSTE.apply(self.b1(self.c1(x)))
        return self.fc(torch.flatten(a + SignSTE.apply(self.b2(self.c2(a))), 1))


class ScaledSign(nn.Module):
    def forward(self, x):
        return 2 * SignSTE.apply(x)


class TorchSign(nn.Module):
    def forward(self, x):
        return torch.sign(x)


def _zero_weight():
    conv = SignConv2d(1, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[1, 0, 1, 1] = 0.0
    return nn.Sequential(conv, nn.BatchNorm2d(4), Sign(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _conv_then(*modules, features=4 * 6 * 6):
    return nn.Sequential(BinaryConv2d(1, 4, 3, padding=1, bias=False), *modules, nn.Flatten(), nn.Linear(features, 3))


REFUSED = {
    "relu": (lambda: _conv_then(nn.BatchNorm2d(4), nn.ReLU()),
             r"Relu node '.+': an activation that is not a sign"),
    "hardtanh": (lambda: _conv_then(nn.BatchNorm2d(4), nn.Hardtanh()),
                 r"Clip node '.+': an activation that is not a sign"),
    "scaled-sign": (lambda: _conv_then(nn.BatchNorm2d(4), ScaledSign()),
                    r"GreaterOrEqual node .* -> Mul node '.+': an activation that is not a sign \(-7 -> -2.0"),
    "residual": (Residual, r"Add node '.+': reads .* branches and residual connections are not supported"),
    "average-pool": (lambda: _conv_then(nn.AvgPool2d(2), nn.BatchNorm2d(4), Sign(), features=36),
                     r"AveragePool node '.+': espresso_cl has no counterpart of AveragePool"),
    "grouped-conv": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Sign(),
                                           nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Flatten(), nn.Linear(144, 3)),
                     r"Conv node '.+': group=2"),
    "dilated-conv": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=2, dilation=2), Sign(), nn.Flatten(),
                                           nn.Linear(144, 3)), r"Conv node '.+': dilations \[2, 2\]"),
    "sign-zero-weight": (_zero_weight, r"Conv node '.+': weight '.+' .* 1 of its entries are exactly 0 \(torch.sign"),
    "non-square-stride": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=(2, 1), padding=1), Sign(), nn.Flatten(),
                                                nn.Linear(72, 3)), r"Conv node '.+': strides \[2, 1\]"),
    "ceil-mode-pool": (lambda: _conv_then(nn.MaxPool2d(2, ceil_mode=True), nn.BatchNorm2d(4), Sign(), features=36),
                       r"MaxPool node '.+': ceil_mode=1"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_name_the_node_and_the_reason(tmp_path, case):
    build, message = REFUSED[case]
    path = export(build().eval(), (1, 6, 6), tmp_path / "net.onnx")
    with pytest.raises(UnsupportedModelError, match=message):
        from_onnx(path, "uint8")


def test_sign_of_a_zero_weight_is_refused_in_the_legacy_export_too(tmp_path):
    path = export(_zero_weight().eval(), (1, 6, 6), tmp_path / "net.onnx", "legacy")
    with pytest.raises(UnsupportedModelError, match=r"Conv node '.+': weight '.*Sign.*' .* exactly 0"):
        from_onnx(path, "uint8")


def test_old_opsets_are_refused(exported):
    proto = onnx.load(exported["mlp"][3]["legacy"])
    proto.opset_import[0].version = 12
    with pytest.raises(UnsupportedModelError, match="opset 12; from_onnx reads opset 13 and newer"):
        from_onnx(proto, "uint8")


# -- sign(0) semantics and the example check ---------------------------------------------------------
def _torch_sign_net():
    """A binary dense whose batch-norm output is exactly 0 for an input of zeros, then
    torch.sign (sign(0) = 0, espresso_cl's +1), then a head that tells 0 from +1 apart."""
    net = nn.Sequential(BinaryLinear(4, 4, bias=False), nn.BatchNorm1d(4, affine=False), TorchSign(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].running_mean.zero_()
        net[1].running_var.fill_(1.0)
        net[3].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]]))
        net[3].bias.copy_(torch.tensor([0.0, 1.0]))
    return net.eval()


def test_torch_sign_warns_and_counts_zero_ties_apart(runtime, tmp_path):
    net = _torch_sign_net()
    path = export(net, (4,), tmp_path / "net.onnx")
    example = np.concatenate([np.zeros((3, 4), np.float32), random_input((4,), False, 61, 2).numpy()])
    with pytest.warns(SignSemanticsWarning) as caught:
        model = from_onnx(path, example=example, runtime=runtime)
    messages = [str(w.message) for w in caught]
    assert any("Sign node" in m and "maps an input of exactly 0 to 0" for m in messages)
    assert any("3 of 64 samples disagree on the class (3 of them at an exact sign(0) tie)" in m for m in messages)
    assert_same_function(net, model, random_input((4,), False, 200, 3), "float32")


def test_mismatch_raises_unless_allowed(runtime, exported, monkeypatch):
    # The import is exact, so a mismatch is made by corrupting what onnxruntime returns.
    module = importlib.import_module("espresso_cl.import_onnx")
    real = module._onnx_outputs

    def negated(graph, x):
        out, tied = real(graph, x)
        return -out, tied

    monkeypatch.setattr(module, "_onnx_outputs", negated)
    _, shape, dtype, paths = exported["pool-cnn-28"]
    example = random_input(shape, True, 16, 8).numpy()
    with pytest.raises(ImportMismatchError, match="of 16 samples disagree"):
        from_onnx(paths["dynamo"], dtype, example=example, runtime=runtime)
    with pytest.warns(SignSemanticsWarning, match="of 16 samples disagree"):
        model = from_onnx(paths["dynamo"], dtype, example=example, allow_mismatch=True, runtime=runtime)
    assert isinstance(model, ec.Sequential)


def test_uint8_example_must_hold_pixels(exported):
    _, shape, dtype, paths = exported["pool-cnn-28"]
    with pytest.raises(ValueError, match="integers 0..255"):
        from_onnx(paths["dynamo"], dtype, example=random_input(shape, False, 4, 1).numpy())


def test_without_onnx_the_error_names_the_extra_and_torch_is_never_imported():
    code = ("import sys\n"
            "class NoOnnx:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('onnx', 'onnxruntime'):\n"
            "            raise ImportError('no onnx here')\n"
            "sys.meta_path.insert(0, NoOnnx())\n"
            "from espresso_cl.import_onnx import from_onnx\n"
            "try:\n"
            "    from_onnx('network.onnx')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert "pip install 'espresso_cl[onnx]'" in done.stdout
