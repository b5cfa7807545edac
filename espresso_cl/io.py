"""The espresso_cl model file: architecture and parameters in one versioned, checked file.

A model file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` arrays) read with
``allow_pickle=False``, so loading never runs code from the file. Its entries:

``header``         uint8: UTF-8 JSON describing the model (below)
``header_sha256``  uint8: the SHA-256 of ``header``'s bytes, as 64 ASCII hex digits
``param/<name>``   one array per parameter, ``<name>`` = ``<layer>.<parameter>``, in the form
                   :meth:`Sequential.params` gives: binary weights packed 1 bit each in
                   little-endian uint32 words, everything else little-endian float32

The header holds ``format`` ('espresso_cl.model'), ``version``, ``packing`` (the bit layout
of packed weights), ``input_shape``, ``input_dtype``, ``layers`` (each layer's
:meth:`Layer.config`), ``tensors`` (name -> dtype, shape, sha256 of the array's bytes) and a
free-form ``metadata`` object. docs/models.md is the full specification.

Reading trusts nothing in the file, so that a damaged or hostile file raises a
:class:`ModelFileError` naming the file, never another exception, a hang, or an allocation
beyond the file's size: only a regular file is opened (a FIFO would hang the reader, a device
such as /dev/zero never end); every zip entry read must be stored as it is (no compression, no
encryption); each entry's .npy header is checked (no Python objects, the dtype and shape the
JSON header lists, as many bytes as the entry holds) before its data is read; the JSON header
is at most :data:`MAX_HEADER_BYTES`, holds finite numbers only (no ``NaN`` / ``Infinity``, which
:func:`save` never writes), and each of its fields is checked, type and range, before use.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import reprlib
import stat
import struct
import tokenize
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .layers import layer_from_config
from .layout import ROW_ALIGN_BITS, STORAGE_WORD_BITS
from .model import INPUT_DTYPES, Sequential

FORMAT_NAME = "espresso_cl.model"
# Version 2 added explicit padding amounts ([[top, bottom], [left, right]]) to convolution and
# pooling layers. save writes the oldest version that holds the model, so a model without them
# stays a version-1 file that older espresso_cl reads, byte for byte as before.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
PACKING = {"word_bits": STORAGE_WORD_BITS, "row_align_bits": ROW_ALIGN_BITS, "bit_order": "lsb-first",
           "set_bit": "+1"}
HEADER, HEADER_SHA256, PARAM_PREFIX = "header", "header_sha256", "param/"
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SEARCH = 22 + 65535  # the end record plus the longest zip comment
# Zip entry flags zipfile cannot read (encrypted, patched data, strong encryption); io.save
# never sets them.
_ZIP_UNREADABLE_FLAGS = 0x1 | 0x20 | 0x40
# The JSON header is the one entry parsed into Python objects (several times its size), so it
# is capped; the shipped models' headers are about 7 KiB.
MAX_HEADER_BYTES = 4 << 20
# Elements per input sample: the kernels take sizes as 32-bit ints.
MAX_INPUT_ELEMENTS = 2**31 - 1
TENSOR_DTYPES = ("float32", "uint32")  # the stored forms Sequential.params gives
_NOT_REGULAR = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)",
                stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFSOCK: "a socket"}
SHIPPED_MODELS = ("mnist_mlp", "mnist_cnn")


class ModelFileError(ValueError):
    """A model file cannot be loaded; the subclass says why."""


class ForeignFileError(ModelFileError):
    """The file is not an espresso_cl model file."""


class TruncatedFileError(ModelFileError):
    """The file ends early (an interrupted copy or download)."""


class CorruptedFileError(ModelFileError):
    """The file's bytes do not match its checksums, or its content contradicts itself."""


