"""Sequential models: build, parameters, predict on NumPy arrays, summary."""

from __future__ import annotations

import copy
import threading
from collections import Counter, OrderedDict

import numpy as np

from . import batching, checks, memory, process
from . import layers as L
from . import ops
from .intmath import size_bucket
from .launch_list import PADDED_ROWS, PLANNED_ROWS, dry_run, record
from .ops import launch
from .plan import MODES, compile_plan
from .runtime import get_runtime
from .tensor import Tensor

INPUT_DTYPES = ("uint8", "float32")


class Sequential:
    """A chain of layers with a fixed per-sample input shape and dtype.

    ``input_dtype='uint8'`` takes 8-bit pixels (a binary first layer reads them by bit planes,
    exactly); ``'float32'`` takes real values (a NumPy dtype or its name). Shapes are checked
    when the model is made, so layers that do not chain fail here, naming the layer.

    A pickled model takes its layers and parameters, not its OpenCL state: it runs on the
    default device of the process that unpickles it (a spawned worker, say). A deep copy keeps
    the runtime.

    ``layers`` is fixed when the model is made (a tuple). A layer object belongs to one model:
    a layer another live model holds is refused (build a new one, or ``copy.deepcopy`` it),
    since building it for a second input would silently change the first model.
    """

    def __init__(self, layers, input_shape, input_dtype="float32", runtime=None):
        self.input_dtype = _dtype_name(input_dtype)
        if isinstance(layers, L.Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"layers must be a list of layers, got {type(layers).__name__}")
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("a model needs at least one layer")
        self.input_shape = checks.shape(input_shape, "input_shape")
        self._adopt_layers()
        self._runtime = runtime
        self._plans: dict = {}
        self._name_layers()
        spec = L.Spec(self.input_shape, self._input_kind)
        for layer in self.layers:
            spec = layer.build(spec)
        self.output_spec = spec

    def _adopt_layers(self):
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, L.Layer):
                raise TypeError(f"layers[{index}] is a {type(layer).__name__}, not a layer")
            if any(layer is other for other in self.layers[:index]):
                raise ValueError(f"layers[{index}] ({layer!r}) appears twice; make a layer per position")
            owner = layer.owner()
            if owner is not None and owner is not self:
                raise ValueError(f"layers[{index}] ({layer!r}) already belongs to another model; build a "
                                 f"new layer, or pass copy.deepcopy(layer)")
        for layer in self.layers:
            layer.adopt(self)

    def __getstate__(self):
        # Layers and parameters travel (to a spawned process, a Ray worker); OpenCL state cannot.
        return {**self.__dict__, "_runtime": None, "_plans": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)
        for layer in self.layers:
            layer.adopt(self)

    def __deepcopy__(self, memo):
        # In the same process a copy can share the runtime: it is made for sharing.
        clone = copy.deepcopy(self.__getstate__(), memo)
        copied = Sequential.__new__(Sequential)
        copied.__setstate__({**clone, "_runtime": self._runtime})
        return copied

    def _name_layers(self):
        seen = set()
        for index, layer in enumerate(self.layers):
            if layer.name is None:
                layer.name = f"{index}_{layer.type_name}"
            if layer.name in seen:
                raise ValueError(f"two layers are named {layer.name!r}")
            seen.add(layer.name)

    # -- parameters ----------------------------------------------------------------------
    @property
    def runtime(self):
        if self._runtime is None:
            self._runtime = get_runtime()
        return self._runtime

    def layer(self, name: str) -> L.Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")

    def initialize(self, seed: int = 0) -> "Sequential":
        """Random parameters in every layer (for timing and tests); returns self."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.initialize(rng)
        return self

    def set_params(self, layer_name: str, **arrays) -> None:
        """Set real-valued parameters of one layer (binary weights keep only their signs)."""
        self.layer(layer_name).set_params(**arrays)

    def params(self) -> dict:
        """``'layer.param'`` -> stored array (binary weights as packed uint32 words)."""
        return {f"{layer.name}.{key}": value for layer in self.layers for key, value in layer.params().items()}

    def load_stored_params(self, stored: dict) -> None:
        """Inverse of :meth:`params`: every parameter from its stored form, checked by name and shape."""
        expected = {f"{layer.name}.{key}": (layer, key, shape, dtype)
                    for layer in self.layers for key, (shape, dtype) in layer.stored_shapes().items()}
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        if missing or extra:
            raise KeyError(f"parameters do not match the model: missing {missing}, unexpected {extra}")
        for full, (layer, key, shape, dtype) in expected.items():
            array = np.asarray(stored[full])
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"parameter {full!r}: expected {np.dtype(dtype).name} {shape}, "
                                 f"got {array.dtype.name} {array.shape}")
            if dtype == np.float32 and not np.all(np.isfinite(array)):
                raise ValueError(f"parameter {full!r} holds NaN or infinity")
            layer.load_stored(key, array)

    # -- running ---------------------------------------------------------------------------
    def _compiled(self, mode: str) -> "_Compiled":
        # A plan holds the parameters it was compiled with: any change since, made through the
        # model or through a layer it handed out, compiles a new one.
        versions = tuple(layer.params_version for layer in self.layers)
        compiled = self._plans.get(mode)
        if compiled is None or compiled.versions != versions:
            missing = {l.name: l.missing_params() for l in self.layers if l.missing_params()}
            if missing:
                raise RuntimeError(f"parameters not set: {missing}; call set_params() or initialize()")
            plan = compile_plan(self.runtime, self.layers, self._input_kind, mode)
            if compiled is not None:
                compiled.release()
            compiled = self._plans[mode] = _Compiled(versions, plan)
        return compiled

    @property
    def _input_kind(self) -> str:
        return "uint8" if self.input_dtype == "uint8" else "float"

    def _check_input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a NumPy array, got {type(x).__name__}")
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            hint = " (add a batch axis: x[None])" if tuple(x.shape) == self.input_shape else ""
            raise ValueError(f"input shape {x.shape} does not match (batch,) + {self.input_shape}{hint}")
        if x.shape[0] == 0:
            raise ValueError("input batch is empty")
        if self.input_dtype == "uint8":
            if x.dtype != np.uint8:
                raise TypeError(f"this model takes uint8 pixels (0..255), got dtype {x.dtype}")
            return np.ascontiguousarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"this model takes real numbers, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("input holds NaN or infinity")
        return x

    def _run(self, x: np.ndarray, mode: str, batch_size: int, classes: bool) -> np.ndarray:
        process.check()
        x = self._check_input(x)
        batch_size = checks.size(batch_size, "batch_size")
        checks.one_of(mode, "mode", MODES)
        compiled = self._compiled(mode)
        rows = self._planned_rows(compiled, min(batch_size, len(x)))
        self._prepare(compiled, batch_size)
        outs = [self._call(compiled, x[start:start + rows], classes) for start in range(0, len(x), rows)]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _upload_form(self, chunk: np.ndarray, plan) -> np.ndarray:
        return chunk if plan.input_kind == "uint8" else chunk.astype(np.float32, copy=False)

    def _forward(self, plan, classes: bool):
        """The device part of a call: input tensor -> the tensor read back."""
        def forward(x: Tensor) -> Tensor:
            out = plan.run(x)
            if classes:
                return ops.argmax(self._as_float(out, plan))
            # Integer accumulators come back as they are (float mode's exact floats: rounded on the host).
            return out if plan.output_kind == "int" else self._as_float(out, plan)
        return forward

    def _host_result(self, out: np.ndarray, plan, classes: bool) -> np.ndarray:
        if not classes and out.dtype == np.float32 and plan.output_kind == "int":
            return np.rint(out).astype(np.int32)  # float mode: exact integers
        return out

    def _call(self, compiled: "_Compiled", chunk: np.ndarray, classes: bool) -> np.ndarray:
        """One run of ``chunk`` through the compiled plan: a replay of its launch list at this
        batch size, recorded on its first run; but the first run at a size of up to
        :data:`PADDED_ROWS` samples replays its bucket's list, recorded while planning
        (:mod:`espresso_cl.launch_list`)."""
        plan = compiled.plan
        chunk = self._upload_form(chunk, plan)
        if launch.TIMING:  # per-kernel timing needs every launch to go through ops.launch
            return self._plain_run(plan, chunk, classes)
        key = (len(chunk), classes)
        with compiled.lock:
            launches = compiled.launch_lists.get(key)
            if launches is None and compiled.first_sighting(key):
                launches = compiled.padded_lists.get((size_bucket(len(chunk)), classes))
            if launches is None:
                compiled.make_room()  # first: the kernel objects of the list it drops serve the new one
                launches, out = record(self.runtime, self._forward(plan, classes), chunk, plan.input_kind)
                compiled.keep(key, launches)
                return self._host_result(out, plan, classes)
            elif key in compiled.launch_lists:
                compiled.launch_lists.move_to_end(key)
        out = launches.replay(chunk)
        if out is None:  # released by another thread's call, or not replayable
            return self._plain_run(plan, chunk, classes)
        return self._host_result(out, plan, classes)

    def _plain_run(self, plan, chunk: np.ndarray, classes: bool) -> np.ndarray:
        out = self._forward(plan, classes)(Tensor.from_numpy(self.runtime, chunk, plan.input_kind))
        return self._host_result(out.numpy(), plan, classes)

    def _build_for(self, compiled: "_Compiled", rows: int) -> None:
        """Make ready, ahead of the calls, whatever a run of up to ``rows`` samples needs.

        A dry run (nothing enqueued) at each power of two up to ``rows``, and ``rows``, for
        both outputs, builds every kernel: launchers choose blocks by the bucket of a size, so
        these are all of them. The launch lists of the buckets up to :data:`PADDED_ROWS` are
        recorded (on zeros). Where the device compiles on a kernel's first launch (its
        quirks), a larger size whose dry run needs a launch not yet made also runs, on zeros.
        And the kernel objects of :data:`_Compiled.LAUNCH_LISTS` launch lists are made now.
        """
        if compiled.built_rows >= rows:
            return
        plan, runtime = compiled.plan, self.runtime
        outputs = (False, True) if len(self.output_spec.shape) == 1 else (False,)
        sizes = sorted({min(1 << k, rows) for k in range(size_bucket(rows).bit_length())} | {rows})
        per_list: Counter = Counter()
        for size in sizes:
            if size <= compiled.built_rows:
                continue
            shape = (size,) + self.input_shape
            launches = []
            for classes in outputs:
                launched = dry_run(runtime, self._forward(plan, classes), shape, plan.input_kind)
                per_list |= Counter((file, name, defines) for file, name, defines, _, _ in launched)
                launches += launched
            zeros = self._upload_form(np.zeros(shape, self.input_dtype), plan)
            if size <= PADDED_ROWS and size == size_bucket(size):
                for classes in outputs:  # (these runs also make the first launches)
                    padded, _ = record(runtime, self._forward(plan, classes), zeros, plan.input_kind)
                    if padded.replayable:
                        compiled.padded_lists[(size, classes)] = padded
            elif runtime.quirks.launch_compiles_past_grid is not None and set(launches) - runtime.compiled_launches:
                for classes in outputs:
                    self._plain_run(plan, zeros, classes)
        for (file, name, defines), count in per_list.items():
            runtime.programs.stock(runtime.programs.program(file, dict(defines)), name,
                                   count * _Compiled.LAUNCH_LISTS)
        compiled.built_rows = rows

    def _prepare(self, compiled: "_Compiled", batch_size: int) -> None:
        """Every batch size up to :data:`~espresso_cl.launch_list.PLANNED_ROWS` (or
        ``batch_size``), as far as it fits, ready before the calls (:meth:`_build_for`)."""
        self._build_for(compiled, self._planned_rows(compiled, max(batch_size, PLANNED_ROWS)))

    def _planned_rows(self, compiled: "_Compiled", rows: int) -> int:
        """``rows``, or fewer where they would not fit the device."""
        if rows > batching.PROBE_SAMPLES and not batching.clearly_fits(rows, self.layers, self.runtime.traits):
            return min(rows, self._rows_that_fit(compiled))
        return rows

    def _rows_that_fit(self, compiled: "_Compiled") -> int:
        """Samples per run that fit the device (:mod:`espresso_cl.batching`), measured once per plan."""
        if compiled.rows_that_fit is None:
            probe = np.zeros((batching.PROBE_SAMPLES,) + self.input_shape, self.input_dtype)
            probe = self._upload_form(probe, compiled.plan)
            footprint = batching.measure(self.runtime.buffers,
                                         lambda: self._plain_run(compiled.plan, probe, classes=False))
            compiled.rows_that_fit = batching.rows_that_fit(footprint, self.runtime.traits)
        return compiled.rows_that_fit

    def launch_count(self, batch_size: int, mode: str = "binary") -> int:
        """Kernel launches one ``predict`` call of ``batch_size`` samples enqueues (one run of
        its recorded launch list), input upload and read-back not counted."""
        batch_size = checks.size(batch_size, "batch_size")
        checks.one_of(mode, "mode", MODES)
        compiled = self._compiled(mode)
        self._prepare(compiled, batch_size)
        rows = self._planned_rows(compiled, batch_size)
        self._call(compiled, np.zeros((rows,) + self.input_shape, self.input_dtype), classes=False)
        return len(compiled.find(rows, classes=False))

    def predict(self, x: np.ndarray, mode: str = "binary", batch_size: int = 256) -> np.ndarray:
        """Forward ``x`` (batch, *input_shape) and return the last layer's output as NumPy.

        Real outputs come back float32, integer accumulators int32, +-1 values float32.
        ``mode='float'`` runs the same network in float32 (the same-device baseline).
        Intermediates stay on the device; only the input and the output cross.
        """
        return self._run(x, mode, batch_size, classes=False)

    def predict_classes(self, x: np.ndarray, mode: str = "binary", batch_size: int = 256) -> np.ndarray:
        """Index of the largest output per sample (first on ties), as int32 (batch,)."""
        if len(self.output_spec.shape) != 1:
            raise ValueError(f"predict_classes needs a flat output, the model gives {self.output_spec.shape}")
        return self._run(x, mode, batch_size, classes=True)

    def release_memory(self) -> None:
        """Give back the device memory this model's runtime keeps idle for reuse
        (:meth:`espresso_cl.runtime.Runtime.release_memory`); the model stays usable."""
        for compiled in self._plans.values():
            compiled.release()
        if self._runtime is not None:
            self._runtime.release_memory()

    @staticmethod
    def _as_float(out: Tensor, plan) -> Tensor:
        return out if out.kind == "float32" or plan.to_float is None else plan.to_float(out)

    # -- reporting --------------------------------------------------------------------------
    def summary(self, file=None) -> str:
        """A table of layers: output shape, value kind, parameter bytes stored vs float32."""
        rows = [("layer", "output", "kind", "params stored", "as float32")]
        total_stored = total_float = 0
        for layer in self.layers:
            stored, as_float = layer.param_bytes()
            total_stored += stored
            total_float += as_float
            spec = layer.output_spec
            rows.append((layer.name, str((None,) + spec.shape), spec.kind, f"{stored:,}", f"{as_float:,}"))
        ratio = f"{total_float / total_stored:.1f}x smaller" if total_stored else "-"
        rows.append(("total", "", "", f"{total_stored:,}", f"{total_float:,}  ({ratio})"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        text = "\n".join(lines)
        print(text, file=file)
        return text


class _Compiled:
    """A model's plan for one mode, the parameter versions it holds, how many samples one of its
    runs may take (measured on first need), the batch sizes its kernels are built for, the
    padded launch lists of the small buckets, and its launch lists by (batch size, output): the
    most recently used :data:`LAUNCH_LISTS`, fewer where their buffers would pass the pool's
    bound (the latest is always kept)."""

    LAUNCH_LISTS = 4

    def __init__(self, versions: tuple, plan):
        self.versions, self.plan = versions, plan
        self.rows_that_fit: int | None = None
        self.built_rows = 0
        self.launch_lists: OrderedDict = OrderedDict()
        self.padded_lists: dict = {}  # (bucket, classes) -> LaunchList, for up to PADDED_ROWS samples
        self._sightings: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def find(self, rows: int, classes: bool):
        """The launch list that runs ``rows`` samples: its own, else its bucket's padded one; or None."""
        own = self.launch_lists.get((rows, classes))
        return own if own is not None else self.padded_lists.get((size_bucket(rows), classes))

    def first_sighting(self, key) -> bool:
        """Whether (batch size, output) ``key`` is new to this plan (remembering the latest 256)."""
        if key in self._sightings:
            return False
        self._sightings[key] = None
        if len(self._sightings) > 256:
            self._sightings.popitem(last=False)
        return True

    def make_room(self) -> None:
        """Drop the least recently used launch list where a new one would pass the bound."""
        while len(self.launch_lists) >= self.LAUNCH_LISTS:
            self.launch_lists.popitem(last=False)[1].release()

    def keep(self, key, launches) -> None:
        """Hold a new launch list (caller holds the lock); the least recently used past the bound go."""
        self.launch_lists[key] = launches
        while len(self.launch_lists) > 1 and (
                len(self.launch_lists) > self.LAUNCH_LISTS
                or sum(l.nbytes for l in self.launch_lists.values()) > memory.POOL_LIMIT_BYTES):
            self.launch_lists.popitem(last=False)[1].release()

    def release(self) -> None:
        """Drop every launch list, their buffers back to the pool."""
        with self.lock:
            for launches in (*self.launch_lists.values(), *self.padded_lists.values()):
                launches.release()
            self.launch_lists.clear()
            self.padded_lists.clear()
            self.built_rows = 0  # the next call prepares again


def _dtype_name(value) -> str:
    """``input_dtype`` as one of :data:`INPUT_DTYPES`, from a name or a NumPy dtype."""
    try:
        name = value if isinstance(value, str) else np.dtype(value).name
    except TypeError:
        name = None
    if name not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES} (a name or a NumPy dtype), got {value!r}")
    return name
