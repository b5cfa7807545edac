"""Sequential models: build, parameters, predict on NumPy arrays, summary."""

from __future__ import annotations

import copy

import numpy as np

from . import batching, checks, process
from . import layers as L
from . import ops
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

    def _run(self, x: np.ndarray, mode: str, batch_size: int, finish):
        process.check()
        x = self._check_input(x)
        batch_size = checks.size(batch_size, "batch_size")
        checks.one_of(mode, "mode", MODES)
        compiled = self._compiled(mode)
        plan = compiled.plan

        def run(chunk: np.ndarray) -> np.ndarray:
            upload = chunk if plan.input_kind == "uint8" else chunk.astype(np.float32)
            return finish(plan.run(Tensor.from_numpy(self.runtime, upload, plan.input_kind)), plan)

        rows = min(batch_size, len(x))
        if rows > batching.PROBE_SAMPLES and not batching.clearly_fits(rows, self.layers, self.runtime.traits):
            rows = min(rows, self._rows_that_fit(compiled, run))
        return np.concatenate([run(x[start:start + rows]) for start in range(0, len(x), rows)])

    def _rows_that_fit(self, compiled: "_Compiled", run) -> int:
        """Samples per run that fit the device (:mod:`espresso_cl.batching`), measured once per plan."""
        if compiled.rows_that_fit is None:
            probe = np.zeros((batching.PROBE_SAMPLES,) + self.input_shape, self.input_dtype)
            footprint = batching.measure(self.runtime.buffers, lambda: run(probe))
            compiled.rows_that_fit = batching.rows_that_fit(footprint, self.runtime.traits)
        return compiled.rows_that_fit

    def predict(self, x: np.ndarray, mode: str = "binary", batch_size: int = 256) -> np.ndarray:
        """Forward ``x`` (batch, *input_shape) and return the last layer's output as NumPy.

        Real outputs come back float32, integer accumulators int32, +-1 values float32.
        ``mode='float'`` runs the same network in float32 (the same-device baseline).
        Intermediates stay on the device; only the input and the output cross.
        """
        return self._run(x, mode, batch_size, self._download)

    def predict_classes(self, x: np.ndarray, mode: str = "binary", batch_size: int = 256) -> np.ndarray:
        """Index of the largest output per sample (first on ties), as int32 (batch,)."""
        if len(self.output_spec.shape) != 1:
            raise ValueError(f"predict_classes needs a flat output, the model gives {self.output_spec.shape}")
        return self._run(x, mode, batch_size, self._argmax)

    def release_memory(self) -> None:
        """Give back the device memory this model's runtime keeps idle for reuse
        (:meth:`espresso_cl.runtime.Runtime.release_memory`); the model stays usable."""
        if self._runtime is not None:
            self._runtime.release_memory()

    @staticmethod
    def _as_float(out: Tensor, plan) -> Tensor:
        return out if out.kind == "float32" or plan.to_float is None else plan.to_float(out)

    def _download(self, out: Tensor, plan) -> np.ndarray:
        if out.kind == "float32" and plan.output_kind == "int":
            return np.rint(out.numpy()).astype(np.int32)  # float mode: exact integers
        if out.kind == "int32":
            return out.numpy()
        return self._as_float(out, plan).numpy()

    def _argmax(self, out: Tensor, plan) -> np.ndarray:
        return ops.argmax(self._as_float(out, plan)).numpy()

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
    """A model's plan for one mode, the parameter versions it holds, and how many samples
    one of its runs may take (measured on first need)."""

    def __init__(self, versions: tuple, plan):
        self.versions, self.plan = versions, plan
        self.rows_that_fit: int | None = None


def _dtype_name(value) -> str:
    """``input_dtype`` as one of :data:`INPUT_DTYPES`, from a name or a NumPy dtype."""
    try:
        name = value if isinstance(value, str) else np.dtype(value).name
    except TypeError:
        name = None
    if name not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES} (a name or a NumPy dtype), got {value!r}")
    return name
