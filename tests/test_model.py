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


def test_flatten_before_the_first_binary_layer_keeps_bit_planes(runtime, rng):
    """uint8 images flattened first (a Keras MLP, an LCE import) reach the binary dense layer
    by bit planes."""
    model = ec.Sequential([ec.Flatten(), ec.BinaryDense(24), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(5)],
                          input_shape=(7, 5, 3), input_dtype="uint8").initialize(seed=3)
    x = pixels(rng, 9, (7, 5, 3))
    check_against_reference(model, x, "binary")
    check_against_reference(model, x, "float")


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


def pytorch_padded_cnn(pad_value="zero"):
    """PyTorch's paddings: symmetric stride-2 padding=1 on even and odd sizes, padding=2 and 0,
    a padded max-pool, lopsided amounts."""
    layers = [
        ec.BinaryConv2D(9, 3, stride=2, padding=1), ec.BatchNorm(), ec.Sign(),          # 14x12 -> 7x6
        ec.BinaryConv2D(12, 3, stride=2, padding=1, pad_value=pad_value), ec.BatchNorm(), ec.Sign(),  # -> 4x3
        ec.BinaryConv2D(16, 3, padding=2), ec.MaxPool2D(3, stride=2, padding=1),         # 6x5 -> 3x3
        ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(10, (2, 3), padding=((1, 0), (2, 1))), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(8, 2, padding=0), ec.Flatten(), ec.BatchNorm(), ec.Sign(), ec.Dense(5),
    ]
    return ec.Sequential(layers, input_shape=(14, 12, 3), input_dtype="uint8")


@pytest.mark.parametrize("pad_value", ["zero", "one"])
def test_explicit_padding_matches_reference_on_every_profile(profiled_runtime, rng, pad_value):
    model = pytorch_padded_cnn(pad_value).initialize(seed=int(rng.integers(1 << 30)))
    model._runtime = profiled_runtime
    set_some_gammas_zero(model, rng)
    x = pixels(rng, 3, (14, 12, 3))
    out_b, ref = check_against_reference(model, x, "binary")
    out_f, _ = check_against_reference(model, x, "float")
    np.testing.assert_allclose(out_b, out_f, rtol=1e-6, atol=1e-6)


def test_a_pool_window_wholly_in_padding_is_refused():
    with pytest.raises(ec.ShapeError, match="no pixel of the image"):
        ec.Sequential([ec.MaxPool2D(2, padding=((2, 0), (0, 0)))], input_shape=(6, 6, 3))


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


def test_fused_dense_layers_on_every_profile(profiled_runtime, rng, monkeypatch):
    """BinaryDense -> [BatchNorm ->] Sign is one bgemm_threshold launch on every profile; the
    uint8 first layer's is one bitplane_threshold_avx512 launch on the AVX-512 profile (elsewhere
    a threshold_pack after it); the last layer's batch-norm is in its GEMM's launch
    (bgemm_affine); all match the reference."""
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
    model.predict(x)  # the first call also prepares every batch size (kernels built, some run)
    # Count launches: launch() records every kernel's time while TIMING is set.
    monkeypatch.setattr(launch, "TIMING", True)
    monkeypatch.setattr(launch, "kernel_times", defaultdict(list))
    check_against_reference(model, x, "binary")
    counts = {name: len(times) for name, times in launch.kernel_times.items()}
    labels = [label for label, _ in model._compiled("binary").plan.steps]
    names = [layer.name for layer in model.layers]
    fused_labels = [" + ".join(names[3:6]), " + ".join(names[6:8])]
    planner = Planner(profiled_runtime, "binary")
    assert planner.fuses_dense_threshold()
    assert all(label in labels for label in fused_labels), labels
    assert counts.get(kernel("bgemm_threshold")) == 2 and kernel("bgemm") not in counts, counts
    # The first (bit-plane) layer's threshold is in its launch too: no threshold_pack.
    assert planner.fuses_bitplane_threshold()
    assert " + ".join(names[0:3]) in labels, labels
    assert counts.get(kernel("bitplane_conv2d_threshold")) == 1, counts
    assert "threshold_pack" not in counts and kernel("bitplane_conv2d") not in counts, counts
    assert counts.get(kernel("bgemm_affine")) == 1 and "affine" not in counts, counts
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


# -- strict arguments, layer membership, copies (issue 12) ------------------------------------


@pytest.mark.parametrize("batch_size, error", [(2.5, TypeError), (None, TypeError), (float("nan"), TypeError),
                                               (float("inf"), TypeError), (True, TypeError), ("4", TypeError),
                                               (0, ValueError), (-3, ValueError)])
