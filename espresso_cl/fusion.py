"""The runs of layers that the interpreters of a layer list fold into one step.

Every pattern ends in a sign of integer accumulators, possibly through a batch-norm:
``sign(bn(acc))`` is one integer comparison per channel (:func:`espresso_cl.fold.sign_thresholds`).

- [BatchNorm ->] Sign after an accumulator-producing layer (:func:`sign_after`): a GEMM or
  bit-plane product may apply the threshold in its own launch;
- BatchNorm -> Sign on int accumulators (:func:`batch_norm_sign`): one threshold step;
- MaxPool -> BatchNorm -> Sign on int accumulators (:func:`pool_batch_norm_sign`): the
  threshold first, then max-pooling of the bits. Sign is non-decreasing in the accumulator
  where the folded test is ``acc >= t``, so sign(max) = max(sign), an OR of bits; where
  gamma < 0 flips it to ``acc <= t`` the max of accumulators is the min of signs, an AND.
- BatchNorm alone after a GEMM (:func:`batch_norm_alone`): a scale and shift per column in
  the GEMM's launch, float32 out (a last layer);
- both around a convolution (:func:`sign_pool_after`): [MaxPool ->] [BatchNorm ->] Sign
  [-> MaxPool of the bits], so that a convolution may threshold and pool in its own launch.

Patterns recognise layers by the roles below, which the layer classes take on, so this module
sits under the layer modules and they can ask it what follows them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fold


class Normalizer:
    """Role of a batch-norm layer: a per-channel affine map given by ``bn_params()``."""

    def bn_params(self) -> fold.BatchNormParams:
        raise NotImplementedError


class Binarizer:
    """Role of a sign layer: real values -> +-1 with sign(0) = +1."""


class Pooler:
    """Role of a max-pool layer: windows of ``kernel_size`` (kh, kw), ``stride``, ``padding``."""


@dataclass(frozen=True)
class SignFold:
    """A run of layers folded into one per-channel threshold of integer accumulators."""

    batch_norm: Normalizer | None   # None: the sign of the accumulators themselves
    consumed: int                   # layers in the run, the one that starts it included

    def thresholds(self, acc_spec) -> tuple[np.ndarray, np.ndarray]:
        """int32 ``(thresh, flip)`` of the run for accumulators of ``acc_spec`` (kind int)."""
        bn = self.batch_norm.bn_params() if self.batch_norm is not None else None
        return fold.sign_thresholds(bn, *acc_spec.acc_range, acc_spec.shape[-1])


SIGN_ALONE = SignFold(None, 1)


def sign_after(following) -> SignFold | None:
    """The [BatchNorm ->] Sign that starts ``following`` (the layers after an
    accumulator-producing one), consuming that layer too; None if there is none."""
    if following[:1] and isinstance(following[0], Binarizer):
        return SignFold(None, 2)
    if len(following) >= 2 and isinstance(following[0], Normalizer) and isinstance(following[1], Binarizer):
        return SignFold(following[0], 3)
    return None


def batch_norm_alone(following) -> Normalizer | None:
    """The BatchNorm that starts ``following`` (the layers after an accumulator-producing one)
    with no Sign after it: a per-channel affine map of the accumulators, as a last layer has."""
    if following[:1] and isinstance(following[0], Normalizer) and not (
            following[1:2] and isinstance(following[1], Binarizer)):
        return following[0]
    return None


def batch_norm_sign(layer, following) -> SignFold | None:
    """``layer`` (a BatchNorm) and the Sign after it, where it normalizes int accumulators."""
    if layer.input_spec.kind == "int" and following[:1] and isinstance(following[0], Binarizer):
        return SignFold(layer, 2)
    return None


def pool_batch_norm_sign(layer, following) -> SignFold | None:
    """``layer`` (a max-pool of int accumulators) and the BatchNorm -> Sign after it."""
    if (layer.input_spec.kind == "int" and len(following) >= 2
            and isinstance(following[0], Normalizer) and isinstance(following[1], Binarizer)):
        return SignFold(following[0], 3)
    return None


@dataclass(frozen=True)
class PooledSignFold:
    """A sign fold with the max-pool before or after it (:func:`sign_pool_after`)."""

    sign: SignFold
    pool: Pooler | None     # None: no pool in the run
    and_flips: bool         # the pool stands before the sign: flipped channels pool with AND
    consumed: int           # layers in the run, the one that starts it included


def sign_pool_after(following) -> PooledSignFold | None:
    """After an accumulator-producing layer: ``MaxPool -> [BatchNorm ->] Sign`` or
    ``[BatchNorm ->] Sign [-> MaxPool]`` (the pool on the signs: OR everywhere), consuming
    that layer too; None if neither starts ``following``."""
    if following[:1] and isinstance(following[0], Pooler):
        folded = sign_after(following[1:])
        if folded is None:
            return None
        return PooledSignFold(folded, following[0], True, folded.consumed + 1)
    folded = sign_after(following)
    if folded is None:
        return None
    after = following[folded.consumed - 1:folded.consumed]
    if after and isinstance(after[0], Pooler):
        return PooledSignFold(folded, after[0], False, folded.consumed + 1)
    return PooledSignFold(folded, None, False, folded.consumed)


def lower(layers, lower_one) -> list:
    """``[(run, result)]``: each layer not yet consumed, with the layers after it, through
    ``lower_one(layer, following) -> (result, consumed)``; ``run`` holds the consumed layers."""
    runs = []
    i = 0
    while i < len(layers):
        result, consumed = lower_one(layers[i], layers[i + 1:])
        runs.append((layers[i:i + consumed], result))
        i += consumed
    return runs
