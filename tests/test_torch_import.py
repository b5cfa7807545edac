"""PyTorch state_dicts into espresso_cl models: layouts, bias folding, mismatch errors, parity.

All but the last test use NumPy arrays in PyTorch's layouts, so they run without torch.
"""

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl.reference.conv import conv2d
from espresso_cl.reference.network import forward
from espresso_cl.layers import LAYER_TYPES, Layer
from espresso_cl.torch_import import IMPORTERS, StateDictError, load_state_dict

INPUT_SHAPE = (8, 6, 2)  # NHWC; PyTorch sees (2, 8, 6)


def small_cnn(last_bias=True):
    """Binary conv on pixels -> pool -> BN -> sign -> binary conv -> BN -> sign -> flatten ->
    binary dense -> BN -> sign -> float dense; layer i pairs with PyTorch module i."""
    layers = [
        ec.BinaryConv2D(6, 3, padding="same"), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(5, 3, padding="same"), ec.BatchNorm(), ec.Sign(),
        ec.Flatten(),
        ec.BinaryDense(11), ec.BatchNorm(), ec.Sign(),
        ec.Dense(4, use_bias=last_bias),
    ]
    return ec.Sequential(layers, input_shape=INPUT_SHAPE, input_dtype="uint8")


def bn_tensors(rng, prefix, c, scale=5.0):
    """A BatchNorm's tensors, float32 as PyTorch keeps them (so float64 math on them is exact)."""
    return {f"{prefix}.weight": rng.standard_normal(c).astype(np.float32),
            f"{prefix}.bias": rng.standard_normal(c).astype(np.float32),
            f"{prefix}.running_mean": (rng.standard_normal(c) * scale).astype(np.float32),
            f"{prefix}.running_var": (rng.uniform(1, 4, c) * scale ** 2).astype(np.float32),
            f"{prefix}.num_batches_tracked": np.array(7)}


def torch_layout(rng, conv_bias=False):
    """small_cnn's parameters as NumPy arrays in PyTorch's layouts and nn.Sequential's names."""
    sd = {"0.weight": rng.standard_normal((6, 2, 3, 3))}
    if conv_bias:
        sd["0.bias"] = rng.standard_normal(6) * 100
    sd.update(bn_tensors(rng, "2", 6, scale=500))
    sd["4.weight"] = rng.standard_normal((5, 6, 3, 3))
    sd.update(bn_tensors(rng, "5", 5))
    sd["8.weight"] = rng.standard_normal((11, 5 * 4 * 3))
    sd.update(bn_tensors(rng, "9", 11))
    sd["11.weight"] = rng.standard_normal((4, 11))
    sd["11.bias"] = rng.standard_normal(4)
    return sd


def pm1(w):
    return np.where(w >= 0, 1, -1)


def torch_bn(x, sd, prefix, axis=-1):
    """PyTorch eval-mode batch-norm over ``axis`` (1 for NCHW), in float64."""
    shape = [1] * x.ndim
    shape[axis] = -1
    p = {k: sd[f"{prefix}.{k}"].astype(np.float64).reshape(shape) for k in ("weight", "bias", "running_mean", "running_var")}
    return (x - p["running_mean"]) / np.sqrt(p["running_var"] + 1e-5) * p["weight"] + p["bias"]


def test_conv_weights_follow_pytorch_layout(rng):
    sd = torch_layout(rng)
    model = load_state_dict(small_cnn(), sd)
    ours = model.layers[4].weight_pm1()
    np.testing.assert_array_equal(ours, pm1(sd["4.weight"]).transpose(0, 2, 3, 1))
    # PyTorch's convolution: out[o, y, x] = sum over c, i, j of w[o, c, i, j] * in[c, y + i, x + j].
    x = rng.integers(-1, 2, (2, 5, 4, 6))
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # n, y, x, c, i, j
    expected = np.einsum("ocij,nyxcij->nyxo", pm1(sd["4.weight"]), patches)
    np.testing.assert_array_equal(conv2d(x, ours, 1, "valid", 0), expected)


