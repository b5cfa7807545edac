"""The command line: ``python -m espresso_cl predict | info | devices | tune`` (the
``espresso_cl`` console script).

``predict`` reads its input in chunks of ``--batch-size`` samples (a .npy file memory-mapped,
a .npz entry as a stream, Parquet by record batches, images file by file), so memory stays
bounded whatever the input's size. It writes its output under a temporary name beside the
target, renamed whole at the end and removed on any failure or interrupt, so no partial
output is ever left. Bad input (a format, shape, dtype, value or column the model cannot take;
an unreadable file; a device that does not exist) ends it with exit code 2 and one line on
stderr. The batches go through :class:`espresso_cl.ray.Predictor`, in this process or, with
``--ray``, in actors on a Ray cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
import uuid
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from pyopencl import CompilerWarning

from . import io, settings, tuner, tuning_db
from .device import DeviceError, all_devices, compile_problem, select_device, traits_of
from .import_onnx import from_onnx
from .importing import UnsupportedModelError
from .plan import MODES
from .ray import InputError, Predictor, model_input
from .ray import run as run_on_ray
from .tuning import FAMILIES, profile_for

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PARQUET_SUFFIXES = (".parquet", ".pq")
# list / binary / tensor columns can hold a sample; plain numbers and strings cannot.
_ARRAY_TYPE_TESTS = ("is_list", "is_large_list", "is_fixed_size_list", "is_binary", "is_large_binary",
                     "is_fixed_size_binary")


class CommandError(Exception):
    """A request the command cannot carry out: a format, an option, a missing extra."""


def _extra(module: str, extra: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CommandError(f"{what} needs {module.split('.')[0]}: pip install 'espresso_cl[{extra}]'") from None


# -- the model -------------------------------------------------------------------------------

def _model(path: Path, input_dtype: str | None):
    """(model, bytes of its espresso_cl model file): a model file, or an ONNX file imported
    here. Loading touches no OpenCL, so a driver may start Ray after it."""
    if path.suffix.lower() == ".onnx":
        if input_dtype is None:
            raise CommandError(f"{path}: an ONNX model needs --input-dtype uint8 or float32 (what its input holds)")
        try:
            model = from_onnx(str(path), input_dtype=input_dtype)
        except ImportError as exc:  # the onnx package; the message says how to install it
            raise CommandError(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="espresso_cl-") as folder:
            saved = Path(folder) / "model.npz"
            io.save(model, saved, metadata={"imported_from": path.name})
            return model, saved.read_bytes()
    if input_dtype is not None:
        raise CommandError("--input-dtype applies to ONNX models; a model file records its own")
    return io.load(path), path.read_bytes()


# -- inputs ----------------------------------------------------------------------------------

def _listed(folder: Path, suffixes: tuple) -> list:
    """The files under ``folder`` with one of ``suffixes``, in path order, hidden ones (a part
    of the path starting with '.' or '_', as Spark's _SUCCESS) left out."""
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file() and
                   not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)), key=str)


@dataclass
class _Source:
    """An input: its sample count, and its batches (what Predictor takes) of a given size."""

    rows: int
    column: str                     # the batches' input column
    id_column: str | None           # the batches' id column; None: the output numbers the rows
    batches: Callable[[int], Iterator]
    parquet: list | None = None     # its Parquet files, which --ray reads


def _npy_source(path: Path) -> _Source:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # not a .npy file, or Python objects (which cannot be mapped)
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim == 0:
        raise InputError(f"{path}: holds a single number, not samples")
    return _Source(len(array), path.name, None,
                   lambda rows: ({path.name: array[start:start + rows]} for start in range(0, len(array), rows)))


def _npy_header(stream, where: str) -> tuple:
    """(shape, dtype) from the header of a .npy stream, which must be C-ordered numbers."""
    try:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f".npy format version {version} is not supported")
        shape, fortran_order, dtype = read[version](stream)
    except ValueError as exc:
        raise InputError(f"{where}: not a readable .npy array ({exc})") from None
    problem = "Python objects" if dtype.hasobject else "a single number" if not shape else \
        "a Fortran-ordered array" if fortran_order else ""
    if problem:
        raise InputError(f"{where}: holds {problem}; save a C-ordered array of samples")
    return shape, dtype