def test_batch_size_must_be_a_positive_integer(small_model, batch_size, error):
    # Issue 12: 2.5 ran with 2; None, nan and inf gave raw int() errors.
    with pytest.raises(error, match="batch_size"):
        small_model.predict(np.zeros((3, 100), np.uint8), batch_size=batch_size)


def test_numpy_integer_batch_sizes_are_integers(small_model, rng):
    x = pixels(rng, 5, (100,))
    np.testing.assert_array_equal(small_model.predict(x, batch_size=np.int64(2)), small_model.predict(x))


@pytest.mark.parametrize("input_shape, error, match", [
    (4, TypeError, "input_shape must be a non-empty tuple"), ((), TypeError, "input_shape"),
    ((100.0,), TypeError, "input_shape entry must be an integer"), ((0,), ValueError, ">= 1"),
    (("100",), TypeError, "integer")])
def test_input_shape_must_be_sizes(input_shape, error, match):
    with pytest.raises(error, match=match):
        ec.Sequential([ec.Dense(3)], input_shape=input_shape)


def test_input_dtype_takes_names_and_numpy_dtypes():
    for dtype in ("uint8", np.uint8, np.dtype("uint8")):
        assert ec.Sequential([ec.BinaryDense(3)], (8,), dtype).input_dtype == "uint8"
    for dtype in ("float32", np.float32):
        assert ec.Sequential([ec.Dense(3)], (8,), dtype).input_dtype == "float32"
    for dtype in ("int8", np.float64, "pixels", None, 3):
        with pytest.raises(ValueError, match="input_dtype must be one of"):
            ec.Sequential([ec.Dense(3)], (8,), dtype)


def test_a_layer_belongs_to_one_model(runtime, rng):
    # Issue 12: the same Dense in two models was silently rebuilt for the second, and the
    # first then failed with "fgemm shapes do not match".
    shared = ec.Dense(4)
    first = ec.Sequential([shared], input_shape=(6,)).initialize(0)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    expected = first.predict(x)
    with pytest.raises(ValueError, match="already belongs to another model.*deepcopy"):
        ec.Sequential([shared], input_shape=(9,))
    np.testing.assert_array_equal(first.predict(x), expected)
    import copy
    second = ec.Sequential([copy.deepcopy(shared)], input_shape=(6,))
    np.testing.assert_array_equal(second.predict(x), expected)
    twice = ec.Sign()
    with pytest.raises(ValueError, match="appears twice"):
        ec.Sequential([twice, ec.Dense(4), twice], input_shape=(4,))
    del first
    import gc
    gc.collect()
    ec.Sequential([shared], input_shape=(9,))  # free again once its model is gone


def test_layers_are_fixed_when_the_model_is_made(small_model, rng):
    # Issue 12: m.layers.append(...) broke predict later with an AttributeError.
    x = pixels(rng, 2, (100,))
    expected = small_model.predict(x)
    with pytest.raises(AttributeError):
        small_model.layers.append(ec.Sign())
    np.testing.assert_array_equal(small_model.predict(x), expected)


def test_models_pickle_with_their_parameters_and_deepcopy_with_their_runtime(runtime, rng):
    import copy
    import pickle

    model = cnn().initialize(3)
    model._runtime = runtime
    x = pixels(rng, 3, (13, 11, 3))
    expected = model.predict(x)
    restored = pickle.loads(pickle.dumps(model))
    assert restored._runtime is None and all(layer.owner() is restored for layer in restored.layers)
    np.testing.assert_array_equal(restored.predict(x), expected)
    copied = copy.deepcopy(model)
    assert copied.runtime is runtime and copied.layers[0] is not model.layers[0]
    np.testing.assert_array_equal(copied.predict(x), expected)
    copied.layers[0].set_params(weight=-copied.layers[0].weight_pm1())
    np.testing.assert_array_equal(model.predict(x), expected)  # the copy's parameters are its own


def test_batch_norm_values_are_checked_when_set_or_loaded(small_model):
    # Issue 12: a negative variance in a file failed only at the first predict, with a
    # ValueError from fold.py naming neither layer nor file; eps=Infinity loaded.
    bn = small_model.layer("1_batch_norm")
    stored = small_model.params()
    stored["1_batch_norm.var"] = -np.ones(67, np.float32)
    with pytest.raises(ValueError, match="'1_batch_norm'.*'var' holds negative"):
        small_model.load_stored_params(stored)
    for eps, error in ((float("inf"), ValueError), (float("nan"), ValueError), (-1e-5, ValueError),
                       ("1e-5", TypeError), (True, TypeError)):
        with pytest.raises(error, match="eps"):
            ec.BatchNorm(eps=eps)
    no_eps = ec.Sequential([ec.BinaryDense(3), ec.BatchNorm(eps=0.0)], (8,), "uint8")
    with pytest.raises(ValueError, match="var \\+ eps must be positive"):
        no_eps.layers[1].set_params(var=np.array([1.0, 0.0, 2.0]))
    assert bn.eps == 1e-5


