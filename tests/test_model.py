"""Whole networks against the reference forward pass, binary mode against float mode, bad input."""

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl.reference.network import forward


def mlp(first="uint8", features=100):
    layers = [
        ec.BinaryDense(67), ec.BatchNorm(), ec.Sign(),
        ec.BinaryDense(45), ec.BatchNorm(), ec.Sign(),
        ec.BinaryDense(10), ec.BatchNorm(),
    ]
    return ec.Sequential(layers, input_shape=(features,), input_dtype=first)


def cnn(pad_value="zero"):
    layers = [
        ec.BinaryConv2D(17, 3, padding="same"), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(23, 3, padding="same", pad_value=pad_value), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(30, (3, 2), stride=2, padding="valid"), ec.BatchNorm(), ec.Sign(),
        ec.MaxPool2D(2, padding="same"),
        ec.Flatten(),
        ec.BinaryDense(19), ec.BatchNorm(), ec.Sign(),
        ec.Dense(10), ec.Softmax(),
    ]
    return ec.Sequential(layers, input_shape=(13, 11, 3), input_dtype="uint8")


def set_some_gammas_zero(model, rng):
    """Zero gamma is a constant sign (beta's); make sure some channels have it."""
    for layer in model.layers:
        if isinstance(layer, ec.BatchNorm):
            gamma = layer.params()["gamma"].copy()
            gamma[rng.random(gamma.shape) < 0.1] = 0.0
            layer.set_params(gamma=gamma)


def pixels(rng, batch, shape):
    x = rng.integers(0, 256, size=(batch,) + shape, dtype=np.uint8)
    x.flat[:3] = [0, 255, 0]
    return x


def check_against_reference(model, x, mode, exact_until_end=True):
    out = model.predict(x, mode=mode)
    ref = forward(model.layers, x)
    kind = model.output_spec.kind
    if kind in ("int", "pm1"):
        np.testing.assert_array_equal(out, ref.astype(out.dtype))
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * (1 + np.abs(ref).max()))
    return out, ref


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_mlp_matches_reference_and_float_mode(runtime, rng, batch):
    model = mlp().initialize(seed=int(rng.integers(1 << 30)))
    set_some_gammas_zero(model, rng)
    x = pixels(rng, batch, (100,))
    out_b, ref = check_against_reference(model, x, "binary")
    out_f, _ = check_against_reference(model, x, "float")
    np.testing.assert_array_equal(model.predict_classes(x), model.predict_classes(x, mode="float"))
    np.testing.assert_array_equal(model.predict_classes(x), np.argmax(ref, axis=1))
    np.testing.assert_allclose(out_b, out_f, rtol=1e-6, atol=1e-6)


def test_mlp_hidden_bits_exact(runtime, rng):
    """A model that ends in Sign exposes the hidden +-1 values themselves."""
    layers = [ec.BinaryDense(70), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(33), ec.BatchNorm(), ec.Sign()]
    model = ec.Sequential(layers, input_shape=(129,), input_dtype="uint8").initialize(3)
    x = pixels(rng, 5, (129,))
    for mode in ("binary", "float"):
        out, ref = check_against_reference(model, x, mode)
        assert set(np.unique(out)) <= {-1.0, 1.0}


def test_int_output_exact(runtime, rng):
    layers = [ec.BinaryDense(31), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(13)]
    model = ec.Sequential(layers, input_shape=(65,), input_dtype="uint8").initialize(4)
    x = pixels(rng, 3, (65,))
    for mode in ("binary", "float"):
        out, _ = check_against_reference(model, x, mode)
        assert out.dtype == np.int32


def test_float_input_mlp(runtime, rng):
    layers = [ec.Dense(33), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(20), ec.BatchNorm(), ec.Sign(),
              ec.Dense(10), ec.Softmax()]
    model = ec.Sequential(layers, input_shape=(50,)).initialize(5)
    x = rng.standard_normal((9, 50)).astype(np.float32)
    for mode in ("binary", "float"):
        out, _ = check_against_reference(model, x, mode)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pad_value", ["zero", "one"])
