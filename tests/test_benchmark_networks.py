"""The benchmark's network baselines and extra figures (benchmarks/networks.py, benchmarks/onnx_float.py),
on tiny networks and fake models: no OpenCL device is used."""

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl import float_program as fp

from benchmarks import networks, onnx_float
from benchmarks.timing import Settings

QUICK = Settings(repeats=2, min_repeats=2, budget_s=1.0, max_call_s=10.0, min_sample_s=0.0, settle_s=0.0)


def awkward_cnn():
    """Stride 2 with explicit uneven padding on the pixels, a padded pool, a conv padded with
    ones (2x2 images out of it), a flatten, a dense layer and a softmax."""
    return ec.Sequential([ec.BinaryConv2D(5, kernel_size=3, stride=2, padding=((0, 1), (1, 0))),
                          ec.MaxPool2D(3, stride=2, padding="same"), ec.BatchNorm(), ec.Sign(),
                          ec.BinaryConv2D(4, padding=((1, 0), (0, 1)), pad_value="one"), ec.BatchNorm(), ec.Sign(),
                          ec.Flatten(), ec.BinaryDense(6), ec.BatchNorm(), ec.Softmax()],
                         input_shape=(13, 11, 3), input_dtype="uint8")


def image_out():
    """An image output (no flatten), on float input, with float layers and biases."""
    return ec.Sequential([ec.Conv2D(3, kernel_size=2, stride=1, padding="valid"), ec.BatchNorm(), ec.Sign(),
                          ec.BinaryConv2D(2, kernel_size=3, padding="same"), ec.BatchNorm()],
                         input_shape=(5, 6, 2), input_dtype="float32")


def small_mlp():
    return ec.Sequential([ec.BinaryDense(33), ec.BatchNorm(), ec.Sign(), ec.Dense(7), ec.BatchNorm()],
                         input_shape=(20,), input_dtype="uint8")


@pytest.mark.parametrize("make", [awkward_cnn, image_out, small_mlp])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_graph_computes_the_numpy_float_program(make, batch):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = make().initialize(seed=batch)
    program = fp.program(model.layers)
    (provider, device, forward), = onnx_float.forwards(model, program, None, 1, onnx, onnxruntime)
    assert (provider, device) == (onnx_float.CPU, None)
    rng = np.random.default_rng(batch)
    if model.input_dtype == "uint8":
        x = rng.integers(0, 256, size=(batch,) + model.input_shape, dtype=np.uint8)
    else:
        x = rng.normal(size=(batch,) + model.input_shape).astype(np.float32)
    expected = fp.numpy_forward(program)(x)
    out = forward(x)
    assert out.shape == expected.shape == (batch,) + model.output_spec.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_no_cuda_session_without_a_gpu_under_test():
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = small_mlp().initialize(seed=0)
    made = onnx_float.forwards(model, fp.program(model.layers), None, 1, onnx, onnxruntime)
    assert [provider for provider, _, _ in made] == [onnx_float.CPU]


@pytest.mark.parametrize("family, count", [("mlp", 4), ("cnn", 9)])
def test_binary_layers_count_the_bit_plane_layer(family, count):
    assert networks.binary_layers(networks.build(family, "quick")) == count


class FakeModel:
    """Stands for a Sequential: counts launches, records predict calls; the first call at a
    batch size is slow (10 ms), later ones fast."""

    input_shape = (4,)

    def __init__(self, launches=True):
        self.calls, self.counted = [], []
        if launches:
            self.launch_count = lambda batch_size, mode="binary": self.counted.append((batch_size, mode)) or 7

    def predict(self, x, mode="binary", batch_size=256):
        import time

        if (len(x), batch_size) not in self.calls:
            time.sleep(0.01)
        self.calls.append((len(x), batch_size))
        return np.zeros((len(x), 2), np.float32)


class FakeDevice:
    def __init__(self, key):
        self.key = key


def fake_network(models):
    network = networks.Network.__new__(networks.Network)
    network.model, network.binary_layers, network.seen = FakeModel(), 5, {1, 16}
    network.devices = [FakeDevice(key) for key in models]
    network.models = models
    return network


def test_launches_and_first_call_at_a_batch_size_no_model_has_seen():
    model, old = FakeModel(), FakeModel(launches=False)
    network = fake_network({"pocl cpu 1:0": model, "old cpu 2:0": old})
    figures = network.launches_and_first_call(1, QUICK)
    # Launches are counted at the case's batch in binary mode; an espresso_cl without
    # launch_count gives an error entry, not a failed run.
    assert model.counted == [(1, "binary")]
    assert figures["launches"]["pocl cpu 1:0"] == {"launches": 7, "binary_layers": 5}
    assert "launch_count" in figures["launches"]["old cpu 2:0"]["error"]
    # 2 was the first size not seen; every call was at that size, with batch_size = that size.
    for fake in (model, old):
        first = figures["first_call"][[k for k, m in network.models.items() if m is fake][0]]
        assert first["batch"] == 2 and set(fake.calls) == {(2, 2)} and len(fake.calls) >= 3
        assert first["first_s"] >= 0.01 > max(first["warm_median_s"], first["warm_single_s"])
        # The figure compares single calls after a pause; the looped median is reported beside it.
        assert first["ratio"] == pytest.approx(first["first_s"] / first["warm_single_s"])
        assert first["ratio_to_looped"] == pytest.approx(first["first_s"] / first["warm_median_s"])
    # The next case's new size skips every size used so far (16 by a case, 2 just now).
    assert network.launches_and_first_call(1, QUICK)["first_call"]["pocl cpu 1:0"]["batch"] == 3
    assert network.launches_and_first_call(16, QUICK)["first_call"]["pocl cpu 1:0"]["batch"] == 17
