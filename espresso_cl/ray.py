"""Batch prediction on tables, in one process or on a Ray cluster (the ``ray`` extra).

:class:`Predictor` turns one batch of a table (a dict of NumPy arrays, a pandas DataFrame, an
Arrow table or record batch) into classes. It is the callable class Ray Data's
``map_batches`` takes (the model loaded once per actor, the device chosen per actor), and also
the one-process predictor of ``python -m espresso_cl predict``, so that both paths compute the
same thing. :func:`run` is that command's ``--ray`` pipeline: actors that read pieces of
Parquet files themselves and run a Predictor on them.

Models travel to actors as a file path or as the file's bytes, never as pickled OpenCL
objects: a context or a queue belongs to the process that made it. ``ray``, ``pyarrow`` and
``pandas`` are imported where they are needed, since the command line without those extras
imports this module too; ``import ray`` below is the Ray package (imports are absolute).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from typing import Iterator

import numpy as np

from . import checks, settings
from .device import DeviceError
from .io import load
from .plan import MODES
from .runtime import get_runtime


class InputError(ValueError):
    """The input data does not fit the model (shape, dtype, values, a missing column); the
    message names the column and what is wrong."""


# -- a column as the model's input ---------------------------------------------------------

def _reads_as(row_shape: tuple, input_shape: tuple) -> bool:
    """Whether rows of ``row_shape`` are read as ``input_shape``: the same, flat, an image
    without its channel axis when it has one channel, or anything of the right size for a
    model of flat input (in C order). NCHW images and other layouts are refused, not
    reshaped."""
    size = math.prod(input_shape)
    if len(input_shape) == 1:
        return math.prod(row_shape) == size
    return row_shape in (input_shape, (size,)) or (input_shape[-1] == 1 and row_shape == input_shape[:-1])


def _rows_of_numpy(values: np.ndarray, input_shape: tuple, column: str) -> np.ndarray:
    """(n, size) numbers of a NumPy column: an n-D array, or an object array of per-row arrays,
    lists or bytes (how Ray's NumPy batches and pandas hold list and binary cells)."""
    size = math.prod(input_shape)
    if values.dtype == object:
        if len(values) == 0:
            return np.zeros((0, size), np.uint8)
        if any(v is None for v in values):
            raise InputError(f"column {column!r} has missing values (nulls)")
        if all(isinstance(v, (bytes, bytearray)) for v in values):
            lengths = {len(v) for v in values}
            if lengths != {size}:
                raise InputError(f"column {column!r} holds byte strings of {sorted(lengths)[:5]} bytes; "
                                 f"the model takes {input_shape} = {size} bytes per row")
            return np.frombuffer(b"".join(values), np.uint8).reshape(-1, size)
        rows = [np.asarray(v) for v in values]
        shapes = {row.shape for row in rows}
        if len(shapes) != 1:
            raise InputError(f"column {column!r} holds rows of different shapes {sorted(shapes)[:5]}; "
                             f"the model takes {input_shape}")
        values = np.stack(rows)
    if values.ndim < 1 or not _reads_as(tuple(values.shape[1:]), input_shape):
        raise InputError(f"column {column!r} holds rows of shape {tuple(values.shape[1:])}; the model "
                         f"takes {input_shape} (NHWC) or flat rows of {size} values")
    return values.reshape(len(values), size)


def _rows_of_arrow(array, input_shape: tuple, column: str) -> np.ndarray:
    """(n, size) numbers of an Arrow column: (nested) lists or fixed-size lists of numbers,
    binary values of one byte per number, or an extension type such as Ray's tensors. Lists
    and binary values are read in place (their values buffer), not row by row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):
        return _rows_of_numpy(array.to_numpy(zero_copy_only=False), input_shape, column)
    size, n = math.prod(input_shape), len(array)
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type) or \
            pa.types.is_fixed_size_binary(array.type):
        _no_nulls(array, column)
        lengths = pc.binary_length(array).to_numpy()
        if n and (lengths.min() != size or lengths.max() != size):
            raise InputError(f"column {column!r} holds byte strings of {lengths.min()} to {lengths.max()} "
                             f"bytes; the model takes {input_shape} = {size} bytes per row")
        if pa.types.is_fixed_size_binary(array.type):
            start = array.offset * size
        else:
            offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
            start = np.frombuffer(array.buffers()[1], offset_type)[array.offset]
        return np.frombuffer(array.buffers()[-1], np.uint8)[start:start + n * size].reshape(n, size)
    per_row = 1
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or \
            pa.types.is_fixed_size_list(array.type):
        _no_nulls(array, column)
        lengths = pc.list_value_length(array).to_numpy()
        if len(lengths) and lengths.min() != lengths.max():
            raise InputError(f"column {column!r} holds lists of {lengths.min()} to {lengths.max()} values; "
                             f"the model takes {input_shape} = {size} per row")
        per_row *= int(lengths[0]) if len(lengths) else 1
        array = array.flatten()
    _no_nulls(array, column)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise InputError(f"column {column!r} holds {array.type}, not numbers")
    if n and per_row != size:
        raise InputError(f"column {column!r} holds {per_row} values per row; the model takes "
                         f"{input_shape} = {size}")
    return array.to_numpy(zero_copy_only=False).reshape(n, size)


def _no_nulls(array, column: str) -> None:
    if array.null_count:
        raise InputError(f"column {column!r} has {array.null_count} missing values (nulls)")


def _typed(rows: np.ndarray, input_dtype: str, column: str) -> np.ndarray:
    """``rows`` in the model's dtype: uint8 models take integers 0..255, float models real
    numbers (finite); nothing is rounded or clipped."""
    if input_dtype == "uint8":
        if rows.dtype.kind not in "iu":
            raise InputError(f"column {column!r} holds {rows.dtype}; this model takes integers 0..255 "
                             f"(uint8 pixels)")
        if rows.dtype != np.uint8 and rows.size and (rows.min() < 0 or rows.max() > 255):
            raise InputError(f"column {column!r} holds values from {rows.min()} to {rows.max()}; this "
                             f"model takes integers 0..255 (uint8 pixels)")
        return rows.astype(np.uint8, copy=False)
    if rows.dtype.kind not in "iuf":
        raise InputError(f"column {column!r} holds {rows.dtype}; this model takes real numbers")
    rows = rows.astype(np.float32, copy=False)
    if not np.isfinite(rows).all():
        raise InputError(f"column {column!r} holds NaN or infinity (or numbers beyond float32)")
    return rows


def _is_arrow(values) -> bool:
    return type(values).__module__.startswith("pyarrow")


def model_input(values, input_shape: tuple, input_dtype: str, column: str) -> np.ndarray:
    """One column's rows as a model's input, (n,) + ``input_shape`` of ``input_dtype``.

    ``values``: a NumPy array (n, *shape) or (n, size), or of per-row arrays, lists or bytes;
    an Arrow array of lists, fixed-size lists or binary values (one byte per number); a pandas
    Series of any of these. Rows are read in C order. Raises :class:`InputError`.
    """
    if type(values).__module__.startswith("pandas"):
        values = values.array if hasattr(values.array, "__arrow_array__") else values.to_numpy()
        if not isinstance(values, np.ndarray):
            import pyarrow as pa
            values = pa.array(values)
    if _is_arrow(values):
        rows = _rows_of_arrow(values, tuple(input_shape), column)
    else:
        rows = _rows_of_numpy(np.asarray(values), tuple(input_shape), column)
    return _typed(rows, input_dtype, column).reshape((-1,) + tuple(input_shape))


def _numpy(values) -> np.ndarray:
    """A column (NumPy, Arrow or pandas) as a NumPy array."""
    if _is_arrow(values):
        return values.to_numpy(zero_copy_only=False)
    return np.asarray(values)


def top_k_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """int32 (n, k): the k largest outputs per row, largest first, the lower class first on
    ties (so column 0 is ``predict_classes``'s answer)."""
    return np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k].astype(np.int32)


# -- the predictor ----------------------------------------------------------------------------

def actor_device() -> str:
    """The device of a Predictor given none: ``gpu`` in a Ray actor that Ray gave GPUs (Ray
    sets CUDA_VISIBLE_DEVICES, so the first GPU it sees is its own); else ``$ESPRESSO_DEVICE``
    if set; else ``cpu`` (PoCL) in a Ray actor, leaving a node's GPUs to the actors given
    them, and ``auto`` elsewhere."""
    try:
        import ray
    except ImportError:
        return settings.device_spec()
    in_actor = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    if in_actor and ray.get_gpu_ids():
        return "gpu"
    return settings.device_spec() if settings.device_spec_is_set() or not in_actor else "cpu"


def _load_model(model, runtime):
    if isinstance(model, (bytes, bytearray, memoryview)):
        # io.load reads a path; the file is gone once the model is in memory.
        with tempfile.TemporaryDirectory(prefix="espresso_cl-") as folder:
            path = os.path.join(folder, "model.npz")
            with open(path, "wb") as f:
                f.write(model)
            return load(path, runtime=runtime)
    if isinstance(model, (str, os.PathLike)):
        return load(model, runtime=runtime)
    raise TypeError(f"model must be a model file's path or its bytes, got {type(model).__name__}")


class Predictor:
    """Classes of a table's batches: ``ds.map_batches(Predictor, fn_constructor_kwargs=
    {"model": path_or_bytes, "column": "image"}, compute=ray.data.ActorPoolStrategy(size=N),
    batch_size=B)``.

    ``model``: an espresso_cl model file's path (seen by every worker) or its bytes.
    ``column``: the input column (default: the batch's only column besides ``id_column``),
    read with :func:`model_input`. ``id_column``: a column copied to the output as it is.
    ``device``: a device spec as ``ESPRESSO_DEVICE`` takes (default :func:`actor_device`).
    ``top_k``: also the k best classes; ``logits``: also the model's outputs. ``mode`` and
    ``batch_size`` (samples per device run) as for :meth:`Sequential.predict`.

    A call takes a dict of NumPy arrays, a pandas DataFrame or an Arrow table or record
    batch, and returns a dict of NumPy arrays: ``id_column`` (if given), ``class`` int32 (n,),
    ``top_k`` int32 (n, k), ``logits`` (n, classes) float32 or int32.
    """

    def __init__(self, model, column: str | None = None, id_column: str | None = None, *,
                 device: str | None = None, top_k: int = 0, logits: bool = False,
                 mode: str = "binary", batch_size: int = 256):
        self.model = _load_model(model, get_runtime(device if device is not None else actor_device()))
        outputs = self.model.output_spec.shape
        if len(outputs) != 1:
            raise ValueError(f"the model's output is {outputs}, not one score per class")
        self.top_k = checks.integer(top_k, "top_k", 0, outputs[0])
        self.logits = checks.boolean(logits, "logits")
        self.mode = checks.one_of(mode, "mode", MODES)
        self.batch_size = checks.size(batch_size, "batch_size")
        self.column, self.id_column = column, id_column
        # Kernels build now, on the actor's start, rather than inside the first batch; the
        # output's dtype is what an empty batch's logits take.
        scores = self.model.predict(np.zeros((1,) + self.model.input_shape, self.model.input_dtype), self.mode)
        self._no_scores = scores[:0]

    def _column(self, batch) -> str:
        names = list(batch.keys()) if isinstance(batch, dict) else list(batch.column_names) \
            if _is_arrow(batch) else list(batch.columns)
        for name in (self.column, self.id_column):
            if name is not None and name not in names:
                raise InputError(f"the batch has no column {name!r}; its columns: {names}")
        if self.column is not None:
            return self.column
        candidates = [name for name in names if name != self.id_column]
        if len(candidates) != 1:
            raise InputError(f"the batch has columns {names}: name the input with column=...")
        return candidates[0]

    def __call__(self, batch) -> dict:
        column = self._column(batch)
        x = model_input(batch[column], self.model.input_shape, self.model.input_dtype, column)
        out = {} if self.id_column is None else {self.id_column: _numpy(batch[self.id_column])}
        if not (self.top_k or self.logits) and len(x):
            out["class"] = self.model.predict_classes(x, self.mode, self.batch_size)
            return out
        # predict refuses an empty batch; an empty Parquet file or block gives one.
        scores = self.model.predict(x, self.mode, self.batch_size) if len(x) else self._no_scores
        out["class"] = scores.argmax(axis=1).astype(np.int32)  # first on ties, as predict_classes
        if self.top_k:
            out["top_k"] = top_k_classes(scores, self.top_k)
        if self.logits:
            out["logits"] = scores
        return out


# -- the pipeline on a Ray cluster ------------------------------------------------------------

# A worker's exception reaches the driver as the text of Ray's own (the original is not kept
# across processes): the line "<module>.<class>: <message>" of the worker's traceback.
_WORKER_ERRORS = {f"{kind.__module__}.{kind.__name__}: ": kind for kind in (InputError, DeviceError)}


def _worker_error(exc: BaseException):
    """The InputError or DeviceError an actor raised, rebuilt from ``exc``; None if none."""
    for line in reversed(str(exc).splitlines()):
        for prefix, kind in _WORKER_ERRORS.items():
            if line.startswith(prefix):
                return kind(line[len(prefix):])
    return None


# Rows an actor passes to Predictor at a time: 8 device batches, fewer Python steps per image.
BATCHES_PER_CALL = 8
# Pieces per actor at the least, so that a fast actor takes work from a slow one.
PIECES_PER_ACTOR = 4


def _pieces(files: list, actors: int, rows: int) -> list:
    """The Parquet files cut into pieces {file, row_group, start, stop}: whole row groups, or
    ranges of at least ``rows`` rows when there are fewer than PIECES_PER_ACTOR groups per
    actor. A range's reader decodes its row group from the start, which costs little beside
    the model (decoding is about 1/15 of the CNN's time per row here)."""
    import pyarrow.parquet as pq

    metadata = [pq.read_metadata(file) for file in files]
    groups = sum(m.num_row_groups for m in metadata)
    per_group = math.ceil(PIECES_PER_ACTOR * actors / max(groups, 1))
    pieces = []
    for file, m in zip(files, metadata):
        for group in range(m.num_row_groups):
            count = m.row_group(group).num_rows
            step = max(rows, math.ceil(count / per_group))
            pieces += [{"file": str(file), "row_group": group, "start": start, "stop": min(start + step, count)}
                       for start in range(0, count, step)]
    return pieces


class _PieceReader:
    """Predictor's results for pieces of Parquet files, which the actor reads itself with
    pyarrow: pixels never cross Ray's object store, and Ray's Parquet reader, which took about
    5 times pyarrow's time here, in processes beside the kernels, is not used."""

    def __init__(self, columns: list, rows: int, **predictor):
        self.predictor = Predictor(**predictor)
        self.columns, self.rows = columns, rows

    def _batches(self, file: str, group: int, start: int, stop: int) -> Iterator:
        import pyarrow.parquet as pq

        offset = 0
        for batch in pq.ParquetFile(file).iter_batches(self.rows, row_groups=[group], columns=self.columns):
            low, high = max(start - offset, 0), min(stop - offset, len(batch))
            offset += len(batch)
            if low < high:
                yield batch.slice(low, high - low)
            if offset >= stop:
                return

    def __call__(self, pieces: dict) -> dict:
        results = []
        for file, group, start, stop in zip(pieces["file"], pieces["row_group"], pieces["start"], pieces["stop"]):
            results += [self.predictor(batch) for batch in self._batches(str(file), int(group), int(start), int(stop))]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}


