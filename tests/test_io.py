"""The model file: exact round trip, and a clear error for every kind of bad file."""

import json
import os
import resource
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from io import BytesIO
from pathlib import Path

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


def rewrite(path, change=lambda header, entries: None, edit=None):
    """Rewrite a model file's entries through ``change(header, entries)``, then the header's JSON
    text through ``edit(text)``, keeping the header checksum valid, so that the changes reach
    the checks behind it."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    header = json.loads(entries[io.HEADER].tobytes())
    change(header, entries)
    text = json.dumps(header)
    raw = (edit(text) if edit else text).encode()
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
    assert header["format"] == io.FORMAT_NAME and header["version"] == 1  # no explicit padding
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


@pytest.mark.parametrize("version", [3, 0, "1"])
def test_wrong_version(saved, version):
    _, path = saved
    rewrite(path, lambda header, entries: header.update(version=version))
    with pytest.raises(io.VersionError, match=f"version {version!r}") as err:
        io.load(path)
    assert ("upgrade" in str(err.value)) == (version == 3)


def pytorch_padded_model():
    layers = [ec.BinaryConv2D(6, 3, stride=2, padding=1), ec.BatchNorm(), ec.Sign(),
              ec.BinaryConv2D(5, 3, padding=((0, 1), (1, 1))),
              ec.MaxPool2D(3, stride=2, padding=((1, 1), (0, 1))), ec.BatchNorm(), ec.Sign(),
              ec.Conv2D(4, (3, 2), padding=((2, 0), (0, 1))), ec.Flatten(), ec.Dense(3)]
    return ec.Sequential(layers, input_shape=(10, 8, 2), input_dtype="uint8")


def test_explicit_padding_is_version_2_and_round_trips(tmp_path, rng):
    model = pytorch_padded_model().initialize(seed=3)
    path = tmp_path / "padded.npz"
    io.save(model, path)
    header = io.read_header(path)
    assert header["version"] == 2
    assert header["layers"][0]["padding"] == [[1, 1], [1, 1]]
    loaded = io.load(path)
    assert [l.config() for l in loaded.layers] == [l.config() for l in model.layers]
    x = rng.integers(0, 256, (3, 10, 8, 2), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(forward(loaded.layers, x), forward(model.layers, x))
    # Explicit amounts are version 2's: in a file that says version 1 they are damage.
    rewrite(path, lambda header, entries: header.update(version=1))
    with pytest.raises(io.CorruptedFileError, match="version-1 file with explicit padding"):
        io.load(path)


def test_models_without_explicit_padding_stay_version_1(saved):
    # Old readers read them, and today's files stay byte-identical.
    assert io.read_header(saved[1])["version"] == 1


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


# -- Issue 12: load / read_header raise only ModelFileError, never hang, never over-allocate ----

def npy_bytes(array=None, header=None, data=b""):
    """A .npy file's bytes: ``array``'s, or a hand-written ``header`` dict followed by ``data``."""
    out = BytesIO()
    if array is not None:
        np.lib.format.write_array(out, array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(data)
    return out.getvalue()


def write_npz(path, members):
    """An uncompressed zip of ``members`` (name -> bytes), as np.savez writes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def edit_central_directory(path, entry, offset, value):
    """Set the 16-bit field at ``offset`` of ``entry``'s central directory record (8: flags,
    10: compression method), behind zipfile's back, as damage would."""
    data = bytearray(path.read_bytes())
    count, _, at = struct.unpack_from("<HII", data, len(data) - 22 + 10)
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46:at + 46 + name_len] == entry.encode():
            struct.pack_into("<H", data, at + offset, value)
            path.write_bytes(bytes(data))
            return
        at += 46 + name_len + extra_len + comment_len
    raise KeyError(entry)


@pytest.mark.parametrize("entry", ["header.npy", "param/hidden.weight.npy"])
@pytest.mark.parametrize("offset, value", [(10, 8), (10, 12), (10, 99), (8, 0x1), (8, 0x20), (8, 0x40)])
def test_zip_method_or_flags_edited(saved, entry, offset, value):
    # Issue 12: NotImplementedError / RuntimeError from zipfile.
    _, path = saved
    edit_central_directory(path, entry, offset, value)
    with pytest.raises(io.CorruptedFileError, match="not stored as it is"):
        io.load(path)


