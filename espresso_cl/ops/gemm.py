"""Launchers of the XNOR GEMM (kernels/bgemm.cl, kernels/bgemm_cpu.cl, and through
ops/tensor_cores.py kernels/bgemm_mma.cl) and kernels/fgemm.cl."""

from __future__ import annotations

from dataclasses import replace

from .. import registry
from ..intmath import ceil_div, round_up, size_bucket
from ..tensor import Tensor
from ..tuning import Tiles
from . import tensor_cores
from .launch import launch
from .pack import check_thresholds


def _cpu_block(runtime, m: int, n: int, fused: bool) -> Tiles:
    """The profile's CPU block, with TN narrowed where M x N has few blocks.

    A GEMV (batch 1) or another short, narrow product would leave cores idle, so TN halves
    (down to 8 columns) until there are at least 4 blocks per compute unit. A block holds any
    number of rows, so M never wastes work there. M counts by its bucket
    (:func:`~espresso_cl.intmath.size_bucket`), so that few programs cover every batch size.
    ``fused`` (whose work-items own whole 32-bit words of packed output): TN is rounded up to
    a multiple of 32 and halves down to 32 only. The grid's order: ``registry.rows_first``
    (A and B rows are equally long).
    """
    tiles = runtime.profile.bgemm.tiles
    tm, tn = tiles.tm, tiles.tn
    tiles = replace(tiles, rows_first=registry.rows_first(size_bucket(m), n))
    floor = 32 if fused else 8
    if fused:
        tn = round_up(tn, 32)
    want = 4 * runtime.traits.compute_units
    m = size_bucket(m)
    while tn > floor and (not fused or tn % 64 == 0) and ceil_div(m, tm) * ceil_div(n, tn) < want:
        tn //= 2
    return tiles if tn == tiles.tn else replace(tiles, tn=tn)


def whole_words(tiles: Tiles) -> Tiles:
    """``tiles`` with TN widened until a work-group's WG_N x TN columns are whole 32-bit words:
    the fused tiled kernels pack their outputs by work-group."""
    tn = tiles.tn
    while tiles.wg_n * tn % 32:
        tn += 1
    return tiles if tn == tiles.tn else replace(tiles, tn=tn)


def _check_operands(a: Tensor, b: Tensor, what: str) -> None:
    if a.kind != "bits" or b.kind != "bits":
        raise TypeError(f"{what} takes packed bits, got {a.kind} and {b.kind}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1] or a.segment != b.segment:
        raise ValueError(f"{what} shapes do not match: a {a.shape} (segment {a.segment}), "
                         f"b {b.shape} (segment {b.segment})")


def _gemv_rows(tiles: Tiles, m: int) -> Tiles:
    """bgemv's tiles for m rows: TM the power of two at or above m (a few row buckets, so
    that few programs are built and rows past M cost little)."""
    tm = 1
    while tm < m:
        tm *= 2
    return replace(tiles, tm=tm)


def bgemm(a: Tensor, b: Tensor) -> Tensor:
    """XNOR-popcount GEMM: bits a (M, K) and bits b (N, K) -> int32 (M, N) = a @ b.T over +-1.

    a and b must share the packed row layout (same K and segment). Where the profile has a
    GEMV kernel (``BinaryGemm.gemv``), at most ``gemv.tm`` rows run bgemv.cl instead.
    """
    _check_operands(a, b, "bgemm")
    runtime = a.runtime
    profile = runtime.profile
    (m, k), n = a.shape, b.shape[0]
    gemv = profile.bgemm.gemv
    if gemv is not None and m <= gemv.tm:
        variant = registry.select("bgemv", profile)
        tiles = _gemv_rows(gemv, m)
        out = Tensor(runtime, (m, n), "int32")
        launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles),
               *variant.grid(tiles, m, n), m, n, a.storage_shape[1] // profile.words32, k, a, b, out)
        return out
    variant = registry.select("bgemm", profile, tensor_cores=tensor_cores_usable(runtime))
    return tensor_cores.bgemm_mma(a, b) if variant.tensor_cores else _bgemm(variant, a, b)


def tensor_cores_usable(runtime) -> bool:
    """Whether bgemm may take the 1-bit tensor cores on the runtime's device (probed once)."""
    return tensor_cores.usable(runtime, _popcount_bgemm)


