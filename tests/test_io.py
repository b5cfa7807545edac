"""The model file: exact round trip, and a clear error for every kind of bad file."""

import json
import zipfile

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl import io
from espresso_cl.reference.network import forward


def every_layer_model():
    layers = [
        ec.BinaryConv2D(5, 3, padding="same"), ec.MaxPool2D(2), ec.BatchNorm(), ec.Sign(),
        ec.BinaryConv2D(7, (3, 2), padding="same", pad_value="one"), ec.BatchNorm(eps=1e-3), ec.Sign(),
        ec.Flatten(),
        ec.BinaryDense(67, name="hidden"), ec.BatchNorm(), ec.Sign(),
        ec.Dense(10), ec.Softmax(),
    ]
    return ec.Sequential(layers, input_shape=(9, 7, 2), input_dtype="uint8")


def float_model():
    layers = [ec.Conv2D(4, 3, padding="valid", use_bias=False), ec.BatchNorm(), ec.Sign(),
              ec.Flatten(), ec.Dense(3)]
    return ec.Sequential(layers, input_shape=(5, 6, 2), input_dtype="float32")


@pytest.fixture
def saved(tmp_path, rng):
    model = every_layer_model().initialize(seed=int(rng.integers(1 << 30)))
    path = tmp_path / "model.npz"
    io.save(model, path, metadata={"note": "test", "accuracy": 0.5})
    return model, path


