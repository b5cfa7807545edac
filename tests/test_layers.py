"""What each layer type declares (shape rule, plan, reference, float32 program), the fusion
patterns, and the float32 program against the reference forward. Pure NumPy: no device."""

import subprocess
import sys

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl import float_program as fp
from espresso_cl import fusion
from espresso_cl.layers import LAYER_TYPES, Layer, layer_from_config
from espresso_cl.reference.network import forward


def cnn():
    layers = [
        ec.BinaryConv2D(9, 3), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(11, 3, pad_value="one"), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign(),
        ec.MaxPool2D(2, padding="same"), ec.Flatten(),
        ec.BinaryDense(13), ec.Sign(),
        ec.BinaryDense(7), ec.BatchNorm(), ec.Softmax(),
    ]
    return ec.Sequential(layers, input_shape=(10, 9, 3), input_dtype="uint8").initialize(1)


def float_net():
    layers = [ec.Conv2D(5, 3, padding="valid"), ec.BatchNorm(), ec.Sign(), ec.MaxPool2D(2),
              ec.Flatten(), ec.Dense(6, use_bias=False), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(4),
              ec.Softmax()]
    return ec.Sequential(layers, input_shape=(8, 7, 2)).initialize(2)


@pytest.mark.parametrize("cls", sorted(LAYER_TYPES.values(), key=lambda c: c.type_name))
def test_every_layer_type_declares_what_the_interpreters_ask(cls):
    for method in ("_infer", "plan", "reference_forward", "float_ops"):
        assert getattr(cls, method) is not getattr(Layer, method), (cls.__name__, method)