def test_compressed_npz(saved):
    model, path = saved
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    np.savez_compressed(path, **entries)
    with pytest.raises(io.CorruptedFileError, match="'header' is not stored as it is"):
        io.load(path)


def test_header_entry_not_npy(saved):
    # Issue 12: AttributeError (np.load hands back the raw bytes of a non-.npy entry).
    _, path = saved
    with np.load(path, allow_pickle=False) as archive:
        members = {f"{key}.npy": npy_bytes(archive[key]) for key in archive.files}
    members["header.npy"] = bytes(np.load(path)["header"])
    write_npz(path, members)
    with pytest.raises(io.CorruptedFileError, match="'header' is not a readable .npy array"):
        io.load(path)


@pytest.mark.parametrize("edit, why", [
    (lambda t: t.replace('"metadata": {', '"metadata": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ","),
     "recursion"),
    (lambda t: t.replace('"metadata": {', '"metadata": {"big": 1' + "0" * 5000 + ","), "digits"),
    (lambda t: t.replace('"input_shape": [9, 7, 2]', '"input_shape": [Infinity]'), "Infinity is not finite"),
    (lambda t: t.replace('"metadata": {', '"metadata": {"x": NaN,'), "NaN is not finite"),
    (lambda t: t.replace('"eps": 0.001', '"eps": -Infinity'), "-Infinity is not finite"),
    (lambda t: t.replace('"eps": 0.001', '"eps": 1e400'), "1e400 is not finite"),
], ids=["deep-nesting", "5000-digit-int", "infinity-in-input-shape", "nan", "-infinity", "1e400"])
def test_header_json_that_save_never_writes(saved, edit, why):
    # Issue 12: RecursionError, ValueError (int digit limit), OverflowError.
    _, path = saved
    rewrite(path, edit=lambda text: edit(text) if edit(text) != text else pytest.fail("edit missed"))
    with pytest.raises(io.CorruptedFileError, match=f"JSON that io.save never writes.*{why}"):
        io.read_header(path)


@pytest.mark.parametrize("field, value", [
    ("version", True), ("version", 1.0),
])
def test_version_must_be_an_integer(saved, field, value):
    _, path = saved
    rewrite(path, lambda header, entries: header.update({field: value}))
    with pytest.raises(io.VersionError, match=f"version {value!r}"):
        io.load(path)


@pytest.mark.parametrize("field, value", [
    ("input_shape", [9, 7.0, 2]), ("input_shape", [9, True, 2]), ("input_shape", ["9", 7, 2]),
    ("input_shape", []), ("input_shape", [9, 0, 2]), ("input_shape", [9, -7, 2]),
    ("input_shape", [2**16, 2**16]), ("input_shape", 9), ("input_shape", None),
    ("input_dtype", "int8"), ("input_dtype", ["uint8"]),
    ("layers", {"0": {}}), ("layers", [["type", "sign"]]), ("layers", "sign"),
    ("tensors", []), ("metadata", []), ("metadata", None),
])
def test_header_fields_are_checked_before_use(saved, field, value):
    _, path = saved
    rewrite(path, lambda header, entries: header.update({field: value}))
    with pytest.raises(io.CorruptedFileError, match=f"header's '{field}' is"):
        io.read_header(path)


@pytest.mark.parametrize("record", [
    {"dtype": "float64"}, {"dtype": "object"}, {"shape": [256, -1]}, {"shape": [256.0, 2]},
    {"shape": "256"}, {"shape": [True, 2]}, {"sha256": "AB" * 32}, {"sha256": "ab"}, {"sha256": None},
])
def test_tensor_records_are_checked(saved, record):
    _, path = saved
    rewrite(path, lambda header, entries: header["tensors"]["hidden.weight"].update(record))
    with pytest.raises(io.CorruptedFileError, match="header's record of tensor 'hidden.weight' is"):
        io.read_header(path)


@pytest.mark.parametrize("key", ["dtype", "shape", "sha256"])
def test_tensor_record_key_missing(saved, key):
    _, path = saved
    rewrite(path, lambda header, entries: header["tensors"]["hidden.weight"].pop(key))
    with pytest.raises(io.CorruptedFileError, match="header's record of tensor 'hidden.weight' is"):
        io.load(path)


@pytest.mark.parametrize("field", ["input_shape", "input_dtype", "layers", "tensors", "metadata"])
def test_header_field_missing(saved, field):
    _, path = saved
    rewrite(path, lambda header, entries: header.pop(field))
    with pytest.raises(io.CorruptedFileError, match=f"header's '{field}' is missing"):
        io.load(path)


def test_npy_declaring_1e10_elements_is_refused_before_allocating(saved):
    # Issue 12: numpy allocated the declared 40 GB before the shape was compared with the header.
    _, path = saved
    key = io.PARAM_PREFIX + "hidden.weight"
    rewrite(path, lambda header, entries: header["tensors"]["hidden.weight"].update(shape=[10**10]))
    with np.load(path, allow_pickle=False) as archive:
        members = {f"{name}.npy": npy_bytes(archive[name]) for name in archive.files}
        data = archive[key].tobytes()
    members[key + ".npy"] = npy_bytes(header={"descr": "<u4", "fortran_order": False, "shape": (10**10,)},
                                      data=data)
    write_npz(path, members)
    tracemalloc.start()
    try:
        with pytest.raises(io.CorruptedFileError, match=r"'param/hidden.weight' declares uint32 \(10000000000,\)"):
            io.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * path.stat().st_size + (16 << 20), peak


def test_declared_shape_larger_than_the_entry(saved):
    _, path = saved
    rewrite(path, lambda header, entries: header["tensors"]["hidden.weight"].update(shape=[10**6, 10**6]))
    with pytest.raises(io.CorruptedFileError, match=r"'param/hidden.weight' is uint32 \(67, 24\); expected uint32 \(1000000, 1000000\)"):
        io.load(path)


def test_overlapping_entries_are_refused(saved):
    """Entries whose bytes overlap could make a small file read as many large tensors."""
    _, path = saved
    data = bytearray(path.read_bytes())
    directory = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]
    # The first entry's sizes: all of the file up to the central directory (over the others).
    struct.pack_into("<II", data, directory + 20, directory - 100, directory - 100)
    path.write_bytes(bytes(data))
    with pytest.raises(io.CorruptedFileError, match="entries add up to more than the file's"):
        io.load(path)