class VersionError(ModelFileError):
    """The file is an espresso_cl model file of a format version this code does not read."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_bytes_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _version_for(model: Sequential) -> int:
    """The oldest format version that holds ``model``."""
    explicit = any(not isinstance(layer.config().get("padding", "same"), str) for layer in model.layers)
    return 2 if explicit else 1


def save(model: Sequential, path, metadata: dict | None = None) -> None:
    """Write ``model`` (every parameter set) to ``path``; ``metadata`` is any JSON-able dict
    kept in the header (training details, accuracy). The file is replaced atomically."""
    missing = {layer.name: layer.missing_params() for layer in model.layers if layer.missing_params()}
    if missing:
        raise ValueError(f"cannot save a model whose parameters are not set: {missing}")
    params = {name: np.ascontiguousarray(value) for name, value in model.params().items()}
    header = {
        "format": FORMAT_NAME,
        "version": _version_for(model),
        "packing": PACKING,
        "input_shape": list(model.input_shape),
        "input_dtype": model.input_dtype,
        "layers": [layer.config() for layer in model.layers],
        "tensors": {name: {"dtype": value.dtype.name, "shape": list(value.shape),
                           "sha256": _sha256(value.tobytes())}
                    for name, value in params.items()},
        "metadata": metadata or {},
    }
    try:
        header_bytes = json.dumps(header, indent=1, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"metadata must be plain JSON (dicts, lists, strings, finite numbers): {exc}") from None
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(f"the model's header would be {len(header_bytes):,} bytes, over the "
                         f"{MAX_HEADER_BYTES:,} a model file allows: make the metadata smaller")
    entries = {HEADER: _as_bytes_array(header_bytes),
               HEADER_SHA256: _as_bytes_array(_sha256(header_bytes).encode()),
               **{PARAM_PREFIX + name: value for name, value in params.items()}}
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save the model to {path}: folder {path.parent} does not exist")
    # A file of our own beside the target ("x": never someone else's; a random part, so that
    # threads and processes saving to one path never share one), renamed over it whole, so a
    # reader never sees half a model; open() keeps the user's umask, unlike mkstemp.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    created = False
    try:
        with open(tmp, "xb") as f:
            created = True
            _write_npz(f, entries)
        os.replace(tmp, path)
    except BaseException:
        if created:
            tmp.unlink(missing_ok=True)
        raise


def _write_npz(f, entries: dict) -> None:
    """What ``np.savez`` writes, less the time of writing: the same model gives the same bytes
    (zip entries dated 1980-01-01, the zip epoch), so a file can be compared and reproduced."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, value in entries.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            with archive.open(info, "w", force_zip64=True) as entry:  # as np.savez (numpy gh-10776)
                np.lib.format.write_array(entry, np.asanyarray(value), allow_pickle=False)


def _regular_file_size(path: Path) -> int:
    """The size of ``path``, which must be a regular file (links followed). Reading a FIFO
    would hang and a device such as /dev/zero never ends, so they are refused before opening;
    a missing or unreadable path raises the OSError that open() would."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "a special file")
        raise ForeignFileError(f"{path} is not an espresso_cl model file: it is {kind}, not a "
                               f"regular file")
    return info.st_size


def _has_end_record(tail: bytes, tail_start: int) -> bool:
    """Whether ``tail`` (the file from offset ``tail_start`` on) ends with a zip end record whose
    central directory ends where the record begins, as in a complete archive."""
    at = tail.rfind(_ZIP_END)
    while at >= 0:
        record = tail[at:at + 22]
        if len(record) == 22:
            directory_size, directory_offset, comment = struct.unpack("<IIH", record[12:])
            if directory_offset + directory_size == tail_start + at and at + 22 + comment == len(tail):
                return True
        at = tail.rfind(_ZIP_END, 0, at)
    return False


def _check_container(f, size: int, path: Path) -> None:
    """Tell a foreign file from a truncated model file before the zip reader guesses."""
    tail_start = max(0, size - _ZIP_END_SEARCH)
    magic = f.read(len(_ZIP_MAGIC))
    f.seek(tail_start)
    tail = f.read()
    if len(magic) < len(_ZIP_MAGIC) and _ZIP_MAGIC.startswith(magic):
        raise TruncatedFileError(f"{path} is truncated: {size} bytes, not even a zip header")
    if magic != _ZIP_MAGIC:
        raise ForeignFileError(f"{path} is not an espresso_cl model file: it is not a NumPy .npz "
                               f"(zip) archive (it starts with {magic!r})")
    if not _has_end_record(tail, tail_start):
        raise TruncatedFileError(f"{path} is truncated: the zip archive's end record is missing "
                                 f"({size:,} bytes present)")


@contextmanager
def _archive(path: Path):
    """The model file's zip archive, once the checks that need no entry read have passed."""
    size = _regular_file_size(path)
    with open(path, "rb") as f:
        _check_container(f, size, path)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, ValueError, NotImplementedError) as exc:
            # ValueError: a name flagged UTF-8 that is not; NotImplementedError: a zip version
            # above what zipfile reads (io.save writes 4.5).
            raise CorruptedFileError(f"{path} is corrupted: its zip directory is unreadable ({exc})") from None
        with archive:
            # A sound zip's entries do not overlap, so they add up to less than the file; entries
            # that overlap could make a small file read as many large tensors.
            if sum(info.compress_size for info in archive.infolist()) > size:
                raise CorruptedFileError(f"{path} is corrupted: its zip entries add up to more than "
                                         f"the file's {size:,} bytes")
            yield archive