# -- batches that do not fit the device (issue 12) ----------------------------------------------


def _small_device(runtime, max_buffer_bytes: int, global_memory_bytes: int):
    """A runtime of ``runtime``'s device that believes its limits are these."""
    from dataclasses import replace

    from espresso_cl.runtime import Runtime

    small = Runtime(runtime.device)
    small.traits = small.buffers.traits = replace(small.traits, max_buffer_bytes=max_buffer_bytes,
                                                  global_memory_bytes=global_memory_bytes)
    return small


@pytest.mark.no_oclgrind
@pytest.mark.parametrize("limit", ["buffer", "global"])
def test_batches_split_to_fit_the_device_whatever_batch_size_says(runtime, rng, limit):
    model = cnn().initialize(5)
    x = pixels(rng, 300, (13, 11, 3))
    expected = model.predict(x, batch_size=300)
    sizes = (64 << 10, 1 << 40) if limit == "buffer" else (1 << 40, 1 << 20)
    small = _small_device(runtime, *sizes)
    model = ec.Sequential(list(copy_layers(model)), model.input_shape, model.input_dtype, runtime=small)
    with small.buffers.recording() as taken:
        out = model.predict(x, batch_size=300)
    np.testing.assert_array_equal(out, expected)
    rows = model._compiled("binary").rows_that_fit
    assert 2 <= rows < 300
    assert max(taken) <= small.traits.max_buffer_bytes
    assert sum(taken) <= small.traits.global_memory_bytes * np.ceil(300 / rows)


def copy_layers(model):
    import copy
    return copy.deepcopy(model.layers)


def test_a_sample_too_large_for_the_device_is_a_library_error(runtime, rng):
    from espresso_cl.memory import DeviceMemoryError

    model = cnn().initialize(5)
    small = _small_device(runtime, 4 << 10, 1 << 40)
    model = ec.Sequential(list(copy_layers(model)), model.input_shape, model.input_dtype, runtime=small)
    with pytest.raises(DeviceMemoryError, match="cannot allocate a buffer of [0-9,]+ bytes .*largest buffer is 4,096"):
        model.predict(pixels(rng, 5, (13, 11, 3)))


@pytest.mark.once
def test_the_issue_reproducer_45000_images_in_one_batch(runtime):
    # Issue 12: LogicError INVALID_BUFFER_SIZE (PoCL's buffers stop at 2 GiB), then an
    # AttributeError from Tensor.__del__.
    from espresso_cl import io

    model = io.load(io.shipped_model("mnist_cnn"), runtime=runtime)
    x = np.zeros((45000, 28, 28, 1), np.uint8)
    x[::7] = 255
    out = model.predict_classes(x, batch_size=45000)
    np.testing.assert_array_equal(out[:14], np.tile(model.predict_classes(x[:7]), 2))
    assert len(out) == 45000


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_networks_take_one_step_per_binary_layer(profiled_runtime, rng, batch):
    """BinaryNet's CIFAR-10 CNN (narrowed) and MLP: where the profile fuses convolutions, every
    binary layer's epilogue (threshold, pool, the last batch-norm) is in its launch, so at most
    one step per binary layer plus one (Flatten, a free view); the MLP so on every profile;
    the same answers as the reference and as float mode everywhere."""
    from benchmarks.networks import binarynet_cnn, on_runtime
    from espresso_cl.demo import binarynet_mlp
    from espresso_cl.plan import Planner

    planner = Planner(profiled_runtime, "binary")
    for net, shape in ((binarynet_cnn((16, 40, 33), dense=70), (32, 32, 3)), (binarynet_mlp(70), (784,))):
        model = on_runtime(net, profiled_runtime).initialize(seed=int(rng.integers(1 << 30)))
        set_some_gammas_zero(model, rng)
        steps = model._compiled("binary").plan.steps
        binary_layers = sum(1 for layer in model.layers if isinstance(layer, (ec.BinaryConv2D, ec.BinaryDense)))
        if len(shape) == 1 or planner.fuses_conv_threshold("zero"):
            assert len(steps) <= binary_layers + 1, [label for label, _ in steps]
        x = pixels(rng, batch, shape)
        out_b, _ = check_against_reference(model, x, "binary")
        out_f, _ = check_against_reference(model, x, "float")
        np.testing.assert_allclose(out_b, out_f, rtol=1e-6, atol=1e-6)
