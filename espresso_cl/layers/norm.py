"""Batch normalization (:class:`BatchNorm`) and sign (:class:`Sign`): together, on integer
accumulators, one integer threshold per channel (:mod:`espresso_cl.fusion`)."""

from __future__ import annotations

import numpy as np

from .. import checks
from .. import float_program as fp
from ..fold import BatchNormParams, affine
from ..fusion import SIGN_ALONE, Binarizer, Normalizer, batch_norm_sign
from ..reference import sign
from .base import Layer, Spec, as_float


class BatchNorm(Layer, Normalizer):
    """Batch normalization over the last axis: gamma, beta, mean, var (channels,) -> float.
    Followed by :class:`Sign`, it folds into one integer threshold per channel."""

    type_name = "batch_norm"

    def __init__(self, eps: float = 1e-5, name=None):
        super().__init__(name)
        self.eps = checks.real(eps, "BatchNorm eps", minimum=0.0)

    def _config(self):
        return {"eps": self.eps}

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("batch-norm of raw uint8 input is not supported")
        if spec.kind == "pm1":
            raise self._fail("batch-norm of +-1 values is not supported; put it before Sign")
        return Spec(spec.shape, "float")

    def param_shapes(self):
        c = self.input_spec.shape[-1]
        return {"gamma": (c,), "beta": (c,), "mean": (c,), "var": (c,)}

    def _check_values(self, key, value):
        # Checked when set, not at the first predict: var + eps is a divisor's square.
        if key == "var" and np.any(value < 0):
            raise ValueError(f"layer {self.name!r} parameter 'var' holds negative values")
        if key == "var" and np.any(value.astype(np.float64) + self.eps <= 0):
            raise ValueError(f"layer {self.name!r}: var + eps must be positive (eps={self.eps} and a variance of 0)")

    def initialize(self, rng):
        c = self.input_spec.shape[-1]
        lo, hi = self.input_spec.acc_range or (-1.0, 1.0)
        spread = max(1.0, np.sqrt(max(abs(lo), abs(hi))))
        self.set_params(gamma=rng.standard_normal(c), beta=rng.standard_normal(c),
                        mean=rng.standard_normal(c) * spread, var=rng.uniform(0.5, 2.0, c) * spread ** 2)

    def bn_params(self) -> BatchNormParams:
        p = self._params
        return BatchNormParams(p["gamma"].astype(np.float64), p["beta"].astype(np.float64),
                               p["mean"].astype(np.float64), p["var"].astype(np.float64), self.eps)

    def plan(self, planner, following):
        folded = batch_norm_sign(self, following)
        if folded:
            return planner.threshold(self.input_spec, folded, packed=planner.binary)[0], folded.consumed
        return planner.affine(self.input_spec.shape[-1], batch_norm=self), 1

    def reference_forward(self, value):
        # As written, in float64: no folding, so that the folded device steps are checked.
        p = {k: v.astype(np.float64) for k, v in self.params().items()}
        return p["gamma"] * (as_float(value) - p["mean"]) / np.sqrt(p["var"] + self.eps) + p["beta"]

    def float_ops(self, following):
        folded = batch_norm_sign(self, following)
        if folded:
            return [fp.Threshold.of(*folded.thresholds(self.input_spec))], folded.consumed
        return [fp.Affine(*affine(self.bn_params(), self.input_spec.shape[-1]))], 1


class Sign(Layer, Binarizer):
    """sign(x) with sign(0) = +1 -> pm1 (packed bits in binary mode)."""

    type_name = "sign"

    def _infer(self, spec):
        if spec.kind == "uint8":
            raise self._fail("sign of raw uint8 input is always +1; binarize after the first layer")
        return Spec(spec.shape, "pm1")

    def plan(self, planner, following):
        kind = self.input_spec.kind
        if kind == "pm1":
            return None, 1
        if kind == "int":
            return planner.threshold(self.input_spec, SIGN_ALONE, packed=planner.binary)[0], 1
        return planner.sign(), 1

    def reference_forward(self, value):
        return sign(value)

    def float_ops(self, following):
        return [fp.Sign()], 1