def rewrite(path, change):
    """Rewrite a model file's entries through ``change(entries)``, keeping the header checksum valid."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    header = json.loads(entries[io.HEADER].tobytes())
    change(header, entries)
    raw = json.dumps(header).encode()
    entries[io.HEADER] = np.frombuffer(raw, np.uint8)
    entries[io.HEADER_SHA256] = np.frombuffer(io._sha256(raw).encode(), np.uint8)
    np.savez(path, **entries)


@pytest.mark.parametrize("make", [every_layer_model, float_model])
def test_round_trip_is_exact(tmp_path, rng, make):
    model = make().initialize(seed=int(rng.integers(1 << 30)))
    path = tmp_path / "m.npz"
    io.save(model, path)
    loaded = io.load(path)
    assert loaded.input_shape == model.input_shape and loaded.input_dtype == model.input_dtype
    assert [l.config() for l in loaded.layers] == [l.config() for l in model.layers]
    before, after = model.params(), loaded.params()
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and before[key].shape == after[key].shape, key
        assert before[key].tobytes() == after[key].tobytes(), key
    shape = model.input_shape
    x = (rng.integers(0, 256, (5,) + shape, dtype=np.uint8) if model.input_dtype == "uint8"
         else rng.standard_normal((5,) + shape).astype(np.float32))
    np.testing.assert_array_equal(forward(loaded.layers, x), forward(model.layers, x))
    io.save(loaded, tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == path.read_bytes()


def test_loaded_model_runs_on_device(runtime, saved, rng):
    model, path = saved
    loaded = io.load(path, runtime=runtime)
    x = rng.integers(0, 256, (3,) + model.input_shape, dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict_classes(x), forward(model.layers, x).argmax(1))


def test_header_and_metadata(saved):
    model, path = saved
    header = io.read_header(path)
    assert header["format"] == io.FORMAT_NAME and header["version"] == io.FORMAT_VERSION
    assert header["metadata"] == {"note": "test", "accuracy": 0.5}
    assert set(header["tensors"]) == set(model.params())
    assert header["tensors"]["hidden.weight"]["dtype"] == "uint32"


def test_binary_weights_are_packed_on_disk(tmp_path):
    model = ec.Sequential([ec.BinaryDense(256), ec.BatchNorm()], input_shape=(1024,),
                          input_dtype="uint8").initialize()
    path = tmp_path / "m.npz"
    io.save(model, path)
    as_float32 = 256 * 1024 * 4
    assert path.stat().st_size < as_float32 / 25


def test_save_refuses_unset_params_and_non_json_metadata(tmp_path):
    with pytest.raises(ValueError, match="not set"):
        io.save(float_model(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="JSON"):
        io.save(float_model().initialize(), tmp_path / "m.npz", metadata={"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        io.save(float_model().initialize(), tmp_path / "m.npz", metadata={"x": float("nan")})
    assert not list(tmp_path.iterdir())  # no partial file left behind


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -1, -22])
def test_truncated(saved, keep):
    _, path = saved
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path.write_bytes(data[:cut])
    with pytest.raises(io.TruncatedFileError, match="truncated"):
        io.load(path)


def test_corrupted_tensor_bytes(saved):
    model, path = saved
    data = bytearray(path.read_bytes())
    weight = model.params()["hidden.weight"].tobytes()
    at = data.find(weight)
    assert at > 0
    data[at + len(weight) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(io.CorruptedFileError, match="corrupted.*hidden.weight"):
        io.load(path)


def test_corrupted_header_bytes(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    at = data.find(b'"input_dtype"')
    data[at + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(io.CorruptedFileError, match="corrupted"):
        io.load(path)


def change_tensor(path, name, change, update_checksum=False):
    def apply(header, entries):
        key = io.PARAM_PREFIX + name
        entries[key] = change(entries[key])
        if update_checksum:
            header["tensors"][name]["sha256"] = io._sha256(entries[key].tobytes())

    rewrite(path, apply)


def test_tensor_changed_behind_the_checksums(saved):
    """A tensor rewritten by another tool (valid zip CRC) no longer matches its SHA-256."""
    _, path = saved
    change_tensor(path, "hidden.weight", lambda w: w ^ np.uint32(1))
    with pytest.raises(io.CorruptedFileError, match="hidden.weight.*SHA-256"):
        io.load(path)


def test_missing_tensor(saved):
    _, path = saved
    rewrite(path, lambda header, entries: entries.pop(io.PARAM_PREFIX + "hidden.weight"))
    with pytest.raises(io.CorruptedFileError, match="missing.*hidden.weight"):
        io.load(path)


def test_pad_bits_set(saved):
    _, path = saved
    # Each pixel's 7 channels are padded to a 64-bit row: bit 31 of every word is padding.
    change_tensor(path, "hidden.weight", lambda w: w | np.uint32(1 << 31), update_checksum=True)
    with pytest.raises(io.CorruptedFileError, match="pad bits"):
        io.load(path)


def test_header_contradicts_architecture(saved):
    _, path = saved

    def widen(header, entries):
        header["layers"][8]["units"] = 68

    rewrite(path, widen)
    with pytest.raises(io.CorruptedFileError, match="hidden.weight"):
        io.load(path)


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_wrong_version(saved, version):
    _, path = saved
    rewrite(path, lambda header, entries: header.update(version=version))
    with pytest.raises(io.VersionError, match=f"version {version!r}") as err:
        io.load(path)
    assert ("upgrade" in str(err.value)) == (version == 2)


def test_other_packing(saved):
    _, path = saved
    rewrite(path, lambda header, entries: header["packing"].update(word_bits=64))
    with pytest.raises(io.VersionError, match="packs binary weights"):
        io.load(path)


def test_foreign_files(tmp_path):
    cases = {
        "text.npz": b"hello, I am a text file\n" * 10,
        "random.npz": np.random.default_rng(0).bytes(5000),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "array.npy", np.arange(10))
    np.savez(tmp_path / "other.npz", weights=np.ones(3), bias=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("readme.txt", "not numpy")
    np.savez(tmp_path / "json.npz", header=np.frombuffer(b'{"format": "other"}', np.uint8),
             header_sha256=np.frombuffer(io._sha256(b'{"format": "other"}').encode(), np.uint8))
    for path in sorted(tmp_path.iterdir()):
        with pytest.raises(io.ForeignFileError, match="not an espresso_cl model file"):
            io.load(path)


def test_errors_are_value_errors(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"nope")
    with pytest.raises(ValueError):
        io.load(path)


class _Trap:
    """Unpickling this would create a marker file: loading must never get that far."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_never_unpickles(saved, tmp_path):
    _, path = saved
    _Trap.marker = tmp_path / "code_ran"
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    for key in (io.PARAM_PREFIX + "hidden.weight", io.HEADER):
        np.savez(path, **{**entries, key: trap})
        with pytest.raises(io.ModelFileError):
            io.load(path)
        assert not _Trap.marker.exists()


def test_shipped_model_names():
    with pytest.raises(ValueError, match="no shipped model"):
        io.shipped_model("imagenet")


def test_concurrent_saves_to_one_path_all_succeed(tmp_path):
    # Issue 12: saves from several threads shared one temporary name.
    import threading

    model = float_model().initialize()
    path = tmp_path / "m.npz"
    errors = []

    def save():
        try:
            io.save(model, path)
        except Exception as exc:  # noqa: BLE001 (the test reports whatever went wrong)
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    assert io.load(path).params().keys() == model.params().keys()


def test_save_into_a_missing_folder_names_the_target(tmp_path):
    target = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(FileNotFoundError, match="no/such/model.npz") as caught:
        io.save(float_model().initialize(), target)
    assert ".tmp" not in str(caught.value)
