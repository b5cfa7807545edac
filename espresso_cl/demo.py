"""Demo: the BinaryNet MNIST MLP (784-4096-4096-4096-10) in binary and float mode.

Run ``python -m espresso_cl.demo`` (``make demo``). The device follows ``ESPRESSO_DEVICE``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import espresso_cl as ec


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    runtime = ec.get_runtime()
    print(f"device: {runtime.describe()} (tuning profile '{runtime.params.name}')")
    model = binarynet_mlp().initialize(seed=0)
    model.summary()
    print("weights: random (no trained model is shipped yet)")

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch, 784), dtype=np.uint8)
    results = {}
    for mode in ("binary", "float"):
        classes = model.predict_classes(x, mode=mode, batch_size=args.batch)
        seconds = _time(lambda: model.predict_classes(x, mode=mode, batch_size=args.batch), args.repeats)
        results[mode] = (classes, seconds)
        print(f"{mode:6s} mode: {args.batch / seconds:8.1f} images/s ({seconds * 1e3:.1f} ms per batch "
              f"of {args.batch}); first predictions {classes[:10].tolist()}")
    same = np.array_equal(results["binary"][0], results["float"][0])
    print(f"binary and float mode predictions identical: {same}")
    print(f"binary mode is {results['float'][1] / results['binary'][1]:.1f}x faster than float mode")
    if not same:
        raise SystemExit("binary and float mode disagree")


if __name__ == "__main__":
    main()
