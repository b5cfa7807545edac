"""Dense layers: +-1 weights (:class:`BinaryDense`) and float32 weights (:class:`Dense`)."""

from __future__ import annotations

import numpy as np

from .. import checks
from .. import float_program as fp
from ..fusion import batch_norm_alone, sign_after
from .base import Layer, Spec, as_float
from .binary import BinaryWeights, acc_range, check_binary_input


def _check_flat(layer: Layer, spec: Spec) -> None:
    if len(spec.shape) != 1:
        raise layer._fail(f"expects a flat input (features,), got {spec.shape}; add Flatten()")


class BinaryDense(BinaryWeights):
    """Dense layer with +-1 weights (units, features), no bias (a following batch-norm
    absorbs one). uint8 or pm1 input -> exact int accumulators; float input -> float."""

    type_name = "binary_dense"

    def __init__(self, units: int, name: str | None = None):
        super().__init__(name)
        self.units = checks.size(units, "BinaryDense units")

    def _infer(self, spec):
        _check_flat(self, spec)
        check_binary_input(self, spec)
        if spec.kind == "float":
            return Spec((self.units,), "float")
        return Spec((self.units,), "int", acc_range=acc_range(spec, spec.shape[0]))

    def _config(self):
        return {"units": self.units}

    def weight_segment(self):
        spec = self.input_spec
        return spec.segment if spec.kind == "pm1" else spec.shape[0]

    def param_shapes(self):
        return {"weight": (self.units, self.input_spec.shape[0])}

    def macs(self):
        return self.units * self.input_spec.shape[0]

    def plan(self, planner, following):
        if not (planner.binary and self._multiplies_bits()):
            return planner.fgemm(planner.pm1_weights(self)), 1
        w = planner.packed_weights(self)
        folded = sign_after(following)
        if self.input_spec.kind == "uint8":
            if folded and planner.fuses_bitplane_threshold():
                # bitplane_pack, then one launch with [BatchNorm +] Sign in it.
                thresholds = planner.thresholds(self.output_spec, folded)
                return planner.bitplane_dense(w, thresholds), folded.consumed
            return planner.bitplane_dense(w), 1
        if folded and planner.fuses_dense_threshold():
            # The GEMM and [BatchNorm +] Sign in one launch.
            thresholds = planner.thresholds(self.output_spec, folded)
            return planner.bgemm_threshold(w, thresholds), folded.consumed
        norm = batch_norm_alone(following)
        if norm is not None and planner.fuses_dense_affine():
            # A last layer: the GEMM and its batch-norm, float32 out, in one launch.
            return planner.bgemm_affine(w, planner.affine_params(self.units, norm)), 2
        return planner.bgemm(w), 1

    def reference_forward(self, value):
        # float64 products of small integers are exact (|sum| < 2**53) and BLAS-fast.
        out = as_float(value) @ self.weight_pm1().T.astype(np.float64)
        return out if self.input_spec.kind == "float" else np.rint(out).astype(np.int64)

    def float_ops(self, following):
        return [fp.MatMul(self.weight_pm1().astype(fp.F32), None)], 1


class Dense(Layer):
    """Dense layer with float32 weights (units, features) and bias (units,) -> float."""

    type_name = "dense"

    def __init__(self, units: int, use_bias: bool = True, name: str | None = None):
        super().__init__(name)
        self.units = checks.size(units, "Dense units")
        self.use_bias = checks.boolean(use_bias, "Dense use_bias")

    def _infer(self, spec):
        _check_flat(self, spec)
        return Spec((self.units,), "float")

    def _config(self):
        return {"units": self.units, "use_bias": self.use_bias}

    def param_shapes(self):
        shapes = {"weight": (self.units, self.input_spec.shape[0])}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def macs(self):
        return self.units * self.input_spec.shape[0]

    def plan(self, planner, following):
        p = self.params()
        product = planner.fgemm(planner.upload(p["weight"], "float32"))
        bias = planner.affine(self.units, bias=p["bias"]) if self.use_bias else None
        return planner.chain(planner.to_float(self.input_spec), product, bias), 1

    def reference_forward(self, value):
        p = self.params()
        out = as_float(value) @ p["weight"].astype(np.float64).T
        return out + p["bias"] if self.use_bias else out

    def float_ops(self, following):
        p = self.params()
        bias = p["bias"].astype(fp.F32) if self.use_bias else None
        return [fp.MatMul(p["weight"].astype(fp.F32), bias)], 1