def run(model: bytes, files: list, column: str, id_column: str | None = None, *, actors: int = 1,
        gpus_per_actor: float = 0, address: str | None = None, batch_size: int = 256,
        **predictor) -> Iterator[dict]:
    """Predictor's results (dicts of NumPy arrays, in the input's row order) over Parquet
    ``files`` on a Ray cluster: the one at ``address`` (``auto``: the running one), else Ray
    already initialised in this process, else a local one started here and shut down at the
    end. Every node must be able to read the files at these paths.

    ``actors`` actors, each given ``gpus_per_actor`` GPUs and one CPU (less when the cluster
    has fewer than ``actors`` + 1 CPUs, which Ray's own tasks need), each reading its pieces
    of the files (:func:`_pieces`). ``batch_size`` and ``predictor``: the other
    :class:`Predictor` arguments. An :class:`InputError` or DeviceError raised in an actor is
    raised here as itself (its first line). Ray Data's console log is turned down to warnings.
    """
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(address=address, logging_level="WARNING", **local)
    try:
        # Ray Data logs its progress when its bars are off: the command line draws its own bar.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        rows = BATCHES_PER_CALL * batch_size
        pieces = _pieces(files, actors, rows)
        dataset = ray.data.from_items(pieces, override_num_blocks=len(pieces))  # a task per piece
        # The dataset's own context (a copy of the process's, which the step below inherits).
        dataset.context.execution_options.preserve_order = True  # row numbers and .npy rows follow the input
        dataset.context.enable_progress_bars = False
        dataset = dataset.map_batches(
            _PieceReader, fn_constructor_kwargs=dict(
                columns=[column] + ([id_column] if id_column else []), rows=rows, model=model, column=column,
                id_column=id_column, batch_size=batch_size, **predictor),
            compute=ray.data.ActorPoolStrategy(size=actors), batch_size=1, batch_format="numpy",
            num_cpus=min(1.0, max(cpus - 1, 0.1) / actors), num_gpus=gpus_per_actor or None)
        try:
            yield from dataset.iter_batches(batch_format="numpy", batch_size=None)
        except Exception as exc:
            known = _worker_error(exc)
            if known is None:
                raise
            raise known from None
    finally:
        if started:
            ray.shutdown()