@pytest.mark.parametrize("batch", [1, 3])
def test_cnn_matches_reference_and_float_mode(runtime, rng, pad_value, batch):
    model = cnn(pad_value).initialize(seed=int(rng.integers(1 << 30)))
    set_some_gammas_zero(model, rng)
    x = pixels(rng, batch, (13, 11, 3))
    out_b, ref = check_against_reference(model, x, "binary")
    out_f, _ = check_against_reference(model, x, "float")
    np.testing.assert_allclose(out_b, out_f, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.predict_classes(x), model.predict_classes(x, mode="float"))


def test_cnn_hidden_bits_exact(runtime, rng):
    """Conv -> pool -> BN -> sign with negative gammas: the packed AND/OR pooling is exact."""
    layers = [ec.BinaryConv2D(21, 3), ec.BatchNorm(), ec.Sign(),
              ec.BinaryConv2D(37, 3, pad_value="one"), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign(),
              ec.MaxPool2D(3, stride=2, padding="same")]
    model = ec.Sequential(layers, input_shape=(10, 9, 3), input_dtype="uint8").initialize(6)
    gammas = model.layers[5].params()["gamma"]
    assert (gammas < 0).any() and (gammas > 0).any()
    x = pixels(rng, 3, (10, 9, 3))
    for mode in ("binary", "float"):
        check_against_reference(model, x, mode)


def test_fused_dense_threshold_on_cpu_profiles(profiled_runtime, rng, monkeypatch):
    """BinaryDense -> [BatchNorm ->] Sign is one bgemm_threshold launch where the profile has it
    (CPU profiles), bgemm + threshold_pack elsewhere; the uint8 first layer's is one
    bitplane_threshold_avx512 launch on the AVX-512 profile; all match the reference."""
    from collections import defaultdict

    from espresso_cl import registry
    from espresso_cl.ops import launch
    from espresso_cl.plan import Planner

    def kernel(op):  # the kernel this profile launches for op
        return registry.select(op, profiled_runtime.profile).kernel

    layers = [ec.BinaryDense(70), ec.BatchNorm(), ec.Sign(),
              ec.BinaryDense(65), ec.BatchNorm(), ec.Sign(),
              ec.BinaryDense(33), ec.Sign(),
              ec.BinaryDense(10), ec.BatchNorm()]
    model = ec.Sequential(layers, input_shape=(100,), input_dtype="uint8",
                          runtime=profiled_runtime).initialize(9)
    set_some_gammas_zero(model, rng)
    x = pixels(rng, 3, (100,))
    # Count launches: launch() records every kernel's time while TIMING is set.
    monkeypatch.setattr(launch, "TIMING", True)
    monkeypatch.setattr(launch, "kernel_times", defaultdict(list))
    check_against_reference(model, x, "binary")
    counts = {name: len(times) for name, times in launch.kernel_times.items()}
    labels = [label for label, _ in model._compiled("binary").plan.steps]
    names = [layer.name for layer in model.layers]
    fused_labels = [" + ".join(names[3:6]), " + ".join(names[6:8])]
    planner = Planner(profiled_runtime, "binary")
    if planner.fuses_dense_threshold():
        assert all(label in labels for label in fused_labels), labels
        assert counts.get(kernel("bgemm_threshold")) == 2 and counts.get(kernel("bgemm")) == 1, counts
        if planner.fuses_bitplane_threshold():
            # The first (bit-plane) layer's threshold is in its launch too: no threshold_pack.
            assert " + ".join(names[0:3]) in labels, labels
            assert counts.get(kernel("bitplane_conv2d_threshold")) == 1, counts
            assert "threshold_pack" not in counts and kernel("bitplane_conv2d") not in counts, counts
        else:
            assert counts.get("threshold_pack") == 1, counts  # after the first (bit-plane) layer
    else:
        assert not any(label in labels for label in fused_labels), labels
        fusing = {v.kernel for v in registry.VARIANTS if v.fuses_threshold}
        assert not fusing & set(counts) and counts.get("threshold_pack") == 3, counts
    check_against_reference(model, x, "float")


def test_batch_size_chunks_agree(runtime, rng):
    model = mlp().initialize(7)
    x = pixels(rng, 11, (100,))
    np.testing.assert_array_equal(model.predict(x, batch_size=4), model.predict(x))