def _popcount_bgemm(a: Tensor, b: Tensor) -> Tensor:
    """bgemm on the variant the profile runs without tensor cores (the probe's reference)."""
    return _bgemm(registry.select("bgemm", a.runtime.profile), a, b)


def _bgemm(variant, a: Tensor, b: Tensor) -> Tensor:
    runtime = a.runtime
    profile = runtime.profile
    (m, k), n = a.shape, b.shape[0]
    tiles = _cpu_block(runtime, m, n, fused=False) if variant.grid is registry.blocks_grid \
        else variant.tuning(profile)
    out = Tensor(runtime, (m, n), "int32")
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles), *variant.grid(tiles, m, n),
           m, n, a.storage_shape[1] // profile.words32, k, a, b, out)
    return out


def bgemm_threshold(a: Tensor, b: Tensor, thresh: Tensor, flip: Tensor) -> Tensor:
    """bgemm, then the folded batch-norm + sign of ``ops.threshold``, in one launch.

    bits a (M, K), bits b (N, K), int32 thresh and flip (N,) -> bits (M, N): bit n of row m is
    ``c <= thresh[n]`` where ``flip[n]`` else ``c >= thresh[n]``, c = (a @ b.T)[m, n] over +-1.
    CPU-block profiles run blocks of whole words per work-item (bgemm_cpu.cl), the others the
    tiled kernel with whole words per work-group (bgemm.cl).
    """
    _check_operands(a, b, "bgemm_threshold")
    runtime = a.runtime
    profile = runtime.profile
    variant = registry.select("bgemm_threshold", profile)
    (m, k), n = a.shape, b.shape[0]
    check_thresholds("bgemm_threshold", thresh, flip, n)
    tiles = _cpu_block(runtime, m, n, fused=True) if variant.grid is registry.blocks_grid \
        else whole_words(variant.tuning(profile))
    out = Tensor(runtime, (m, n), "bits")
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles), *variant.grid(tiles, m, n),
           m, n, a.storage_shape[1] // profile.words32, k, out.storage_shape[1], a, b, thresh, flip, out)
    return out


def bgemm_affine(a: Tensor, b: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """bgemm, then ``ops.affine``, in one launch: bits a (M, K), bits b (N, K), float32 scale
    and shift (N,) -> float32 (M, N) = (a @ b.T over +-1) * scale + shift (a last layer's
    batch-norm or bias folded into its GEMM)."""
    _check_operands(a, b, "bgemm_affine")
    runtime = a.runtime
    profile = runtime.profile
    (m, k), n = a.shape, b.shape[0]
    if scale.kind != "float32" or shift.kind != "float32" or scale.shape != (n,) or shift.shape != (n,):
        raise ValueError(f"bgemm_affine needs float32 scale and shift of shape ({n},), got "
                         f"{scale.kind} {scale.shape} and {shift.kind} {shift.shape}")
    variant = registry.select("bgemm_affine", profile)
    tiles = _cpu_block(runtime, m, n, fused=False) if variant.grid is registry.blocks_grid \
        else variant.tuning(profile)
    out = Tensor(runtime, (m, n), "float32")
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles), *variant.grid(tiles, m, n),
           m, n, a.storage_shape[1] // profile.words32, k, a, b, scale, shift, out)
    return out


def fgemm(a: Tensor, b: Tensor) -> Tensor:
    """float32 a (M, K) and b (N, K) -> float32 (M, N) = a @ b.T."""
    if a.kind != "float32" or b.kind != "float32":
        raise TypeError(f"fgemm takes float32, got {a.kind} and {b.kind}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"fgemm shapes do not match: a {a.shape}, b {b.shape}")
    runtime = a.runtime
    profile = runtime.profile
    (m, k), n = a.shape, b.shape[0]
    variant = registry.select("fgemm", profile)
    tuning = variant.tuning(profile)
    if not tuning.tiles.use_local:
        # Few rows (batch 1: a GEMV): rows past M would repeat the last one's work, so cut the
        # register block and the work-group's height down to what M's bucket fills.
        rows = size_bucket(m)
        tm = min(tuning.tiles.tm, rows)
        tuning = replace(tuning, tiles=replace(tuning.tiles, tm=tm, wg_m=min(tuning.tiles.wg_m, ceil_div(rows, tm))))
    out = Tensor(runtime, (m, n), "float32")
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tuning), *variant.grid(tuning.tiles, m, n),
           m, n, k, a, b, out)
    return out
