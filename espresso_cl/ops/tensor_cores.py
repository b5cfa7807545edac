"""The 1-bit tensor-core XNOR GEMM (kernels/bgemm_mma.cl) and the probe that decides, once per
device, whether it may run there.

The variant runs only where the registry is told the device passed the probe
(``registry.select(..., tensor_cores=True)``). The probe runs on first use per runtime, only
for a profile with tensor-core tiles on a device whose quirks take inline PTX (NVIDIA's
OpenCL): it builds the variant with the PTX and checks it, bit for bit, against the popcount
kernel on random operands with ragged M, N and K. A build error, a failed launch or a single
differing output disables it for that runtime with one :class:`TensorCoreWarning`, and the
popcount kernel runs instead. The runtime holds the answer (``Runtime.tensor_cores``).

Elsewhere (PoCL, Oclgrind) the same file builds without the PTX, its ``MMA_B1`` written in
OpenCL C: :func:`bgemm_mma` runs it there so that the tests cover everything but the one
instruction; the library never selects it there.
"""

from __future__ import annotations

import threading
import warnings
from typing import Callable

import numpy as np

from .. import bitpack, registry
from ..tensor import Tensor
from .launch import launch


class TensorCoreWarning(RuntimeWarning):
    """The tensor-core GEMM failed its probe on a device; the popcount kernel runs there."""


# (M, N, K) of the self-check: edges of the 128 x 128 tiles and of the 16-word K stages,
# rows of 17 64-bit words (KW = 34, not a multiple of 4: word-by-word loads) and of 32 (vector
# loads), a GEMV row, and K ending inside a word.
PROBE_SHAPES = ((133, 77, 1070), (64, 136, 2035), (1, 9, 65))
PROBE_SEED = 17

_lock = threading.Lock()


def _row_popcounts(x: Tensor, variant) -> Tensor:
    """int32 popcount of each row of bits x."""
    runtime = x.runtime
    rows, kw = x.storage_shape
    out = Tensor(runtime, (rows,), "int32")
    launch(runtime, variant.file, variant.kernels[1], _defines(runtime, variant, kw), (rows,), None,
           rows, kw, x, out)
    return out


def _defines(runtime, variant, kw: int) -> dict:
    """The file's defines for rows of kw words (both kernels share one program)."""
    defines = dict(variant.defines(runtime.profile), MMA_VEC_LOADS=int(kw % 4 == 0))
    if runtime.quirks.inline_ptx:
        defines[registry.INLINE_PTX] = 1
    return defines


def bgemm_mma(a: Tensor, b: Tensor) -> Tensor:
    """ops.bgemm (bits a (M, K), bits b (N, K) -> int32 a @ b.T over +-1) on the tensor-core
    variant: NVIDIA's mma.sync where the device takes inline PTX, its OpenCL C form elsewhere.
    The operands are checked by the caller (ops.gemm)."""
    runtime = a.runtime
    variant = registry.BY_NAME["bgemm_mma"]
    tiles = variant.tuning(runtime.profile)
    if tiles is None:
        raise ValueError(f"profile {runtime.profile.name!r} has no tensor-core tiles (BinaryGemm.mma)")
    (m, k), n = a.shape, b.shape[0]
    kw = a.storage_shape[1]  # 32-bit words, whatever the profile's word width
    # B's counts are kept with B (the weights: no op writes into a tensor it was given). A's are
    # counted every time: the im2col convolution rewrites its window rows between products.
    pa = _row_popcounts(a, variant)
    pb = b.derived("row_popcounts", lambda: _row_popcounts(b, variant))
    out = Tensor(runtime, (m, n), "int32")
    launch(runtime, variant.file, variant.kernel, _defines(runtime, variant, kw), *variant.grid(tiles, m, n),
           m, n, kw, k, a, b, pa, pb, out)
    return out


def self_check(runtime, popcount_bgemm: Callable[[Tensor, Tensor], Tensor]) -> str:
    """'' when :func:`bgemm_mma` equals ``popcount_bgemm`` on :data:`PROBE_SHAPES`, else why not."""
    rng = np.random.default_rng(PROBE_SEED)
    try:
        for m, n, k in PROBE_SHAPES:
            a, b = (_random_bits(runtime, rng, rows, k) for rows in (m, n))
            got, want = bgemm_mma(a, b).numpy(), popcount_bgemm(a, b).numpy()
            if not np.array_equal(got, want):
                bad = int(np.count_nonzero(got != want))
                return f"{bad} of {m * n} outputs differ from the popcount kernel's at M, N, K = {m}, {n}, {k}"
    except Exception as error:  # a probe: any failure to build or run means "do not use"
        first = (str(error).strip().splitlines() or [""])[0]
        return f"{type(error).__name__}: {first}"
    return ""


def _random_bits(runtime, rng, rows: int, k: int) -> Tensor:
    """A bits tensor of ``rows`` random rows of k signs (pad bits 0, as every packer leaves them)."""
    signs = np.where(rng.random((rows, k)) < 0.5, -1, 1).astype(np.int8)
    return Tensor.from_numpy(runtime, bitpack.pack_signs(signs), "bits", shape=(rows, k))


def usable(runtime, popcount_bgemm: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """Whether the tensor-core variant may run on ``runtime``'s device: the probe's answer,
    found on first use and held by the runtime. ``popcount_bgemm`` runs the popcount kernel."""
    if runtime.tensor_cores is None:
        # A real run, whatever this thread is doing (a dry run computes nothing to compare,
        # and a launch list being recorded must not take the probe's launches).
        with _lock, runtime.captured():
            if runtime.tensor_cores is None:
                runtime.tensor_cores = _probe(runtime, popcount_bgemm)
    return runtime.tensor_cores


def _probe(runtime, popcount_bgemm) -> bool:
    wanted = any(v.tensor_cores and v.runs_with(runtime.profile) for v in registry.VARIANTS)
    if not (wanted and runtime.quirks.inline_ptx):
        return False  # not attempted: no tensor-core tiles, or a compiler that must not see PTX
    why = self_check(runtime, popcount_bgemm)
    if why:
        warnings.warn(f"1-bit tensor cores disabled on {runtime.traits.name}: {why}; "
                      f"the popcount kernel runs instead", TensorCoreWarning, stacklevel=3)
        return False
    return True
