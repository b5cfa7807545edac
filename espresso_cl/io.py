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
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .layers import layer_from_config
from .layout import ROW_ALIGN_BITS, STORAGE_WORD_BITS
from .model import Sequential

FORMAT_NAME = "espresso_cl.model"
FORMAT_VERSION = 1
PACKING = {"word_bits": STORAGE_WORD_BITS, "row_align_bits": ROW_ALIGN_BITS, "bit_order": "lsb-first",
           "set_bit": "+1"}
HEADER, HEADER_SHA256, PARAM_PREFIX = "header", "header_sha256", "param/"
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SEARCH = 22 + 65535  # the end record plus the longest zip comment
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


def save(model: Sequential, path, metadata: dict | None = None) -> None:
    """Write ``model`` (every parameter set) to ``path``; ``metadata`` is any JSON-able dict
    kept in the header (training details, accuracy). The file is replaced atomically."""
    missing = {layer.name: layer.missing_params() for layer in model.layers if layer.missing_params()}
    if missing:
        raise ValueError(f"cannot save a model whose parameters are not set: {missing}")
    params = {name: np.ascontiguousarray(value) for name, value in model.params().items()}
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
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
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be plain JSON (dicts, lists, strings, finite numbers): {exc}") from None
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
            np.savez(f, **entries)
        os.replace(tmp, path)
    except BaseException:
        if created:
            tmp.unlink(missing_ok=True)
        raise


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


def _check_container(path: Path) -> None:
    """Tell a foreign file from a truncated model file before the zip reader guesses."""
    size = path.stat().st_size
    tail_start = max(0, size - _ZIP_END_SEARCH)
    with open(path, "rb") as f:
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


def _read_entry(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except zipfile.BadZipFile as exc:
        raise CorruptedFileError(f"{path} is corrupted: entry {key!r} fails its zip check ({exc})") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptedFileError(f"{path} is corrupted: entry {key!r} is not a readable array ({exc})") from None


def _header(archive, path: Path) -> dict:
    names = set(archive.files)
    if HEADER not in names or HEADER_SHA256 not in names:
        listed = sorted(names)[:8]
        raise ForeignFileError(f"{path} is a NumPy archive but not an espresso_cl model file: it has "
                               f"no {HEADER!r} entry (entries: {listed}{' ...' if len(names) > 8 else ''})")
    raw, digest = (_read_entry(archive, key, path) for key in (HEADER, HEADER_SHA256))
    if raw.dtype != np.uint8 or raw.ndim != 1 or digest.dtype != np.uint8 or digest.ndim != 1:
        raise ForeignFileError(f"{path}: its {HEADER!r} entries are not byte strings, so it is not "
                               f"an espresso_cl model file")
    header_bytes = raw.tobytes()
    if _sha256(header_bytes).encode() != digest.tobytes():
        raise CorruptedFileError(f"{path} is corrupted: the header does not match its SHA-256")
    try:
        header = json.loads(header_bytes.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForeignFileError(f"{path}: its header is not JSON ({exc}), so it is not an espresso_cl "
                               f"model file") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ForeignFileError(f"{path} is not an espresso_cl model file (format {found!r}, "
                               f"expected {FORMAT_NAME!r})")
    version = header.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise VersionError(f"{path} is an espresso_cl model file of format version {version!r}; this "
                           f"espresso_cl reads version {FORMAT_VERSION}"
                           + (" (upgrade espresso_cl to read it)" if newer else ""))
    if header.get("packing") != PACKING:
        raise VersionError(f"{path} packs binary weights as {header.get('packing')}; this espresso_cl "
                           f"packs them as {PACKING}")
    return header


@contextmanager
def _archive(path: Path):
    _check_container(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            yield archive
    except zipfile.BadZipFile as exc:
        raise CorruptedFileError(f"{path} is corrupted: its zip directory is unreadable ({exc})") from None


def read_header(path) -> dict:
    """The checked JSON header of a model file (architecture, tensor list, metadata) without
    reading the parameters. Raises a :class:`ModelFileError` subclass naming what is wrong."""
    path = Path(path)
    with _archive(path) as archive:
        return _header(archive, path)


def _model_from_header(header: dict, path: Path, runtime) -> Sequential:
    try:
        layers = [layer_from_config(config) for config in header["layers"]]
        return Sequential(layers, header["input_shape"], header["input_dtype"], runtime=runtime)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptedFileError(f"{path}: the header does not describe a valid model ({exc})") from None


def _tensors(archive, header: dict, path: Path) -> dict:
    listed = header.get("tensors")
    if not isinstance(listed, dict):
        raise CorruptedFileError(f"{path}: the header has no tensor list")
    present = {name[len(PARAM_PREFIX):] for name in archive.files if name.startswith(PARAM_PREFIX)}
    if present != set(listed):
        raise CorruptedFileError(f"{path}: the archive's tensors do not match the header's list: "
                                 f"missing {sorted(set(listed) - present)}, "
                                 f"not listed {sorted(present - set(listed))}")
    tensors = {}
    for name, record in listed.items():
        array = _read_entry(archive, PARAM_PREFIX + name, path)
        try:
            expected = (np.dtype(record["dtype"]), tuple(record["shape"]))
            digest = record["sha256"]
        except (KeyError, TypeError) as exc:
            raise CorruptedFileError(f"{path}: the header's record of tensor {name!r} is malformed ({exc})") from None
        if (array.dtype, array.shape) != expected:
            raise CorruptedFileError(f"{path}: tensor {name!r} is {array.dtype} {array.shape}, the header "
                                     f"says {expected[0]} {expected[1]}")
        if _sha256(np.ascontiguousarray(array).tobytes()) != digest:
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
    or :class:`VersionError` (all :class:`ModelFileError`, a ValueError) saying what is wrong.
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