def test_header_size_is_capped(saved, monkeypatch, tmp_path):
    _, path = saved
    monkeypatch.setattr(io, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(io.CorruptedFileError, match=r"'header' is uint8 \(\d+,\); expected uint8 \(n,\) with n <= 1,000"):
        io.read_header(path)
    with pytest.raises(ValueError, match="over the 1,000 a model file allows"):
        io.save(float_model().initialize(), tmp_path / "small.npz", metadata={"x": "y" * 1000})


def _load_in_child(path, seconds=20):
    """What io.load(path) raises, as "<class> <message>", run in a child process with a time and
    memory limit, so that a regression fails the test instead of hanging it or eating memory."""
    code = ("import sys\nfrom espresso_cl import io\ntry:\n    io.load(sys.argv[1])\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    limit = 4 << 30
    child = subprocess.run([sys.executable, "-c", code, str(path)], cwd=Path(__file__).parent.parent,
                           capture_output=True, text=True, timeout=seconds,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    return child.stdout.strip() or child.stderr


def test_fifo_is_refused_without_opening(tmp_path):
    # Issue 12: opening a FIFO waits for a writer forever.
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    assert _load_in_child(fifo) == (f"ForeignFileError {fifo} is not an espresso_cl model file: it is "
                                    f"a named pipe (FIFO), not a regular file")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused():
    # Issue 12: read until memory ran out.
    assert _load_in_child("/dev/zero") == ("ForeignFileError /dev/zero is not an espresso_cl model "
                                           "file: it is a character device, not a regular file")


def test_directory_is_refused(tmp_path):
    with pytest.raises(io.ForeignFileError, match=f"{tmp_path} .*a directory, not a regular file"):
        io.read_header(tmp_path)


def test_missing_path_and_symlink_loop_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "none.npz")
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(OSError):
        io.load(loop)


def test_a_symlink_to_a_model_loads(saved, tmp_path):
    model, path = saved
    link = tmp_path / "link.npz"
    link.symlink_to(path)
    assert io.load(link).params().keys() == model.params().keys()


def test_loaded_parameters_are_writable(saved):
    model, path = saved
    assert all(value.flags.writeable for value in io.load(path).params().values())
