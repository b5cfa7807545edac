"""from_torch: PyTorch modules imported with 0 disagreements, or refused with a reason (issue 13)."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch_nets import (NETWORKS, BinaryConv2d, BinaryLinear, Sign,  # noqa: E402
                        assert_same_function, nhwc, random_input)

import espresso_cl as ec  # noqa: E402
from espresso_cl import io  # noqa: E402
from espresso_cl.import_torch import from_torch  # noqa: E402
from espresso_cl.importing import (Agreement, ImportMismatchError, SignSemanticsWarning,  # noqa: E402
                                   UnsupportedModelError, agreement, check_agreement)
from espresso_cl.torch_import import _nhwc_order  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_import_with_no_disagreement(runtime, name):
    net, shape, dtype = NETWORKS[name]()
    example = random_input(shape, dtype == "uint8", 64, 5)
    model = from_torch(net, shape, dtype, example=example, runtime=runtime)
    assert model.input_shape == ((shape[1], shape[2], shape[0]) if len(shape) == 3 else shape)
    assert_same_function(net, model, random_input(shape, dtype == "uint8", 200, 6), dtype)


@pytest.mark.parametrize("name", ["mlp", "pool-cnn-28"])
def test_networks_agree_on_real_mnist(runtime, name):
    data = pytest.importorskip("espresso_cl.data")
    try:
        images, _ = data.load_mnist("test")
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"MNIST not installed: {exc}")
    net, shape, dtype = NETWORKS[name]()
    x = torch.from_numpy(images[:500].astype(np.float32)).permute(0, 3, 1, 2).reshape((500,) + shape)
    model = from_torch(net, shape, dtype, runtime=runtime)
    assert_same_function(net, model, x, dtype)


def test_pytorch_padding_is_kept_exactly(runtime):
    # Issue 13: with TensorFlow's 'same' a stride-2 conv on an even size pads 0 on top where
    # PyTorch pads 1, and 52 of 64 classes disagreed.
    net, shape, dtype = NETWORKS["strided-cnn-even"]()
    model = from_torch(net, shape, dtype, runtime=runtime)
    assert model.layers[0].padding == ((1, 1), (1, 1)) and model.layers[0].stride == 2
    by_hand = ec.Sequential([ec.BinaryConv2D(16, 3, 2, "same"), ec.BatchNorm(), ec.Sign(),
                             ec.BinaryConv2D(24, 3, 2, "same"), ec.BatchNorm(), ec.Sign(), ec.Flatten(),
                             ec.Dense(10)], (16, 16, 1), "uint8", runtime=runtime)
    from espresso_cl.torch_import import load_state_dict
    with pytest.warns(UserWarning, match="'same' with stride 2 .* padding=p"):
        load_state_dict(by_hand, net.state_dict())
    x = random_input(shape, True, 64, 7)
    assert (by_hand.predict_classes(nhwc(x, dtype)) != model.predict_classes(nhwc(x, dtype))).any()


# -- refusals ---------------------------------------------------------------------------------


class Chain(nn.Module):
    """conv -> batch-norm -> activation -> flatten -> linear, the activation and conv chosen."""

    def __init__(self, activation, conv=None, pool=None):
        super().__init__()
        self.conv = conv or BinaryConv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(self.conv.out_channels)
        self.activation = activation
        self.pool = pool or nn.Identity()
        with torch.no_grad():
            features = self.features(torch.zeros(1, self.conv.in_channels, 4, 4)).shape[1]
        self.fc = nn.Linear(features, 3)

    def features(self, x):
        return torch.flatten(self.pool(self.activation(self.bn(self.conv(x)))), 1)

    def forward(self, x):
        return self.fc(self.features(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = BinaryConv2d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.flatten(self.a(x) + x, 1)


class ScaledSign(nn.Module):
    def forward(self, x):
        return 2 * torch.sign(x)


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


class ZeroWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc.weight[0, 1] = 0.0

    def forward(self, x):
        return F.linear(x, torch.sign(self.fc.weight))


REFUSALS = {
    "relu": (lambda: Chain(nn.ReLU()), (1, 4, 4), "not a sign"),
    "hardtanh": (lambda: Chain(nn.Hardtanh()), (1, 4, 4), r"module 'activation' \(Hardtanh\).*not a sign"),
    "scaled sign": (lambda: Chain(ScaledSign()), (1, 4, 4), "not a sign"),
    "average pooling": (lambda: Chain(Sign(), pool=nn.AvgPool2d(1)), (1, 4, 4), "no counterpart of AvgPool2d"),
    "groups": (lambda: Chain(Sign(), conv=nn.Conv2d(2, 4, 3, padding=1, groups=2)), (2, 4, 4), "groups=2"),
    "dilation": (lambda: Chain(Sign(), conv=nn.Conv2d(1, 4, 3, padding=2, dilation=2)), (1, 4, 4), "dilation"),
    "stride": (lambda: Chain(Sign(), conv=nn.Conv2d(1, 4, 3, stride=(1, 2), padding=1)), (1, 4, 4),
               r"stride \(1, 2\) differs"),
    "padding mode": (lambda: Chain(Sign(), conv=nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")),
                     (1, 4, 4), "padding_mode 'reflect'"),
    "ceil mode": (lambda: Chain(Sign(), pool=nn.MaxPool2d(3, 2, ceil_mode=True)), (1, 4, 4), "ceil_mode"),
    "residual": (Residual, (1, 4, 4), "residual"),
    "two inputs": (TwoInputs, (4,), "takes 2 inputs"),
    "torch.sign of a zero weight": (ZeroWeight, (4,), "1 entries of exactly 0"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_what_cannot_be_mapped_exactly_is_refused_with_a_reason(name):
    build, shape, message = REFUSALS[name]
    with pytest.raises(UnsupportedModelError, match=message):
        from_torch(build().eval(), shape)


def test_training_mode_is_refused():
    net, shape, dtype = NETWORKS["mlp"]()
    with pytest.raises(UnsupportedModelError, match="module.eval"):
        from_torch(net.train(), shape, dtype)


# -- sign(0) and the example check ---------------------------------------------------------------


class IntegerSign(nn.Module):
    """sign straight on integer accumulators: exact zeros are common, so sign(0) matters."""

    def __init__(self, zero_to):
        super().__init__()
        self.fc = BinaryLinear(6, 5, bias=False)
        self.out = nn.Linear(5, 3)
        self.zero_to = zero_to

    def forward(self, x):
        h = self.fc(x)
        h = torch.sign(h) if self.zero_to == 0 else torch.where(h > 0, 1.0, -1.0)
        return self.out(h)


@pytest.mark.parametrize("zero_to", [0, -1])
def test_a_different_sign_of_zero_is_reported_and_its_ties_counted_apart(runtime, zero_to):
    torch.manual_seed(0)
    net = IntegerSign(zero_to).eval()
    x = torch.randint(0, 2, (300, 6)).float()  # 0/1 pixels: accumulators of 6 terms, often 0
    with pytest.warns(SignSemanticsWarning, match=f"exactly 0 to {zero_to}"):
        model = from_torch(net, (6,), "uint8", example=x, runtime=runtime)
    with torch.no_grad():
        theirs = net(x).numpy()
    ours = model.predict(x.numpy().astype(np.uint8))
    differs = (ours.argmax(1) != theirs.argmax(1)).sum()
    assert differs > 0  # espresso_cl's sign(0) is +1: the ties do differ, and were let through


def test_disagreements_beyond_ties_raise_unless_allowed():
    result = agreement(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
                       np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]), tied=np.array([True, False, False]))
    assert result == Agreement(samples=3, disagreements=2, ties=1, max_abs_difference=1.0)
    with pytest.raises(ImportMismatchError, match="2 of 3 samples disagree .*1 of them at an exact sign"):
        check_agreement(result, allow_mismatch=False)
    with pytest.warns(SignSemanticsWarning):
        check_agreement(result, allow_mismatch=True)
    only_ties = agreement(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), tied=np.array([True]))
    with pytest.warns(SignSemanticsWarning):
        check_agreement(only_ties, allow_mismatch=False)


def test_the_example_check_catches_a_wrong_import(runtime, monkeypatch):
    # A conv imported with TensorFlow's 'same' (what a hand-built model did) must not pass.
    from espresso_cl import import_torch as module

    monkeypatch.setattr(module, "_padding", lambda padding, kernel, stride, where: "same")
    net, shape, dtype = NETWORKS["strided-cnn-even"]()
    with pytest.raises(ImportMismatchError, match="samples disagree"):
        from_torch(net, shape, dtype, example=random_input(shape, True, 64, 8), runtime=runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_torch(net, shape, dtype, example=random_input(shape, True, 64, 8), allow_mismatch=True,
                   runtime=runtime)


# -- the shipped MNIST models --------------------------------------------------------------------


def training_script():
    spec = importlib.util.spec_from_file_location("train_mnist", REPO / "training" / "train_mnist.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def torch_twin(net: nn.Sequential, model) -> nn.Sequential:
    """``net`` (the training script's modules) holding the shipped model's parameters."""
    with_params = [m for m in net if any(True for _ in m.parameters(recurse=False))]
    layers = [l for l in model.layers if l.param_shapes()]
    assert len(with_params) == len(layers)
    order = None
    with torch.no_grad():
        for module, layer in zip(with_params, layers):
            p = layer.params()
            if isinstance(layer, ec.BatchNorm):
                for theirs, ours in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                                     ("running_var", "var")):
                    getattr(module, theirs).copy_(torch.from_numpy(p[ours]))
                continue
            weight = layer.weight_pm1().astype(np.float32) if hasattr(layer, "weight_pm1") else p["weight"]
            if weight.ndim == 4:
                weight = weight.transpose(0, 3, 1, 2)
            elif order is None and isinstance(layer.input_spec.shape, tuple) and layer.name != model.layers[0].name:
                flatten = next((l for l in model.layers if isinstance(l, ec.Flatten)), None)
                if flatten is not None and model.layers.index(flatten) < model.layers.index(layer):
                    order = _nhwc_order(flatten.input_spec.shape)
                    nchw = np.empty_like(weight)
                    nchw[:, order] = weight
                    weight = nchw
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            if "bias" in p:
                module.bias.copy_(torch.from_numpy(p["bias"]))
    return net.eval()


@pytest.mark.parametrize("name", io.SHIPPED_MODELS)
def test_shipped_models_reimport_byte_identical(tmp_path, name):
    script = training_script()
    path = io.shipped_model(name)
    shipped = io.load(path)
    arch = name.removeprefix("mnist_")
    net = script.mlp(shipped.layers[0].units) if arch == "mlp" else script.cnn()
    model = from_torch(torch_twin(net, shipped), script.INPUT_SHAPES[arch], "uint8")
    out = tmp_path / f"{name}.npz"
    io.save(model, out, metadata=io.read_header(path)["metadata"])
    assert out.read_bytes() == path.read_bytes()
