"""The Larq Compute Engine side of ``python -m benchmarks.lce``, run by LCE's own Python
(``ESPRESSO_LCE_PYTHON``; TensorFlow 2.16 needs NumPy < 2, so it cannot share the project's
environment: see training/make_lce_models.py for that environment). Standalone: it imports
NumPy, TensorFlow, Larq and LCE, never espresso_cl.

``build OUT_DIR BATCH...``: the BinaryNet networks as Larq models with random weights (seed 0),
converted with ``convert_keras_model`` at each fixed batch size: ``mlp`` (784-4096x3-10 on
pixels; LCE has no binary dense operator, so its dense layers stay float), ``mlp1x1`` (the same
MLP with the dense layers written as 1x1 binary convolutions, LCE's fast route) and ``cnn``
(BinaryNet's CIFAR-10 CNN, one-padded binary convolutions). Files ``<net>-b<batch>.tflite``.

``time MODEL REPEATS THREADS``: LCE's interpreter on a random batch of the model's input
shape, each kernel option in turn (default, indirect bgemm, reference bconv), after one warm-up
run each, on random pixels (seed 1); prints one JSON object ``{"times": {option: [seconds per
run, ...]}, "classes": [the default kernels' class of each sample]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MLP_HIDDEN, MLP_LAYERS = 4096, 3
CNN_WIDTHS, CNN_DENSE = (128, 256, 512), 1024
OPTIONS = {"default": {}, "indirect_bgemm": {"use_indirect_bgemm": True},
           "reference_bconv": {"use_reference_bconv": True}}


def _binary(**kwargs) -> dict:
    return dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                use_bias=False, **kwargs)


def _first(**kwargs) -> dict:  # binary weights on the pixels themselves
    return dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False, **kwargs)


def networks(tf, lq, batch: int) -> dict:
    K = tf.keras.layers
    bn = dict(momentum=0.9, epsilon=1e-4)
    mlp = [K.Flatten(), lq.layers.QuantDense(MLP_HIDDEN, **_first()), K.BatchNormalization(**bn)]
    for _ in range(MLP_LAYERS - 1):
        mlp += [lq.layers.QuantDense(MLP_HIDDEN, **_binary()), K.BatchNormalization(**bn)]
    mlp += [lq.layers.QuantDense(10, **_binary()), K.BatchNormalization(**bn)]
    mlp1x1 = [K.Reshape((1, 1, 784)), lq.layers.QuantConv2D(MLP_HIDDEN, 1, **_first()), K.BatchNormalization(**bn)]
    for _ in range(MLP_LAYERS - 1):
        mlp1x1 += [lq.layers.QuantConv2D(MLP_HIDDEN, 1, **_binary()), K.BatchNormalization(**bn)]
    mlp1x1 += [lq.layers.QuantConv2D(10, 1, **_binary()), K.BatchNormalization(**bn), K.Reshape((10,))]
    cnn = []
    for i, width in enumerate(CNN_WIDTHS):
        first = _first(padding="same") if i == 0 else _binary(padding="same", pad_values=1.0)
        cnn += [lq.layers.QuantConv2D(width, 3, **first), K.BatchNormalization(**bn),
                lq.layers.QuantConv2D(width, 3, **_binary(padding="same", pad_values=1.0)),
                K.MaxPool2D(2), K.BatchNormalization(**bn)]
    cnn.append(K.Flatten())
    for _ in range(2):
        cnn += [lq.layers.QuantDense(CNN_DENSE, **_binary()), K.BatchNormalization(**bn)]
    cnn += [lq.layers.QuantDense(10, **_binary()), K.BatchNormalization(**bn)]
    shapes = {"mlp": (28, 28, 1), "mlp1x1": (28, 28, 1), "cnn": (32, 32, 3)}
    layers = {"mlp": mlp, "mlp1x1": mlp1x1, "cnn": cnn}
    return {name: tf.keras.Sequential([K.InputLayer(shapes[name], batch_size=batch)] + layers[name])
            for name in layers}


def _randomize_batch_norms(model, rng) -> None:
    """Batch-norm statistics of the scale a trained network has (random weights otherwise)."""
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            c = len(gamma)
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 8, c),
                               rng.uniform(20, 80, c)])


def build(out: Path, batches) -> None:
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    for batch in batches:
        tf.keras.utils.set_random_seed(0)
        for name, model in networks(tf, lq, batch).items():
            _randomize_batch_norms(model, np.random.default_rng(0))
            path = out / f"{name}-b{batch}.tflite"
            path.write_bytes(lce.convert_keras_model(model))
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr)


def time_model(path: Path, repeats: int, threads: int) -> dict:
    from larq_compute_engine import testing

    flatbuffer = path.read_bytes()
    results, classes = {}, None
    for option, flags in OPTIONS.items():
        interpreter = testing.Interpreter(flatbuffer, num_threads=threads, **flags)
        shape = interpreter.input_shapes[0]
        x = np.random.default_rng(1).integers(0, 256, shape).astype(np.float32)  # pixels, as espresso_cl's
        out = interpreter.interpreter.predict([x])[0]  # warm-up: allocation, packing of the weights
        classes = out.reshape(len(out), -1).argmax(1).tolist() if classes is None else classes
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            interpreter.interpreter.predict([x])
            times.append(time.perf_counter() - start)
        results[option] = times
    return {"times": results, "classes": classes}


def main(argv) -> None:
    command = argv[0] if argv else ""
    if command == "build":
        build(Path(argv[1]), [int(b) for b in argv[2:]])
    elif command == "time":
        print(json.dumps(time_model(Path(argv[1]), int(argv[2]), int(argv[3]))))
    else:
        raise SystemExit(f"usage: {Path(__file__).name} build OUT_DIR BATCH... | time MODEL REPEATS THREADS")


if __name__ == "__main__":
    main(sys.argv[1:])