def test_flatten_permutes_features_to_nhwc(rng):
    """PyTorch flattens (C, H, W): the batch-norm and the Linear after a Flatten see NCHW features."""
    model = ec.Sequential([ec.Flatten(), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(3), ec.BatchNorm()],
                          input_shape=(4, 3, 5), input_dtype="float32")
    sd = {**bn_tensors(rng, "1", 60, scale=1.0), "3.weight": rng.standard_normal((3, 60)),
          **bn_tensors(rng, "4", 3)}
    load_state_dict(model, sd)
    x = rng.standard_normal((7, 4, 3, 5))
    flat = x.transpose(0, 3, 1, 2).reshape(7, -1)
    expected = torch_bn(pm1(torch_bn(flat, sd, "1")) @ pm1(sd["3.weight"]).T, sd, "4")
    np.testing.assert_allclose(forward(model.layers, x), expected, rtol=1e-12, atol=1e-9)


def test_binary_bias_folds_into_next_batch_norm(rng):
    model = ec.Sequential([ec.BinaryDense(5), ec.BatchNorm()], input_shape=(30,), input_dtype="uint8")
    sd = {"0.weight": rng.standard_normal((5, 30)), "0.bias": rng.standard_normal(5) * 300,
          **bn_tensors(rng, "1", 5, scale=300)}
    load_state_dict(model, sd)
    x = rng.integers(0, 256, (9, 30), dtype=np.uint8)
    expected = torch_bn(x @ pm1(sd["0.weight"]).T + sd["0.bias"], sd, "1")
    # The folded mean is stored in float32: one rounding.
    np.testing.assert_allclose(forward(model.layers, x), expected, rtol=1e-6, atol=1e-6)


def test_affine_false_batch_norm(rng):
    model = ec.Sequential([ec.BinaryDense(5), ec.BatchNorm()], input_shape=(30,), input_dtype="uint8")
    bn = bn_tensors(rng, "1", 5)
    sd = {"0.weight": rng.standard_normal((5, 30)), "1.running_mean": bn["1.running_mean"],
          "1.running_var": bn["1.running_var"]}
    load_state_dict(model, sd)
    p = model.layers[1].params()
    np.testing.assert_array_equal(p["gamma"], 1)
    np.testing.assert_array_equal(p["beta"], 0)


@pytest.mark.parametrize("conv_bias", [False, True])
def test_whole_network_imports_and_runs(runtime, rng, conv_bias):
    model = load_state_dict(small_cnn(), torch_layout(rng, conv_bias))
    x = rng.integers(0, 256, (5,) + INPUT_SHAPE, dtype=np.uint8)
    np.testing.assert_array_equal(model.predict_classes(x), forward(model.layers, x).argmax(1))


def expect_error(model, sd, *fragments):
    with pytest.raises(StateDictError) as err:
        load_state_dict(model, sd)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_wrong_shape_names_layer_and_tensor(rng):
    sd = torch_layout(rng)
    sd["8.weight"] = sd["8.weight"][:, :-1]
    expect_error(small_cnn(), sd, "'8_binary_dense'", "'8.weight'", "(11, 59)", "(11, 60)")
    sd = torch_layout(rng)
    sd["4.weight"] = sd["4.weight"].transpose(0, 2, 3, 1)  # already NHWC: PyTorch's is NCHW
    expect_error(small_cnn(), sd, "'4_binary_conv2d'", "'4.weight'", "in_channels")
    sd = torch_layout(rng)
    sd["5.running_var"] = sd["5.running_var"][:3]
    expect_error(small_cnn(), sd, "'5_batch_norm'", "'5.running_var'")


def test_missing_and_extra_modules(rng):
    sd = {k: v for k, v in torch_layout(rng).items() if not k.startswith("11.")}
    expect_error(small_cnn(), sd, "'11_dense'", "no Linear module left")
    sd = {**torch_layout(rng), "12.weight": np.ones((2, 4))}
    expect_error(small_cnn(), sd, "no layer takes", "'12.weight'")


def test_module_of_the_wrong_kind(rng):
    sd = {k: v for k, v in torch_layout(rng).items() if k != "8.weight"}
    expect_error(small_cnn(), sd, "'8_binary_dense'", "Linear", "'9.running_mean'", "unexpected")
    sd = torch_layout(rng)
    del sd["9.running_var"]
    expect_error(small_cnn(), sd, "'9_batch_norm'", "missing ['9.running_var']")