def test_layer_definitions_import_without_opencl():
    code = ("import sys; import espresso_cl.layers, espresso_cl.reference.network, espresso_cl.fusion, "
            "espresso_cl.float_program, espresso_cl.bitpack; "
            "assert not {'pyopencl', 'espresso_cl.plan', 'espresso_cl.ops'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_patterns():
    bd, bn, sign, pool = ec.BinaryDense(4), ec.BatchNorm(), ec.Sign(), ec.MaxPool2D(2)
    assert fusion.sign_after([sign, bd]) == fusion.SignFold(None, 2)
    assert fusion.sign_after([bn, sign]) == fusion.SignFold(bn, 3)
    assert fusion.sign_after([bn, bd]) is None and fusion.sign_after([]) is None
    layers = [ec.BinaryConv2D(4, 3), pool, bn, sign, ec.Flatten(), ec.Dense(2), ec.BatchNorm(), ec.Sign()]
    model = ec.Sequential(layers, input_shape=(6, 6, 2), input_dtype="uint8")
    layers = model.layers
    assert fusion.pool_batch_norm_sign(pool, layers[2:]) == fusion.SignFold(bn, 3)
    assert fusion.batch_norm_sign(bn, layers[3:]) == fusion.SignFold(bn, 2)
    # The BatchNorm after Dense normalizes floats: no threshold to fold into.
    assert fusion.batch_norm_sign(layers[6], layers[7:]) is None


def test_patterns_around_a_convolution_and_a_last_batch_norm():
    bd, bn, sign, pool, flat = ec.BinaryDense(4), ec.BatchNorm(), ec.Sign(), ec.MaxPool2D(2), ec.Flatten()
    # Pool before the sign: flipped channels pool with AND; after it: OR everywhere.
    assert fusion.sign_pool_after([pool, bn, sign, flat]) == fusion.PooledSignFold(fusion.SignFold(bn, 3), pool, True, 4)
    assert fusion.sign_pool_after([pool, sign]) == fusion.PooledSignFold(fusion.SignFold(None, 2), pool, True, 3)
    assert fusion.sign_pool_after([bn, sign, pool]) == fusion.PooledSignFold(fusion.SignFold(bn, 3), pool, False, 4)
    assert fusion.sign_pool_after([sign, flat]) == fusion.PooledSignFold(fusion.SignFold(None, 2), None, False, 2)
    assert fusion.sign_pool_after([pool, bn, flat]) is None and fusion.sign_pool_after([bn, bd]) is None
    assert fusion.sign_pool_after([]) is None
    # A batch-norm with no sign after it is an affine map the GEMM may apply.
    assert fusion.batch_norm_alone([bn]) is bn and fusion.batch_norm_alone([bn, bd]) is bn
    assert fusion.batch_norm_alone([bn, sign]) is None and fusion.batch_norm_alone([sign]) is None
    assert fusion.batch_norm_alone([]) is None


def test_lower_consumes_runs():
    model = cnn()
    runs = fusion.lower(model.layers, lambda layer, following: layer.float_ops(following))
    assert [len(run) for run, _ in runs] == [1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1]
    assert tuple(layer for run, _ in runs for layer in run) == model.layers


def test_float_program_of_a_binary_network():
    kinds = [type(op) for op in fp.program(cnn().layers)]
    assert kinds == [fp.Conv, fp.Threshold, fp.Conv, fp.MaxPool, fp.Threshold, fp.MaxPool, fp.Flatten,
                     fp.MatMul, fp.Sign, fp.MatMul, fp.Affine, fp.Softmax]


@pytest.mark.parametrize("make", [cnn, float_net])
def test_float_program_matches_reference_forward(make, rng):
    model = make()
    shape = (5,) + model.input_shape
    x = (rng.integers(0, 256, shape, dtype=np.uint8) if model.input_dtype == "uint8"
         else rng.standard_normal(shape).astype(np.float32))
    ref = forward(model.layers, x)
    out = fp.numpy_forward(fp.program(model.layers))(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_threshold_of_folded_sign():
    thresh, flip = np.array([3, -2, 0], np.int32), np.array([0, 1, 0], np.int32)
    op = fp.Threshold.of(thresh, flip)
    acc = np.array([[3, -2, -1], [2, -3, 0]], np.float32)
    np.testing.assert_array_equal(op.numpy_step()(acc), [[1, 1, -1], [-1, 1, 1]])


def test_macs():
    model = cnn()
    conv = model.layers[0]
    assert conv.macs() == 10 * 9 * 9 * 3 * 3 * 3
    assert model.layers[9].macs() == 13 * model.layers[9].input_spec.shape[0]
    assert all(layer.macs() == 0 for layer in model.layers if "weight" not in layer.param_shapes())


# -- strict constructor arguments (issue 12) ----------------------------------------------------


@pytest.mark.parametrize("make, error, match", [
    (lambda: ec.BinaryDense(2.5), TypeError, "BinaryDense units must be an integer"),
    (lambda: ec.BinaryDense("256"), TypeError, "units"),
    (lambda: ec.BinaryDense(True), TypeError, "units"),
    (lambda: ec.BinaryDense(0), ValueError, "units must be >= 1"),
    (lambda: ec.BinaryDense(2**31), ValueError, "units must be <="),
    (lambda: ec.Dense(10, use_bias="no"), TypeError, "Dense use_bias must be True or False"),
    (lambda: ec.Dense(10, use_bias=1), TypeError, "use_bias"),
    (lambda: ec.BinaryConv2D(8, stride=1.7), TypeError, "BinaryConv2D stride must be an integer"),
    (lambda: ec.BinaryConv2D(32.7), TypeError, "filters"),
    (lambda: ec.BinaryConv2D(8, kernel_size=(3, 3, 3)), ValueError, "kernel_size"),
    (lambda: ec.BinaryConv2D(8, kernel_size=(3, 0)), ValueError, "kernel_size"),
    (lambda: ec.BinaryConv2D(8, padding="full"), ValueError, "padding must be one of"),
    (lambda: ec.BinaryConv2D(8, pad_value=0), ValueError, "pad_value"),
    (lambda: ec.Conv2D(8, use_bias="yes"), TypeError, "use_bias"),
    (lambda: ec.MaxPool2D(2.0), TypeError, "pool_size"),
    (lambda: ec.MaxPool2D(2, stride=0), ValueError, "stride"),
    (lambda: ec.BatchNorm(eps="1e-3"), TypeError, "eps"),
    (lambda: ec.Sign(name=3), TypeError, "name must be a non-empty string"),
    (lambda: ec.Sign(name=""), TypeError, "name"),
])
def test_constructors_refuse_loose_types(make, error, match):
    # Issue 12: BinaryDense(2.5).units == 2, BinaryConv2D(8, stride=1.7).stride == 1 and
    # Dense(10, use_bias='no') had a bias.
    with pytest.raises(error, match=match):
        make()


def test_numpy_scalars_are_what_they_hold():
    assert ec.BinaryDense(np.int32(7)).units == 7
    assert ec.Dense(3, use_bias=np.bool_(False)).use_bias is False
    assert ec.BinaryConv2D(4, kernel_size=[np.int64(3), 2]).kernel_size == (3, 2)
    assert ec.BatchNorm(eps=np.float32(0.5)).eps == 0.5


@pytest.mark.parametrize("config", [
    {"type": "binary_dense", "units": "256"}, {"type": "binary_conv2d", "filters": 32.7},
    {"type": "dense", "units": 10, "use_bias": "yes"}, {"type": "batch_norm", "eps": None},
    {"type": "maxpool2d", "pool_size": [2, 2, 2]}, {"type": "sign", "color": "red"},
    {"type": "dense", "units": 10**30},
])
def test_configs_with_loose_types_are_refused(config):
    # Issue 12: a model file's header could say units "256", filters 32.7, use_bias "yes".
    with pytest.raises(ValueError):
        layer_from_config(config)
