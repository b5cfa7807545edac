"""The command line (espresso_cl/cli.py): ``predict`` over .npy, .npz, Parquet and image
folders gives the model's own classes (0 disagreements), right top-k and logits columns, no
output or temporary file after an interrupted or failed run, exit code 2 and one line for each
bad input; ``info`` and ``devices``. One case runs ``python -m espresso_cl`` in a subprocess;
the rest call ``main`` in this process to stay fast."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import espresso_cl as ec  # noqa: E402
from espresso_cl import cli, io, settings  # noqa: E402
from espresso_cl.data import DataUnavailable, load_mnist  # noqa: E402
from espresso_cl.ray import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 2000
CNN = str(io.shipped_model("mnist_cnn"))
MLP = str(io.shipped_model("mnist_mlp"))


@pytest.fixture(scope="module")
def images():
    try:
        return load_mnist("test")[0][:SAMPLES]
    except DataUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cnn(runtime):
    return io.load(CNN, runtime=runtime)


@pytest.fixture(scope="module")
def expected(cnn, images):
    return cnn.predict_classes(images)


def image_table(images: np.ndarray, start: int = 0):
    """ids, pixels as a list<uint8> column (what pandas and most writers make) and a label."""
    flat = images.reshape(len(images), -1)
    return pa.table({"id": [f"img{start + i:05d}" for i in range(len(images))], "image": pa.array(list(flat)),
                     "label": np.arange(len(images)) % 10})


@pytest.fixture(scope="module")
def data(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("cli")
    np.save(folder / "x.npy", images)
    np.savez_compressed(folder / "x.npz", images=images, labels=np.arange(len(images)))
    pq.write_table(image_table(images), folder / "mnist.parquet", row_group_size=300)
    parts = folder / "parts"
    parts.mkdir()
    for index, start in enumerate(range(0, len(images), 700)):
        chunk = images[start:start + 700]
        pq.write_table(image_table(chunk, start).drop(["id"]), parts / f"part-{index}.parquet")
    pq.write_table(pa.table({"image": pa.array([row.tobytes() for row in images.reshape(len(images), -1)],
                                               pa.binary())}), folder / "bytes.parquet")
    return folder


def run(*args) -> int:
    return cli.main([str(a) for a in args])


def test_predict_npy_in_a_subprocess(data, expected, tmp_path):
    out = tmp_path / "out.npy"
    done = subprocess.run([sys.executable, "-m", "espresso_cl", "predict", CNN, data / "x.npy", "-o", out],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no terminal: no progress bar
    result = np.load(out)
    assert result.dtype.names == ("class",)
    np.testing.assert_array_equal(result["class"], expected)


def test_parquet_with_ids_top_k_and_logits(data, cnn, images, expected, tmp_path):
    out = tmp_path / "out.parquet"
    assert run("predict", CNN, data / "mnist.parquet", "-o", out, "--id-column", "id", "--top-k", 3,
               "--logits", "--batch-size", 128) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "class", "top_k", "logits"]
    assert table["id"].to_pylist() == [f"img{i:05d}" for i in range(SAMPLES)]
    np.testing.assert_array_equal(table["class"].to_numpy(), expected)
    logits = np.stack(table["logits"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(logits, cnn.predict(images))
    top = np.stack(table["top_k"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(top[:, 0], expected)
    np.testing.assert_array_equal(np.take_along_axis(logits, top, axis=1), -np.sort(-logits, axis=1)[:, :3])


def test_parquet_folder_rows_are_numbered_in_file_order(data, expected, tmp_path):
    out = tmp_path / "out.parquet"
    assert run("predict", CNN, data / "parts", "-o", out, "--column", "image") == 0
    table = pq.read_table(out)
    assert table.column_names == ["row", "class"]
    np.testing.assert_array_equal(table["row"].to_numpy(), np.arange(SAMPLES))
    np.testing.assert_array_equal(table["class"].to_numpy(), expected)


@pytest.mark.parametrize("source, extra", [("x.npz", ["--column", "images"]), ("bytes.parquet", [])])
def test_npz_entry_and_bytes_column(data, expected, tmp_path, source, extra):
    out = tmp_path / "out.npy"
    assert run("predict", CNN, data / source, "-o", out, *extra) == 0
    np.testing.assert_array_equal(np.load(out)["class"], expected)


def test_float_mode_and_flat_model(data, runtime, images, tmp_path):
    out = tmp_path / "out.npy"
    assert run("predict", CNN, data / "x.npy", "-o", out, "--mode", "float") == 0
    float_classes = io.load(CNN, runtime=runtime).predict_classes(images, mode="float")
    np.testing.assert_array_equal(np.load(out)["class"], float_classes)
    # The MLP takes 784 values: the (28, 28, 1) images are read in C order.
    assert run("predict", MLP, data / "x.npy", "-o", out) == 0
    np.testing.assert_array_equal(np.load(out)["class"],
                                  io.load(MLP, runtime=runtime).predict_classes(images.reshape(SAMPLES, 784)))


def test_image_folder(images, expected, tmp_path):
    image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "pngs"
    (folder / "sub").mkdir(parents=True)
    for i in range(12):
        # Some as RGB: converted to the model's one channel, exactly for grey pixels.
        pixels = images[i, :, :, 0]
        picture = image.fromarray(pixels).convert("RGB") if i % 3 == 0 else image.fromarray(pixels)
        picture.save(folder / ("sub" if i % 2 else "") / f"digit{i:02d}.png")
    out = tmp_path / "out.parquet"
    assert run("predict", CNN, folder, "-o", out) == 0
    table = pq.read_table(out)
    names = [f"digit{i:02d}.png" for i in range(0, 12, 2)] + [f"sub/digit{i:02d}.png" for i in range(1, 12, 2)]
    assert table["file"].to_pylist() == names
    order = [int(name[-6:-4]) for name in names]
    np.testing.assert_array_equal(table["class"].to_numpy(), expected[order])

    image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "big.png")
    assert run("predict", CNN, folder, "-o", out, "--quiet") == cli.EXIT_BAD_INPUT
    assert run("predict", CNN, folder, "-o", out, "--resize") == 0
    assert pq.read_table(out).num_rows == 13


def test_sigint_leaves_no_output(data, tmp_path):
    out = tmp_path / "out.parquet"
    process = subprocess.Popen([sys.executable, "-m", "espresso_cl", "predict", CNN, data / "mnist.parquet", "-o", out,
                                "--batch-size", "1"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # the first chunk is written
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was interrupted"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == cli.EXIT_INTERRUPTED
    finally:
        process.kill()
    assert "interrupted" in process.stderr.read()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_failure_midway_leaves_no_output(data, tmp_path, monkeypatch, failure):
    out = tmp_path / "out.npy"
    calls = []
    real = Predictor.__call__

    def third_fails(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise failure("midway")
        return real(self, batch)

    monkeypatch.setattr(Predictor, "__call__", third_fails)
    if failure is KeyboardInterrupt:
        assert run("predict", CNN, data / "x.npy", "-o", out, "--batch-size", 100) == cli.EXIT_INTERRUPTED
    else:
        with pytest.raises(RuntimeError, match="midway"):  # a bug shows its traceback
            run("predict", CNN, data / "x.npy", "-o", out, "--batch-size", 100)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def bad(tmp_path_factory, images):
    """Inputs the models cannot take, and a small float32 model."""
    folder = tmp_path_factory.mktemp("bad")
    np.save(folder / "float.npy", np.random.default_rng(0).random((10, 28, 28, 1)))
    big = np.zeros((10, 784), np.int16)
    big[7, 5] = 300
    np.save(folder / "big.npy", big)
    np.save(folder / "small.npy", np.zeros((10, 27, 27, 1), np.uint8))
    np.save(folder / "nchw.npy", np.zeros((10, 1, 28, 28), np.uint8))
    np.save(folder / "empty.npy", np.zeros((0, 28, 28, 1), np.uint8))
    np.save(folder / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    np.save(folder / "nan.npy", np.array([[0.5, np.nan, 1, 2]], np.float32))
    np.save(folder / "flags.npy", np.ones((3, 4), bool))
    (folder / "notes.txt").write_text("not data")
    (folder / "pictures").mkdir()
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    (folder / "broken.npz").write_bytes(b"not a zip")
    pixels = list(images[:4].reshape(4, -1))
    pq.write_table(pa.table({"a": pa.array(pixels), "b": pa.array(pixels)}), folder / "two.parquet")
    pq.write_table(pa.table({"image": pa.array(pixels[:3] + [None])}), folder / "nulls.parquet")
    pq.write_table(pa.table({"image": pa.array([list(range(780))] * 3)}), folder / "short.parquet")
    model = ec.Sequential([ec.Dense(3)], input_shape=(4,), input_dtype="float32").initialize(seed=0)
    io.save(model, folder / "float_model.npz")
    return folder


BAD_INPUTS = [
    # (model, input, extra arguments, what the message says)
    (CNN, "notes.txt", [], "unknown input format"),
    (CNN, "missing.npy", [], "no such file"),
    (CNN, "broken.parquet", [], "not a readable Parquet file"),
    (CNN, "broken.npz", [], "not a readable .npz"),
    (CNN, "objects.npy", [], "not a readable .npy"),
    (CNN, "empty.npy", [], "holds no samples"),
    (CNN, "float.npy", [], "takes integers 0..255"),
    (CNN, "big.npy", [], "values from 0 to 300"),
    (CNN, "small.npy", [], "rows of shape (27, 27, 1)"),
    (CNN, "nchw.npy", [], "rows of shape (1, 28, 28)"),
    (CNN, "two.parquet", [], "name the input with --column"),
    (CNN, "two.parquet", ["--column", "c"], "has no column 'c'"),
    (CNN, "nulls.parquet", [], "missing values"),
    (CNN, "short.parquet", [], "780 values per row"),
    (CNN, "big.npy", ["--id-column", "id"], "--id-column applies to parquet"),
    (CNN, "big.npy", ["--top-k", "11"], "10 classes"),
    (CNN, "big.npy", ["--device", "no-such-device"], "matches no platform or device name"),
    (CNN, "big.npy", ["--input-dtype", "uint8"], "--input-dtype applies to ONNX"),
    ("float_model.npz", "nan.npy", [], "NaN or infinity"),
    ("float_model.npz", "flags.npy", [], "takes real numbers"),
    ("notes.txt", "nan.npy", [], "not an espresso_cl model file"),
    (MLP, "pictures", [], "image folders need a model that takes images"),
]


@pytest.mark.parametrize("model, source, extra, message", BAD_INPUTS, ids=[f"{c[1]}-{c[3]}" for c in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(bad, tmp_path, capsys, model, source, extra, message):
    out = tmp_path / "out.parquet"
    model = model if os.path.isabs(model) else bad / model
    source = bad / source
    assert run("predict", model, source, "-o", out, *extra) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("espresso_cl: error: ") and err.count("\n") == 1, err
    assert message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output, message", [("out.csv", "unknown output format"),
                                             ("nowhere/out.npy", "does not exist")])
def test_bad_output_exits_2(data, tmp_path, capsys, output, message):
    assert run("predict", CNN, data / "x.npy", "-o", tmp_path / output) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_onnx_model(tmp_path, runtime):
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    from torch_nets import NETWORKS, random_input

    net, shape, _ = NETWORKS["mlp"]()
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation
        torch.onnx.export(net, (random_input(shape, True, 2, 0),), str(path), dynamo=False, opset_version=17)
    pixels = random_input(shape, True, 300, 1).numpy().astype(np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    assert run("predict", path, tmp_path / "x.npy", "-o", tmp_path / "out.npy", "--input-dtype", "uint8") == 0
    theirs = ec.from_onnx(str(path), input_dtype="uint8", runtime=runtime).predict_classes(pixels)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy")["class"], theirs)
    assert run("predict", path, tmp_path / "x.npy", "-o", tmp_path / "out2.npy") == cli.EXIT_BAD_INPUT


def test_info(capsys):
    assert run("info", CNN) == 0
    out = capsys.readouterr().out
    assert "input (28, 28, 1) uint8, output (10,)" in out
    assert "0_binary_conv2d" in out and "29.0x smaller" in out
    assert '"test_accuracy"' in out  # the header's metadata


def test_devices(capsys, runtime):
    assert run("devices") == 0
    out = capsys.readouterr().out
    assert "auto picks" in out and f"{settings.DEVICE}=" in out
    assert runtime.traits.name in out and runtime.profile.name in out