def test_summary_reports_packed_bytes(runtime):
    model = mlp(features=784)
    model.initialize(0)
    text = model.summary(file=open("/dev/null", "w"))
    first = model.layers[0]
    stored, as_float = first.param_bytes()
    assert as_float == 67 * 784 * 4
    assert stored == 67 * 13 * 2 * 4  # 784 bits -> 13 64-bit words per row
    assert "binary_dense" in text and "(None, 67)" in text


# -- bad input ---------------------------------------------------------------------------


@pytest.fixture
def small_model(runtime):
    return mlp().initialize(1)


def test_wrong_shape(small_model):
    with pytest.raises(ValueError, match="input shape"):
        small_model.predict(np.zeros((2, 99), np.uint8))
    with pytest.raises(ValueError, match="batch axis"):
        small_model.predict(np.zeros((100,), np.uint8))


def test_wrong_dtype(small_model):
    with pytest.raises(TypeError, match="uint8"):
        small_model.predict(np.zeros((2, 100), np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        small_model.predict([[0] * 100])


def test_empty_batch(small_model):
    with pytest.raises(ValueError, match="empty"):
        small_model.predict(np.zeros((0, 100), np.uint8))


def test_nan_input(runtime):
    model = ec.Sequential([ec.Dense(4)], input_shape=(3,)).initialize(0)
    x = np.zeros((2, 3), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(x)


def test_unknown_mode(small_model):
    with pytest.raises(ValueError, match="mode"):
        small_model.predict(np.zeros((1, 100), np.uint8), mode="half")


def test_missing_params(runtime):
    model = mlp()
    with pytest.raises(RuntimeError, match="parameters not set"):
        model.predict(np.zeros((1, 100), np.uint8))


def test_layers_that_do_not_chain():
    with pytest.raises(ec.ShapeError, match="Flatten"):
        ec.Sequential([ec.BinaryConv2D(4, 3), ec.BinaryDense(3)], input_shape=(8, 8, 3), input_dtype="uint8")
    with pytest.raises(ec.ShapeError, match="image"):
        ec.Sequential([ec.BinaryConv2D(4, 3)], input_shape=(8,))
    with pytest.raises(ec.ShapeError, match="does not fit"):
        ec.Sequential([ec.Conv2D(4, 5, padding="valid")], input_shape=(3, 3, 1))
    with pytest.raises(ec.ShapeError, match="accumulators"):
        ec.Sequential([ec.BinaryDense(4), ec.BinaryDense(3)], input_shape=(8,), input_dtype="uint8")


def test_bad_params(small_model):
    layer = small_model.layers[0]
    with pytest.raises(ValueError, match="expected shape"):
        layer.set_params(weight=np.zeros((67, 99)))
    with pytest.raises(ValueError, match="NaN"):
        small_model.layers[1].set_params(gamma=np.full(67, np.nan))
    with pytest.raises(KeyError, match="no parameter"):
        layer.set_params(bias=np.zeros(67))
    with pytest.raises(ValueError, match="negative"):
        small_model.layers[1].set_params(var=-np.ones(67))


def test_stored_params_round_trip(runtime, rng):
    model = cnn().initialize(8)
    copy = cnn()
    copy.load_stored_params(model.params())
    x = pixels(rng, 2, (13, 11, 3))
    np.testing.assert_array_equal(model.predict(x), copy.predict(x))
    stored = model.params()
    name = next(k for k in stored if k.endswith(".weight"))
    stored[name] = stored[name][:-1]
    with pytest.raises(ValueError, match=name):
        copy.load_stored_params(stored)


def test_layer_set_params_after_predict_takes_effect(runtime, rng):
    # Issue 12: a layer handed out by model.layer() and changed after a predict used to leave
    # the compiled plan holding the old weights.
    model = mlp().initialize(seed=int(rng.integers(1 << 30)))
    x = pixels(rng, 5, (100,))
    for mode in ("binary", "float"):
        model.predict(x, mode=mode)
    layer = model.layer("0_binary_dense")
    flipped = -layer.weight_pm1().astype(np.float32)
    layer.set_params(weight=flipped)
    for mode in ("binary", "float"):
        out, ref = check_against_reference(model, x, mode)
        np.testing.assert_array_equal(layer.weight_pm1(), flipped)
    bn = model.layer("7_batch_norm")
    bn.set_params(beta=bn.params()["beta"] + 100.0)
    check_against_reference(model, x, "binary")