def _entries(archive: zipfile.ZipFile) -> set:
    """The names of the archive's .npy entries, as NumPy names them (without ``.npy``)."""
    return {name[:-len(".npy")] for name in archive.namelist() if name.endswith(".npy")}


def _npy_header(stream) -> tuple:
    """``(shape, fortran_order, dtype)`` from the .npy header at the start of ``stream``; a
    ValueError if it cannot be read."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(stream)
    if version not in readers:
        raise ValueError(f".npy format version {version}")
    try:
        return readers[version](stream)
    except (TypeError, tokenize.TokenError, RecursionError, MemoryError) as exc:
        # numpy reads the header's text (10,000 characters at most) with ast.literal_eval, which
        # besides ValueError raises these on text it cannot parse: an unhashable key, an open
        # string, operators nested too deep for Python's parser.
        raise ValueError(f"unreadable .npy header ({type(exc).__name__}: {exc})") from None


def _read_array(archive: zipfile.ZipFile, key: str, path: Path, dtype: np.dtype,
                shape: tuple | None) -> np.ndarray:
    """Entry ``key``: a .npy array of ``dtype`` and ``shape`` (None: the header's byte string,
    1-D, at most MAX_HEADER_BYTES). Its zip record and .npy header are checked, and the bytes
    they declare compared with the entry's size, before the data is read."""
    info = archive.getinfo(key + ".npy")
    if (info.compress_type != zipfile.ZIP_STORED or info.flag_bits & _ZIP_UNREADABLE_FLAGS
            or info.compress_size != info.file_size):
        raise CorruptedFileError(f"{path}: entry {key!r} is not stored as it is (zip method "
                                 f"{info.compress_type}, flags {info.flag_bits:#x}, {info.file_size:,} "
                                 f"bytes in {info.compress_size:,}); model files neither compress nor "
                                 f"encrypt their entries")
    try:
        with archive.open(info) as stream:
            found_shape, fortran_order, found_dtype = _npy_header(stream)
            if found_dtype.hasobject:
                raise CorruptedFileError(f"{path}: entry {key!r} holds Python objects (pickled data), "
                                         f"which a model file never does")
            if shape is None:  # the header's bytes: any length up to the cap
                fits = len(found_shape) == 1 and found_shape[0] <= MAX_HEADER_BYTES
                expected = f"(n,) with n <= {MAX_HEADER_BYTES:,}"
            else:
                fits, expected = found_shape == shape, shape
            if found_dtype != dtype or not fits or fortran_order:
                raise CorruptedFileError(f"{path}: entry {key!r} is {found_dtype} {found_shape}"
                                         f"{' in Fortran order' if fortran_order else ''}; expected "
                                         f"{dtype} {expected}")
            # numpy caps a .npy header at 10,000 characters, so this product is cheap to take.
            data_bytes = info.file_size - stream.tell()
            if dtype.itemsize * math.prod(found_shape) != data_bytes:
                raise CorruptedFileError(f"{path} is corrupted: entry {key!r} declares {dtype} "
                                         f"{found_shape} but holds {data_bytes:,} bytes of data")
            # A copy, writable as np.load's arrays are.
            return np.frombuffer(stream.read(data_bytes), dtype).reshape(found_shape).copy()
    except ModelFileError:
        raise
    except zipfile.BadZipFile as exc:
        raise CorruptedFileError(f"{path} is corrupted: entry {key!r} fails its zip check ({exc})") from None
    except (ValueError, OSError, EOFError) as exc:
        # Besides the .npy header's errors: an entry offset past what seek takes (ValueError,
        # OSError), an entry that runs past the end of the file (EOFError).
        raise CorruptedFileError(f"{path} is corrupted: entry {key!r} is not a readable .npy array "
                                 f"({exc})") from None


