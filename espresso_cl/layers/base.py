"""What flows between layers (:class:`Spec`) and what every layer is (:class:`Layer`).

Values flowing between layers have a *kind*:

``uint8``  real 8-bit input (pixels)
``float``  real values
``int``    exact integer accumulators of a binary layer (range known)
``pm1``    +-1 values: packed bits on the device in binary mode, float +-1 in float mode

Images are NHWC; shapes here exclude the batch axis.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .. import checks


class ShapeError(ValueError):
    """A layer cannot take the shape or kind its predecessor produces."""


@dataclass(frozen=True)
class Spec:
    """What flows between layers: per-sample ``shape``, ``kind``, and for kind pm1 the packing
    ``segment`` (channels packed together); for kind int the accumulator range."""

    shape: tuple
    kind: str
    segment: int | None = None
    acc_range: tuple | None = None

    def __post_init__(self):
        if self.kind == "pm1" and self.segment is None:
            object.__setattr__(self, "segment", self.shape[-1])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layer:
    """Base class: a named layer with NumPy parameters whose shapes follow from its input.

    A layer type declares here, in one place, everything the interpreters of a layer list ask
    of it: its shape rule (:meth:`build`), its device steps (:meth:`plan`), its NumPy reference
    (:meth:`reference_forward`) and its float32 baseline operations (:meth:`float_ops`).
    :meth:`plan` and :meth:`float_ops` are given the layers after it, so that a layer may fold
    a run of them (:mod:`espresso_cl.fusion`); they say how many they consumed, itself included.
    """

    type_name = "layer"
    # Whether binary mode feeds this layer, when first, the uint8 input as it is (bit planes).
    reads_bit_planes = False
    # Whether the layer only reshapes (a Flatten): the input reaches the layer after it as it is.
    reshapes_only = False

    def __init__(self, name: str | None = None):
        self.name = checks.name(name, f"{type(self).__name__} name")
        self.input_spec: Spec | None = None
        self.output_spec: Spec | None = None
        self._params: dict = {}
        # Bumped by every parameter change, so a model notices that its compiled device plan
        # holds old parameters, whichever way the layer was reached.
        self.params_version = 0
        self._owner = _no_owner

    # -- membership ----------------------------------------------------------------------
    def owner(self):
        """The live model this layer belongs to, or None."""
        return self._owner()

    def adopt(self, model) -> None:
        """Belong to ``model`` (held weakly: a layer outlives a model it was in)."""
        self._owner = weakref.ref(model)

    def __getstate__(self):
        # A copy (copy.deepcopy, pickle) belongs to no model yet.
        return {**self.__dict__, "_owner": _no_owner}

    # -- shape inference -------------------------------------------------------------
    def build(self, spec: Spec) -> Spec:
        """Check that this layer can take ``spec``; return what it produces."""
        self.input_spec = spec
        self.output_spec = self._infer(spec)
        return self.output_spec

    def _infer(self, spec: Spec) -> Spec:
        raise NotImplementedError

    def _fail(self, why: str) -> ShapeError:
        return ShapeError(f"layer {self.name!r} ({self.type_name}): {why}")

    # -- what the interpreters of a layer list ask --------------------------------------
    def plan(self, planner, following) -> tuple:
        """``(step or None, consumed)``: the device step (``espresso_cl.plan.Planner``
        builds it) of this layer and of the ``consumed - 1`` first of ``following`` it folds."""
        raise TypeError(f"layer {self.name!r}: no device implementation for {self.type_name!r}")

    def reference_forward(self, value: np.ndarray) -> np.ndarray:
        """This layer alone on a batch, the obvious way in NumPy: uint8 / int8 +-1 / int64 /
        float64 arrays as the layer's kinds say (``espresso_cl.reference.network``)."""
        raise TypeError(f"no reference for layer type {self.type_name!r}")

    def float_ops(self, following) -> tuple:
        """``(ops, consumed)``: the float32 operations (``espresso_cl.float_program``) of this
        layer and of the ``consumed - 1`` first of ``following`` they fold."""
        raise TypeError(f"no float32 baseline for layer type {self.type_name!r}")

    def macs(self) -> int:
        """Multiply-accumulates per sample of this layer's products (0 for a layer without)."""
        return 0

    # -- parameters ------------------------------------------------------------------
    def param_shapes(self) -> dict:
        """name -> shape of the real-valued parameters :meth:`set_params` takes."""
        return {}

    def set_params(self, **arrays) -> None:
        """Set parameters from real-valued arrays (binary weights: any real values; their sign is kept)."""
        expected = self.param_shapes()
        unknown = set(arrays) - set(expected)
        if unknown:
            raise KeyError(f"layer {self.name!r} has no parameter(s) {sorted(unknown)}; "
                           f"it takes {sorted(expected)}")
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.shape != tuple(expected[key]):
                raise ValueError(f"layer {self.name!r} parameter {key!r}: expected shape "
                                 f"{tuple(expected[key])}, got {value.shape}")
            if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
                raise TypeError(f"layer {self.name!r} parameter {key!r}: expected real numbers, got {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"layer {self.name!r} parameter {key!r} holds NaN or infinity")
            self._check_values(key, value)
            self._store(key, value)
            self.params_version += 1

    def _check_values(self, key: str, value: np.ndarray) -> None:
        """Refuse finite values that still make no sense for parameter ``key`` (ValueError)."""

    def _store(self, key: str, value: np.ndarray) -> None:
        self._params[key] = value.astype(np.float32)

    def params(self) -> dict:
        """name -> stored array (binary weights packed as uint32 words), in the order of
        :meth:`param_shapes` whatever order they were set in (model files are reproducible)."""
        return {key: self._params[key] for key in self.param_shapes() if key in self._params}

    def load_stored(self, key: str, array: np.ndarray) -> None:
        """Set one parameter from its stored form (as :meth:`params` returns it)."""
        self._check_values(key, np.asarray(array))
        self._params[key] = np.asarray(array)
        self.params_version += 1

    def stored_shapes(self) -> dict:
        """name -> (shape, dtype) of each parameter as stored."""
        return {k: (tuple(s), np.dtype(np.float32)) for k, s in self.param_shapes().items()}

    def missing_params(self) -> list:
        return [k for k in self.param_shapes() if k not in self._params]

    def param_bytes(self) -> tuple[int, int]:
        """(bytes as stored, bytes as float32) of the parameters."""
        stored = sum(a.nbytes for a in self._params.values())
        as_float = sum(int(np.prod(s)) * 4 for s in self.param_shapes().values())
        return stored, as_float

    def initialize(self, rng: np.random.Generator) -> None:
        """Random parameters (for timing and tests)."""
        self.set_params(**{k: rng.standard_normal(s).astype(np.float32)
                           for k, s in self.param_shapes().items()})

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer: ``layer_from_config(config())``."""
        return {"type": self.type_name, "name": self.name, **self._config()}

    def _config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args}{', ' if args else ''}name={self.name!r})"


def _no_owner():
    return None


def as_float(value) -> np.ndarray:
    """A reference value as float64 (exact for the integer kinds)."""
    return np.asarray(value, np.float64)