def _npz_source(path: Path, name: str | None) -> _Source:
    # Read as a stream from the zip entry (compressed or not), never whole.
    try:
        with zipfile.ZipFile(path) as archive:
            names = [entry[:-4] for entry in archive.namelist() if entry.endswith(".npy")]
            if name is None and len(names) != 1:
                raise CommandError(f"{path} holds arrays {names}: name one with --column")
            if name not in names and name is not None:
                raise InputError(f"{path} has no array {name!r}; it holds {names}")
            name = name or names[0]
            with archive.open(name + ".npy") as stream:
                shape, _ = _npy_header(stream, f"{path}:{name}")
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None

    def batches(rows: int) -> Iterator[dict]:
        where = f"{path}:{name}"
        try:
            with zipfile.ZipFile(path) as archive, archive.open(name + ".npy") as stream:
                shape, dtype = _npy_header(stream, where)
                row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
                for start in range(0, shape[0], rows):
                    count = min(rows, shape[0] - start)
                    data = stream.read(count * row_bytes)
                    if len(data) != count * row_bytes:
                        raise InputError(f"{where}: the array ends after row {start + len(data) // row_bytes} "
                                         f"of {shape[0]}")
                    yield {where: np.frombuffer(data, dtype).reshape((count,) + shape[1:])}
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputError(f"{where}: damaged ({exc})") from None

    return _Source(shape[0], f"{path}:{name}", None, batches)


def _parquet_source(path: Path, column: str | None, id_column: str | None) -> _Source:
    pa = _extra("pyarrow", "cli", "Parquet input")
    pq = importlib.import_module("pyarrow.parquet")
    files = _listed(path, PARQUET_SUFFIXES) if path.is_dir() else [path]
    rows = 0
    for file in files:
        try:
            metadata = pq.read_metadata(file)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{file}: not a readable Parquet file ({exc})") from None
        schema = metadata.schema.to_arrow_schema()
        if column is None:
            arrays = [f.name for f in schema if f.name != id_column and
                      any(getattr(pa.types, test)(f.type) for test in _ARRAY_TYPE_TESTS)]
            if len(arrays) != 1:
                raise CommandError(f"{file} has {len(arrays) or 'no'} list or binary columns {arrays or ''}; "
                                   f"name the input with --column (its columns: {schema.names})")
            column = arrays[0]
        for name in (column, id_column):
            if name is not None and name not in schema.names:
                raise InputError(f"{file} has no column {name!r}; its columns: {schema.names}")
        rows += metadata.num_rows
    wanted = [column] + ([id_column] if id_column else [])

    def batches(size: int) -> Iterator:
        for file in files:
            try:
                yield from pq.ParquetFile(file).iter_batches(batch_size=size, columns=wanted)
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"{file}: unreadable ({exc})") from None

    return _Source(rows, column, id_column, batches, [str(f) for f in files])


def _image_source(path: Path, input_shape: tuple, resize: bool) -> _Source:
    if len(input_shape) != 3 or input_shape[2] not in (1, 3):
        raise CommandError(f"image folders need a model that takes images (H, W, 1) or (H, W, 3); this "
                           f"one takes {input_shape}")
    image = _extra("PIL.Image", "images", "image folders")
    height, width, channels = input_shape
    files = _listed(path, IMAGE_SUFFIXES)

    def pixels(file: Path) -> np.ndarray:
        try:
            with image.open(file) as opened:
                picture = opened.convert("L" if channels == 1 else "RGB")
        except OSError as exc:  # Pillow's UnidentifiedImageError included
            raise InputError(f"{file}: not a readable image ({exc})") from None
        if picture.size != (width, height):
            if not resize:
                raise InputError(f"{file} is {picture.size[0]}x{picture.size[1]} pixels; the model takes "
                                 f"{width}x{height} (pass --resize to resize)")
            picture = picture.resize((width, height), image.Resampling.BILINEAR)
        return np.asarray(picture, np.uint8).reshape(input_shape)

    def batches(rows: int) -> Iterator[dict]:
        for start in range(0, len(files), rows):
            chunk = files[start:start + rows]
            yield {"pixels": np.stack([pixels(f) for f in chunk]),
                   "file": np.array([str(f.relative_to(path)) for f in chunk], dtype=object)}

    return _Source(len(files), "pixels", "file", batches)