def _finite(text: str) -> float:
    """JSON number hook: io.save writes finite numbers only, so ``NaN``, ``Infinity`` and a
    fraction or exponent beyond float range (``1e400``, which Python reads as infinity) are
    refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is not finite")
    return value


def _parse_header(header_bytes: bytes, path: Path):
    try:
        return json.loads(header_bytes.decode(), parse_float=_finite, parse_constant=_finite)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForeignFileError(f"{path}: its header is not JSON ({exc}), so it is not an espresso_cl "
                               f"model file") from None
    except (ValueError, RecursionError) as exc:
        # _finite's refusal; an integer longer than Python converts (sys.get_int_max_str_digits);
        # nesting deeper than the recursion limit.
        raise CorruptedFileError(f"{path} is corrupted: its header is JSON that io.save never "
                                 f"writes ({exc})") from None


def _is_size(value) -> bool:
    # An integer >= 0; Python counts true as 1, JSON and this format do not.
    return type(value) is int and value >= 0


def _is_tensor_record(record) -> bool:
    return (isinstance(record, dict) and record.get("dtype") in TENSOR_DTYPES
            and isinstance(record.get("shape"), list) and all(map(_is_size, record["shape"]))
            and isinstance(record.get("sha256"), str)
            and re.fullmatch("[0-9a-f]{64}", record["sha256"]) is not None)


# The header fields the reader uses: field -> (whether a value is valid, what is expected).
_FIELDS = {
    # The product in floats: exact this far, and never a huge integer however long the list.
    "input_shape": (lambda v: isinstance(v, list) and len(v) > 0 and all(_is_size(s) and s > 0 for s in v)
                    and math.prod(map(float, v)) <= MAX_INPUT_ELEMENTS,
                    f"a non-empty list of positive integers, {MAX_INPUT_ELEMENTS:,} elements at most"),
    "input_dtype": (lambda v: v in INPUT_DTYPES, f"one of {INPUT_DTYPES}"),
    "layers": (lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v),
               "a list of layer configurations (objects)"),
    "tensors": (lambda v: isinstance(v, dict), "an object: tensor name -> record"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
}


def _header(archive: zipfile.ZipFile, path: Path) -> dict:
    names = _entries(archive)
    if HEADER not in names or HEADER_SHA256 not in names:
        listed = sorted(names)[:8]
        raise ForeignFileError(f"{path} is a NumPy archive but not an espresso_cl model file: it has "
                               f"no {HEADER!r} entry (entries: {listed}{' ...' if len(names) > 8 else ''})")
    header_bytes = _read_array(archive, HEADER, path, np.dtype(np.uint8), None).tobytes()
    digest = _read_array(archive, HEADER_SHA256, path, np.dtype(np.uint8), (64,)).tobytes()
    if _sha256(header_bytes).encode() != digest:
        raise CorruptedFileError(f"{path} is corrupted: the header does not match its SHA-256")
    header = _parse_header(header_bytes, path)
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ForeignFileError(f"{path} is not an espresso_cl model file (format {reprlib.repr(found)}, "
                               f"expected {FORMAT_NAME!r})")
    version = header.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # true == 1 to Python
        newer = type(version) is int and version > FORMAT_VERSION
        raise VersionError(f"{path} is an espresso_cl model file of format version "
                           f"{reprlib.repr(version)}; this espresso_cl reads versions {READABLE_VERSIONS}"
                           + (" (upgrade espresso_cl to read it)" if newer else ""))
    if header.get("packing") != PACKING:
        raise VersionError(f"{path} packs binary weights as {reprlib.repr(header.get('packing'))}; "
                           f"this espresso_cl packs them as {PACKING}")
    for field, (valid, expected) in _FIELDS.items():
        if not valid(header.get(field)):
            found = reprlib.repr(header[field]) if field in header else "missing"
            raise CorruptedFileError(f"{path}: the header's {field!r} is {found}; expected {expected}")
    if version < 2 and any(not isinstance(config.get("padding", "same"), str) for config in header["layers"]):
        raise CorruptedFileError(f"{path}: a version-1 file with explicit padding amounts, which only "
                                 f"version 2 has")
    for name, record in header["tensors"].items():
        if not _is_tensor_record(record):
            raise CorruptedFileError(f"{path}: the header's record of tensor {name!r} is "
                                     f"{reprlib.repr(record)}; expected {{'dtype': one of {TENSOR_DTYPES}, "
                                     f"'shape': a list of integers >= 0, 'sha256': 64 lowercase hex digits}}")
    return header


def read_header(path) -> dict:
    """The checked JSON header of a model file (architecture, tensor list, metadata) without
    reading the parameters. Raises a :class:`ModelFileError` subclass naming what is wrong."""
    path = Path(path)
    with _archive(path) as archive:
        return _header(archive, path)


# What building layers and a model raises on arguments it refuses (ShapeError is a ValueError).
_BUILD_ERRORS = (KeyError, TypeError, ValueError, ArithmeticError)


def _model_from_header(header: dict, path: Path, runtime) -> Sequential:
    layers = []
    for index, config in enumerate(header["layers"]):
        try:
            layers.append(layer_from_config(config))
        except _BUILD_ERRORS as exc:
            raise CorruptedFileError(f"{path}: the header's layer {index} does not build ({exc})") from None
    try:
        return Sequential(layers, header["input_shape"], header["input_dtype"], runtime=runtime)
    except _BUILD_ERRORS as exc:
        raise CorruptedFileError(f"{path}: the header does not describe a valid model ({exc})") from None


def _tensors(archive: zipfile.ZipFile, header: dict, path: Path) -> dict:
    listed = header["tensors"]
    present = {name[len(PARAM_PREFIX):] for name in _entries(archive) if name.startswith(PARAM_PREFIX)}
    if present != set(listed):
        raise CorruptedFileError(f"{path}: the archive's tensors do not match the header's list: "
                                 f"missing {sorted(set(listed) - present)}, "
                                 f"not listed {sorted(present - set(listed))}")
    tensors = {}
    for name, record in listed.items():
        array = _read_array(archive, PARAM_PREFIX + name, path, np.dtype(record["dtype"]),
                            tuple(record["shape"]))
        if _sha256(array.tobytes()) != record["sha256"]:
            raise CorruptedFileError(f"{path} is corrupted: tensor {name!r} does not match its SHA-256")
        tensors[name] = array
    return tensors


def _check_pad_bits(model: Sequential, path: Path) -> None:
    # Kernels rely on the pad bits of packed rows being 0; a file that sets them is damaged
    # even if its checksums agree (it was written by something else).
    for layer in model.layers:
        if hasattr(layer, "weight_pm1"):
            stored = layer.params()["weight"]
            layer.set_params(weight=layer.weight_pm1())
            if not np.array_equal(stored, layer.params()["weight"]):
                raise CorruptedFileError(f"{path}: layer {layer.name!r} weight has pad bits set in its "
                                         f"packed rows")


def load(path, runtime=None) -> Sequential:
    """Read a model file written by :func:`save`; ``runtime`` as for :class:`Sequential`.

    Raises :class:`ForeignFileError`, :class:`TruncatedFileError`, :class:`CorruptedFileError`
    or :class:`VersionError` (all :class:`ModelFileError`, a ValueError) saying what is wrong;
    a missing or unreadable path raises OSError as open() does.
    """
    path = Path(path)
    with _archive(path) as archive:
        header = _header(archive, path)
        model = _model_from_header(header, path, runtime)
        tensors = _tensors(archive, header, path)
    try:
        model.load_stored_params(tensors)
    except (KeyError, ValueError) as exc:
        raise CorruptedFileError(f"{path}: the parameters do not fit the architecture ({exc})") from None
    _check_pad_bits(model, path)
    return model


def shipped_model(name: str) -> Path:
    """Path of a model file shipped with espresso_cl (:data:`SHIPPED_MODELS`): inside the
    installed package first, the source tree's ``models/`` second."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; shipped: {SHIPPED_MODELS}")
    here = Path(__file__).resolve().parent
    candidates = [folder / f"{name}.npz" for folder in (here / "models", here.parent / "models")]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"shipped model {name!r} not found in {[str(p) for p in candidates]}")
