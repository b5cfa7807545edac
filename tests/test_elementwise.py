"""Per-channel affine, float sign (kernels/affine.cl), softmax and argmax (kernels/softmax.cl)
against the float64 NumPy reference."""

import numpy as np
import pytest

from espresso_cl import Tensor, ops, reference

CHANNELS = [1, 5, 31, 33, 64, 65, 100, 130]
EPS32 = float(np.finfo(np.float32).eps)


def _upload(runtime, array, kind="float32"):
    return Tensor.from_numpy(runtime, array, kind)


@pytest.mark.parametrize("kind", ["int32", "float32"])
@pytest.mark.parametrize("lead", [(1,), (7,), (3, 5, 2)])
@pytest.mark.parametrize("channels", CHANNELS)
def test_affine_matches_reference(runtime, rng, channels, lead, kind):
    shape = lead + (channels,)
    if kind == "int32":
        # Accumulators of binary layers: exact in float32 below 2**24.
        x = rng.integers(-4096, 4097, shape, dtype=np.int32)
    else:
        x = (rng.standard_normal(shape) * 50).astype(np.float32)
    scale = rng.standard_normal(channels).astype(np.float32)
    shift = (rng.standard_normal(channels) * 10).astype(np.float32)
    out = ops.affine(_upload(runtime, x, kind), _upload(runtime, scale), _upload(runtime, shift))
    assert out.kind == "float32" and out.shape == shape
    expected = reference.affine(x, scale, shift)
    # A float32 multiply and add, fused or not, round at most twice: within
    # eps * (|x * scale| + |shift|) of the exact value; twice that is the stated tolerance.
    bound = 2 * EPS32 * (np.abs(expected - shift) + np.abs(shift))
    assert (np.abs(out.numpy() - expected) <= bound).all()


def test_affine_rejects_bad_inputs(runtime):
    x = _upload(runtime, np.zeros((3, 4), np.int32), "int32")
    vec = _upload(runtime, np.ones(4, np.float32))
    with pytest.raises(TypeError):
        ops.affine(x, _upload(runtime, np.ones(4, np.int32), "int32"), vec)
    with pytest.raises(TypeError):
        ops.affine(Tensor.from_numpy(runtime, np.zeros((3, 4), np.uint8), "uint8"), vec, vec)
    with pytest.raises(ValueError):
        ops.affine(x, _upload(runtime, np.ones(5, np.float32)), vec)


@pytest.mark.parametrize("shape", [(1,), (37,), (3, 5, 7)])
def test_sign_float(runtime, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::3] = 0.0
    x.flat[1::5] = -0.0
    out = ops.sign_float(_upload(runtime, x))
    assert out.shape == shape
    np.testing.assert_array_equal(out.numpy(), reference.sign_float(x))
    assert (out.numpy()[x == 0] == 1.0).all()


@pytest.mark.parametrize("rows", [1, 4, 9])
@pytest.mark.parametrize("channels", CHANNELS)
def test_softmax_matches_reference(runtime, rng, rows, channels):
    x = (rng.standard_normal((rows, channels)) * 5).astype(np.float32)
    out = ops.softmax(_upload(runtime, x)).numpy()
    # float32 exp (a few ulp) and a sum of C terms: 1e-5 relative covers C up to ~130.
    np.testing.assert_allclose(out, reference.softmax(x), rtol=1e-5, atol=1e-7)


def test_softmax_is_stable_for_large_values(runtime):
    x = np.array([[1000.0, 999.0, 998.0, -1000.0],
                  [-1000.0, -1001.0, -1000.0, -1002.0],
                  [1e30, 0.0, -1e30, 1e30],
                  [88.0, 89.0, 90.0, 91.0]], np.float32)
    out = ops.softmax(_upload(runtime, x)).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, reference.softmax(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("rows", [1, 4, 9])
@pytest.mark.parametrize("channels", CHANNELS)
def test_argmax_matches_reference(runtime, rng, rows, channels):
    x = rng.standard_normal((rows, channels)).astype(np.float32)
    out = ops.argmax(_upload(runtime, x))
    assert out.kind == "int32" and out.shape == (rows,)
    np.testing.assert_array_equal(out.numpy(), reference.argmax(x))


def test_argmax_takes_the_first_of_ties(runtime):
    x = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
                  [1.0, 3.0, 2.0, 3.0, 3.0],
                  [-5.0, -7.0, -5.0, -6.0, -9.0],
                  [1000.0, 999.0, 1000.0, 1000.0, -1000.0],
                  [-1.0, -1.0, -1.0, -1.0, 2.0]], np.float32)
    out = ops.argmax(_upload(runtime, x)).numpy()
    np.testing.assert_array_equal(out, [0, 1, 0, 0, 4])
    np.testing.assert_array_equal(out, reference.argmax(x))


def test_softmax_and_argmax_reject_bad_inputs(runtime):
    for op in (ops.softmax, ops.argmax):
        with pytest.raises(TypeError):
            op(_upload(runtime, np.zeros((2, 3), np.int32), "int32"))
        with pytest.raises(ValueError):
            op(_upload(runtime, np.zeros((2, 3, 4), np.float32)))