def _open_input(path: Path, model, args) -> _Source:
    """The input at ``path``, by its form: .npy, .npz, Parquet file or folder, image folder."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        kind = "parquet" if _listed(path, PARQUET_SUFFIXES) else "images"
    elif suffix in PARQUET_SUFFIXES:
        kind = "parquet"
    elif suffix in (".npy", ".npz"):
        kind = suffix[1:]
    else:
        raise CommandError(f"{path}: unknown input format; give a .npy or .npz array, a Parquet file or "
                           f"folder, or a folder of PNG/JPEG images")
    for option, value, kinds in (("--column", args.column, ("npz", "parquet")),
                                 ("--id-column", args.id_column, ("parquet",)),
                                 ("--resize", args.resize, ("images",))):
        if value and kind not in kinds:
            raise CommandError(f"{option} applies to {' and '.join(kinds)} input, not {kind}")
    if kind == "npy":
        return _npy_source(path)
    if kind == "npz":
        return _npz_source(path, args.column)
    if kind == "parquet":
        return _parquet_source(path, args.column, args.id_column)
    return _image_source(path, model.input_shape, args.resize)


# -- outputs ---------------------------------------------------------------------------------

class _ParquetOutput:
    """Columns: the id (the input's id column, else ``row``, the row number), ``class``, and
    ``top_k`` and ``logits`` as fixed-size lists when asked for."""

    def __init__(self, path: Path, id_column: str | None):
        self.pa = _extra("pyarrow", "cli", "Parquet output")
        self.pq = importlib.import_module("pyarrow.parquet")
        self.path, self.id_column, self.writer, self.written = path, id_column, None, 0

    def write(self, result: dict) -> None:
        pa, n = self.pa, len(result["class"])
        columns = {"row": np.arange(self.written, self.written + n)} if self.id_column is None else {}
        for name, values in result.items():
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]) \
                if values.ndim == 2 else pa.array(values)
        table = pa.table(columns)
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.written += n

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _NpyOutput:
    """A structured array of ``rows`` records in the input's order: ``class`` and, when asked
    for, ``top_k`` (k,) and ``logits`` (classes,). Ids do not fit a .npy file."""

    def __init__(self, path: Path, rows: int):
        self.path, self.rows, self.array, self.written = path, rows, None, 0

    def write(self, result: dict) -> None:
        if self.array is None:
            fields = [(name, values.dtype, values.shape[1:]) for name, values in result.items()]
            self.array = np.lib.format.open_memmap(self.path, "w+", np.dtype(fields), (self.rows,))
        n = len(result["class"])
        for name, values in result.items():
            self.array[name][self.written:self.written + n] = values
        self.written += n

    def close(self) -> None:
        if self.array is not None:
            self.array.flush()
            self.array = None  # unmaps the file


@contextlib.contextmanager
def _output(path: Path, source: _Source):
    """A writer of ``path`` that writes a temporary file beside it, renamed over ``path`` once
    every row is written; on any failure (KeyboardInterrupt included) the temporary is removed."""
    suffix = path.suffix.lower()
    if suffix not in PARQUET_SUFFIXES + (".npy",):
        raise CommandError(f"{path}: unknown output format; write .parquet or .npy")
    if suffix == ".npy" and source.id_column is not None:
        raise CommandError(f"{path}: a .npy output holds no ids (rows follow the input's order); write "
                           f".parquet to keep the {source.id_column!r} column")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    # Our own name ("x" mode: never someone else's file); open() keeps the user's umask.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    open(temporary, "xb").close()
    try:
        writer = _NpyOutput(temporary, source.rows) if suffix == ".npy" else \
            _ParquetOutput(temporary, source.id_column)
        try:
            yield writer
        finally:
            writer.close()
        if writer.written != source.rows:
            raise RuntimeError(f"{writer.written} results for {source.rows} samples")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class _Silent:
    """The progress bar when none is shown."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(wanted: bool | None, total: int):
    """A tqdm bar with images/s on stderr: on a terminal, or when ``wanted`` says so."""
    if not (sys.stderr.isatty() if wanted is None else wanted):
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        if wanted:
            raise CommandError("--progress needs tqdm: pip install 'espresso_cl[cli]'") from None
        return _Silent()
    return tqdm(total=total, unit=" images", file=sys.stderr, dynamic_ncols=True)


# -- commands --------------------------------------------------------------------------------

def _predict(args) -> int:
    model, model_bytes = _model(Path(args.model), args.input_dtype)
    classes = model.output_spec.shape
    if len(classes) != 1:
        raise CommandError(f"{args.model}: the model's output is {classes}, not one score per class")
    if args.top_k > classes[0]:
        raise CommandError(f"--top-k {args.top_k}: the model has {classes[0]} classes")
    source = _open_input(Path(args.input), model, args)
    if source.rows == 0:
        raise InputError(f"{args.input} holds no samples")
    output, given = Path(args.output).resolve(), Path(args.input).resolve()
    if output == given or given in output.parents:
        raise CommandError(f"{args.output}: the output would replace or join the input")
    options = dict(top_k=args.top_k, logits=args.logits, mode=args.mode, batch_size=args.batch_size)
    if args.ray is None:
        predictor = Predictor(model_bytes, source.column, source.id_column,
                              device=args.device or settings.device_spec(), **options)
        results = (predictor(batch) for batch in source.batches(args.batch_size))
    elif not source.parquet:
        raise CommandError("--ray reads Parquet input (a file or a folder, which every node can read)")
    else:
        # The first rows here: a wrong column draws its message before a cluster starts.
        first = next(source.batches(16))
        model_input(first[source.column], model.input_shape, model.input_dtype, source.column)
        results = run_on_ray(model_bytes, source.parquet, source.column, source.id_column, actors=args.actors,
                             gpus_per_actor=args.gpus_per_actor, address=args.ray or None,
                             device=args.device, **options)
    bar = _progress(args.progress, source.rows)
    try:
        with _output(Path(args.output), source) as writer:
            for result in results:
                if len(result["class"]):  # an empty block's result has no types to give the file
                    writer.write(result)
                    bar.update(len(result["class"]))
    finally:
        bar.close()
    return 0


def _info(args) -> int:
    path = Path(args.model)
    model, _ = _model(path, args.input_dtype)
    print(f"{path}: input {model.input_shape} {model.input_dtype}, output {model.output_spec.shape}")
    model.summary(file=sys.stdout)
    if path.suffix.lower() != ".onnx":
        header = io.read_header(path)
        print(f"format version {header['version']}; metadata:")
        print(json.dumps(header["metadata"], indent=2, sort_keys=True))
    return 0


def _devices(args) -> int:
    with warnings.catch_warnings():
        # Each device's trial build (device.compile_problem) warns of any compiler output.
        warnings.simplefilter("ignore", CompilerWarning)
        return _list_devices()


def _list_devices() -> int:
    picks, failed = {}, False
    for label, spec in ((f"{settings.DEVICE}={settings.device_spec()}", None), ("auto", "auto")):
        try:
            picks[label] = select_device(spec).int_ptr
        except DeviceError as exc:
            picks[label], failed = f"nothing: {exc}", True
    rows = [("P:D", "kind", "platform / device", "profile", "")]
    where = {}
    for p, d, dev in all_devices():
        traits = traits_of(dev)
        where[dev.int_ptr] = f"{p}:{d}"
        try:
            profile = profile_for(traits).name
        except ValueError as exc:  # an ESPRESSO_PARAMS profile that cannot run there
            profile = f"none ({exc})"
        problem = compile_problem(dev)
        rows.append((f"{p}:{d}", traits.kind, f"{traits.platform} / {traits.name}", profile,
                     f"cannot build kernels: {problem}" if problem else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip())
    for label, pick in picks.items():
        print(f"{label} picks {where.get(pick, pick)}")
    return EXIT_BAD_INPUT if failed else 0


def _tune(args) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompilerWarning)  # candidates' build logs
        base, traits, results = tuner.tune(args.device, args.families, args.quick, args.budget,
                                           log=(lambda line: None) if args.quiet else print)
    print(f"# {traits.describe()}, hand-set profile {base.name}; times are medians on this machine as it is now")
    print(tuner.table(results))
    for r in results:
        for values, why in r.rejected:
            print(f"# {r.family}: rejected {values}: {why}")
        if r.stopped_by_budget:
            print(f"# {r.family}: the time budget ended the search after {r.tried} candidates")
    new = tuner.entry(traits, base, results)
    path = args.output or settings.tuning_db_path()
    if new is None:
        print("# no family beat its hand-set values; the database is unchanged")
        return 0
    tuning_db.store(path, new)
    print(f"# written to {path} (device {traits.name}, driver {traits.driver}, profile {base.name})")
    return 0


def _families(text: str) -> tuple:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"families are {', '.join(FAMILIES)}; got {text!r}")
    return names


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _gpus(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="espresso_cl", description="Binary neural network inference with OpenCL.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify an array, Parquet data or a folder of images")
    predict.set_defaults(run=_predict)
    predict.add_argument("model", metavar="MODEL", help="an espresso_cl model file (.npz) or an ONNX file")
    predict.add_argument("input", metavar="INPUT",
                         help=".npy, .npz, a Parquet file or folder, or a folder of PNG/JPEG images")
    predict.add_argument("-o", "--output", required=True, metavar="OUTPUT", help=".parquet or .npy")
    predict.add_argument("--column",
                         help="the input column (Parquet; default: the only list or binary column) or array (.npz)")
    predict.add_argument("--id-column", help="a Parquet column copied to the output (default: the row number)")
    predict.add_argument("--top-k", type=_positive, default=0, metavar="K", help="also the K best classes")
    predict.add_argument("--logits", action="store_true", help="also the model's outputs")
    predict.add_argument("--batch-size", type=_positive, default=256, help="samples per device run (default 256)")
    predict.add_argument("--mode", choices=MODES, default="binary", help="float: the float32 baseline")
    predict.add_argument("--device",
                         help=f"the OpenCL device, as {settings.DEVICE} takes (default: {settings.DEVICE}, else auto)")
    predict.add_argument("--resize", action="store_true", help="resize images to the model's size (else refused)")
    predict.add_argument("--input-dtype", choices=("uint8", "float32"), help="what an ONNX model's input holds")
    shown = predict.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="a progress bar even when stderr is not a terminal")
    shown.add_argument("--quiet", action="store_false", dest="progress", default=None, help="no progress bar")
    predict.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                         help="run on Ray: a local cluster, or the one at ADDRESS ('auto': the running one)")
    predict.add_argument("--actors", type=_positive, default=1, help="Ray actors (default 1)")
    predict.add_argument("--gpus-per-actor", type=_gpus, default=0, help="GPUs each Ray actor takes (default 0: CPU)")

    info = commands.add_parser("info", help="a model's layers and its file's metadata")
    info.set_defaults(run=_info)
    info.add_argument("model", metavar="MODEL")
    info.add_argument("--input-dtype", choices=("uint8", "float32"), help="what an ONNX model's input holds")

    devices = commands.add_parser("devices", help="the OpenCL devices, their tuning profiles, which one is used")
    devices.set_defaults(run=_devices)

    tune = commands.add_parser("tune", help="search the kernels' tile sizes for a device; keep the fastest")
    tune.set_defaults(run=_tune)
    tune.add_argument("--device",
                      help=f"the OpenCL device, as {settings.DEVICE} takes (default: {settings.DEVICE}, else auto)")
    tune.add_argument("--quick", action="store_true", help="small shapes, few candidates (about half a minute)")
    tune.add_argument("--families", type=_families, default=FAMILIES, metavar="F[,F...]",
                      help=f"kernel families to tune (default all: {','.join(FAMILIES)})")
    tune.add_argument("--budget", type=_seconds, metavar="SECONDS",
                      help=f"search time shared by the families (default {tuner.DEFAULT_BUDGET_S:.0f}, "
                           f"--quick {tuner.QUICK_BUDGET_S:.0f})")
    tune.add_argument("--output", metavar="PATH",
                      help=f"the database to write (default ${settings.TUNING_DB}, else the user cache)")
    tune.add_argument("--quiet", action="store_true", help="only the table, not each candidate")
    return parser


# What the user can fix: exit code 2 and one line, no traceback.
_BAD_INPUT = (CommandError, InputError, io.ModelFileError, UnsupportedModelError, DeviceError, OSError)


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("espresso_cl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _BAD_INPUT as exc:
        print(f"espresso_cl: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