def test_bias_rules(rng):
    model = ec.Sequential([ec.BinaryDense(5), ec.Sign(), ec.BinaryDense(2)], input_shape=(30,),
                          input_dtype="uint8")
    sd = {"0.weight": rng.standard_normal((5, 30)), "0.bias": np.ones(5),
          "2.weight": rng.standard_normal((2, 5))}
    expect_error(model, sd, "'0_binary_dense'", "'0.bias'", "BatchNorm must follow", "'1_sign'")
    model = ec.Sequential([ec.BinaryDense(5)], input_shape=(30,), input_dtype="uint8")
    expect_error(model, {"0.weight": np.ones((5, 30)), "0.bias": np.ones(5)}, "'0.bias'", "no BatchNorm")
    sd = torch_layout(rng)
    expect_error(small_cnn(last_bias=False), sd, "'11_dense'", "'11.bias'", "use_bias=True")
    del sd["11.bias"]
    expect_error(small_cnn(), sd, "'11_dense'", "use_bias=False")


def test_bad_values(rng):
    sd = torch_layout(rng)
    sd["9.running_var"][2] = -1.0
    expect_error(small_cnn(), sd, "'9_batch_norm'", "'9.running_var'", "negative")
    sd = torch_layout(rng)
    sd["11.weight"][0, 0] = np.nan
    expect_error(small_cnn(), sd, "'11_dense'", "'11.weight'", "NaN")
    sd = torch_layout(rng)
    sd["0.weight"] = np.ones((6, 2, 3, 3), np.int64)
    expect_error(small_cnn(), sd, "'0_binary_conv2d'", "'0.weight'", "floating point")


def test_importers_cover_every_layer_type_with_parameters():
    """One table says what each layer type takes from a state_dict; none is left out."""
    with_params = {cls for cls in LAYER_TYPES.values() if cls.param_shapes is not Layer.param_shapes}
    assert with_params <= set(IMPORTERS), with_params - set(IMPORTERS)


def test_subclass_imports_as_its_base_and_unknown_parameters_fail(rng):
    class WideDense(ec.Dense):
        pass

    class Scale(Layer):
        type_name = "scale"

        def _infer(self, spec):
            return spec

        def param_shapes(self):
            return {"scale": self.input_spec.shape}

    model = ec.Sequential([WideDense(3)], input_shape=(4,))
    sd = {"0.weight": rng.standard_normal((3, 4)), "0.bias": rng.standard_normal(3)}
    load_state_dict(model, sd)
    np.testing.assert_array_equal(model.layers[0].params()["bias"], sd["0.bias"].astype(np.float32))
    expect_error(ec.Sequential([Scale()], input_shape=(4,)), {}, "'0_scale'", "no PyTorch counterpart")


def test_matches_pytorch(runtime, rng):
    """The same network in PyTorch (eval mode) and espresso_cl: same logits, same classes."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Sign(nn.Module):
        def forward(self, x):
            return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(6), Sign(),
        nn.Conv2d(6, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), Sign(),
        nn.Flatten(),
        nn.Linear(60, 11, bias=False), nn.BatchNorm1d(11), Sign(),
        nn.Linear(11, 4),
    ).double()
    torch.manual_seed(int(rng.integers(1 << 30)))
    x = rng.integers(0, 256, (300,) + INPUT_SHAPE, dtype=np.uint8)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64))
    with torch.no_grad():
        for i in (0, 4, 8):  # binary layers: PyTorch computes with the +-1 weights we keep
            net[i].weight.copy_(torch.where(net[i].weight >= 0, 1.0, -1.0))
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.momentum = 1.0  # running statistics of one batch: centred thresholds
        net.train()
        net(x_torch)
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.5, 0.5)
        net.eval()
        logits = net(x_torch).numpy()
    model = load_state_dict(small_cnn(), net.state_dict())
    np.testing.assert_allclose(forward(model.layers, x), logits, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(model.predict_classes(x), logits.argmax(1))
    np.testing.assert_array_equal(model.predict_classes(x, mode="float"), logits.argmax(1))
