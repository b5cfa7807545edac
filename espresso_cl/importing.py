"""What the importers of users' networks (:mod:`espresso_cl.import_torch`, :mod:`espresso_cl.import_onnx`,
:mod:`espresso_cl.import_lce`) share: the errors they raise, what a binarization is, how binary
weights with a scale are split, the network they build, and the check of the result against
the original. (The LCE importer sets its parameters directly: TensorFlow Lite's layouts, OHWI
and NHWC, are espresso_cl's, so it needs no PyTorch-layout :class:`Recipe`.)

An importer reads a network's structure and parameters and describes it as a
:class:`Recipe`: espresso_cl layers plus a PyTorch-style ``state_dict`` (NCHW layouts, modules
in order), which :func:`espresso_cl.torch_import.load_state_dict` turns into parameters. It maps
only what it can map exactly, and refuses the rest with :class:`UnsupportedModelError` naming
the module or node; it never approximates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np


class UnsupportedModelError(ValueError):
    """The network holds something espresso_cl cannot compute exactly; the message names it."""


class ImportMismatchError(ValueError):
    """The imported network disagrees with the original on the example batch."""

    def __init__(self, agreement: "Agreement"):
        super().__init__(f"the imported network disagrees with the original: {agreement}; pass "
                         f"allow_mismatch=True to keep it anyway")
        self.agreement = agreement


class SignSemanticsWarning(UserWarning):
    """The original's sign gives 0 (or -1) for an input of exactly 0, espresso_cl's +1."""


# Inputs a binarization is tried on: both signs, tiny and large magnitudes, both zeros.
SIGN_PROBE = np.array([-1e6, -7.0, -1.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, 7.0, 1e6])


def sign_at_zero(outputs) -> int | None:
    """What a function whose outputs on :data:`SIGN_PROBE` are ``outputs`` gives at 0, if it is
    a sign: -1 below 0, +1 above, and -1, 0 or +1 at 0 (the same for both zeros). None if it
    is not a sign (hardtanh, a scaled sign, anything else)."""
    out = np.asarray(outputs, np.float64).reshape(-1)
    if out.shape != SIGN_PROBE.shape:
        return None
    below, at_zero, above = out[SIGN_PROBE < 0], out[SIGN_PROBE == 0], out[SIGN_PROBE > 0]
    if not (np.all(below == -1) and np.all(above == 1)) or at_zero[0] != at_zero[1]:
        return None
    return int(at_zero[0]) if at_zero[0] in (-1, 0, 1) else None


def warn_sign_semantics(where: str, zero: int) -> None:
    """Warn that the binarization at ``where`` maps 0 to ``zero``, not espresso_cl's +1."""
    if zero != 1:
        warnings.warn(f"{where}: the original's sign maps an input of exactly 0 to {zero}, "
                      f"espresso_cl's to +1; the two agree everywhere else (a batch-norm output of "
                      f"exactly 0 is a tie the example check counts apart)", SignSemanticsWarning,
                      stacklevel=3)


def binary_weights(values: np.ndarray) -> bool:
    """Whether ``values`` are all exactly +-1 (weights a binary layer holds as they are)."""
    values = np.asarray(values)
    return values.size > 0 and bool(np.all(np.abs(values) == 1))


def split_binary_weights(weight: np.ndarray, where: str, name: str):
    """(B, s) with weight = s * B for each output row (B +-1, s >= 0; s None when all 1), or
    None for float weights. Refuses rows of +-s with a few exact zeros: a sign (torch.sign) of a
    weight of exactly 0, perhaps with a batch-norm folded in."""
    if not np.all(np.isfinite(weight)):
        raise UnsupportedModelError(f"{where}: weight {name!r} holds NaN or infinity")
    signs = np.where(weight < 0, -1.0, 1.0)
    if binary_weights(weight):
        return signs, None
    magnitude = np.abs(weight.reshape(len(weight), -1))
    scale = magnitude.max(axis=1)
    if np.all(magnitude == scale[:, None]):
        return signs, scale.astype(np.float64)
    zeros = int(np.count_nonzero(weight == 0))
    # A few zeros among +-s: a binarization's sign(0). Mostly zeros: sparse float weights (a
    # one-hot kernel, say), which a float layer holds exactly.
    if zeros < weight.size - zeros and np.all((magnitude == scale[:, None]) | (magnitude == 0)):
        raise UnsupportedModelError(f"{where}: weight {name!r} is +-1 (times one scale per output) but "
                                    f"{zeros} of its entries are exactly 0 (torch.sign(0) = 0); a binary layer "
                                    f"holds +-1 only")
    return None


@dataclass
class Recipe:
    """A network as an importer found it, ready to build: espresso_cl ``layers`` (unbuilt),
    the per-sample ``input_shape`` (NHWC for images) and ``input_dtype``, a PyTorch-layout
    ``state_dict`` in layer order (see :mod:`espresso_cl.torch_import`), and the names of the
    Flatten layers whose input the original had already put in NHWC order."""

    layers: list
    input_shape: tuple
    input_dtype: str
    state_dict: dict = field(default_factory=dict)
    nhwc_flattens: set = field(default_factory=set)

    def build(self, runtime=None):
        from .model import Sequential
        from .torch_import import load_state_dict

        model = Sequential(self.layers, self.input_shape, self.input_dtype, runtime=runtime)
        return load_state_dict(model, self.state_dict, nhwc_flattens=self.nhwc_flattens)


@dataclass(frozen=True)
class Agreement:
    """How the imported network's outputs compare with the original's on an example batch."""

    samples: int
    disagreements: int         # samples whose largest output (class) differs
    ties: int                  # of those, samples where the original's sign saw an exact 0
    max_abs_difference: float  # largest difference of any output

    def __str__(self):
        tie = f" ({self.ties} of them at an exact sign(0) tie)" if self.ties else ""
        return (f"{self.disagreements} of {self.samples} samples disagree on the class{tie}; largest "
                f"output difference {self.max_abs_difference:.3g}")


def agreement(ours: np.ndarray, theirs: np.ndarray, tied: np.ndarray | None = None) -> Agreement:
    """Compare outputs (samples, ...) of the imported network (``ours``) and of the original;
    ``tied`` flags the samples where the original's sign saw an input of exactly 0."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise UnsupportedModelError(f"the imported network gives outputs of shape {ours.shape[1:]}, "
                                    f"the original {theirs.shape[1:]}")
    flat_ours, flat_theirs = ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)
    differs = flat_ours.argmax(1) != flat_theirs.argmax(1)
    tied = np.zeros(len(ours), bool) if tied is None else np.asarray(tied, bool)
    return Agreement(len(ours), int(differs.sum()), int((differs & tied).sum()),
                     float(np.abs(ours - theirs).max(initial=0.0)))


def check_agreement(result: Agreement, allow_mismatch: bool) -> Agreement:
    """Raise :class:`ImportMismatchError` if samples disagree other than at sign(0) ties (unless
    ``allow_mismatch``); warn about ties."""
    if result.disagreements > result.ties and not allow_mismatch:
        raise ImportMismatchError(result)
    if result.disagreements:
        warnings.warn(f"imported network: {result}", SignSemanticsWarning, stacklevel=3)
    return result
