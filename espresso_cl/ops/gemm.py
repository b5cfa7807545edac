"""Launchers of kernels/bgemm.cl and kernels/fgemm.cl."""

from __future__ import annotations

from ..tensor import Tensor
from .launch import launch
from .pack import check_thresholds


def _grid(params: dict, m: int, n: int):
    bm, bn = params["WG_M"] * params["TM"], params["WG_N"] * params["TN"]
    global_size = (-(-n // bn) * params["WG_N"], -(-m // bm) * params["WG_M"])
    return global_size, (params["WG_N"], params["WG_M"])


def _bgemm_defines(runtime, m: int, n: int, fused: bool = False) -> dict:
    """The profile's bgemm defines, with the CPU block narrowed where M x N has few blocks.

    The CPU profiles (``XNOR_BLOCK``) give each work-item a TM x TN block; a GEMV (batch 1) or
    another short, narrow product would leave cores idle, so TN halves (down to 8 columns)
    until there are at least 4 blocks per compute unit. A block holds any number of rows, so
    M never wastes work there. ``fused`` (bgemm_threshold, whose work-items own whole 32-bit
    words of packed output): TN is rounded up to a multiple of 32 and halves down to 32 only.
    """
    defines = runtime.params.defines("bgemm")
    if not defines.get("XNOR_BLOCK"):
        return defines
    tm, tn = defines["TM"], defines["TN"]
    floor = 32 if fused else 8
    if fused:
        tn = -(-tn // 32) * 32
    want = 4 * runtime.device.max_compute_units
    while tn > floor and (not fused or tn % 64 == 0) and -(-m // tm) * -(-n // tn) < want:
        tn //= 2
    return defines if tn == defines["TN"] else dict(defines, TN=tn)


def supports_fused_threshold(runtime) -> bool:
    """Whether :func:`bgemm_threshold` runs on ``runtime`` (its profile's bgemm has ``XNOR_BLOCK``:
    the CPU profiles; GPU and generic profiles run :func:`bgemm`, then ``ops.threshold``)."""
    return bool(runtime.params.defines("bgemm").get("XNOR_BLOCK"))


def _check_operands(a: Tensor, b: Tensor, what: str) -> None:
    if a.kind != "bits" or b.kind != "bits":
        raise TypeError(f"{what} takes packed bits, got {a.kind} and {b.kind}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1] or a.segment != b.segment:
        raise ValueError(f"{what} shapes do not match: a {a.shape} (segment {a.segment}), "
                         f"b {b.shape} (segment {b.segment})")


def bgemm(a: Tensor, b: Tensor) -> Tensor:
    """XNOR-popcount GEMM: bits a (M, K) and bits b (N, K) -> int32 (M, N) = a @ b.T over +-1.

    a and b must share the packed row layout (same K and segment).
    """
    _check_operands(a, b, "bgemm")
    runtime = a.runtime
    (m, k), n = a.shape, b.shape[0]
    words32 = a.storage_shape[1]
    span = runtime.params.words32
    defines = _bgemm_defines(runtime, m, n)
    out = Tensor(runtime, (m, n), "int32")
    global_size, local_size = _grid(defines, m, n)
    launch(runtime, "bgemm.cl", "bgemm", defines, global_size, local_size,
           m, n, words32 // span, k, a, b, out)
    return out


def bgemm_threshold(a: Tensor, b: Tensor, thresh: Tensor, flip: Tensor) -> Tensor:
    """bgemm, then the folded batch-norm + sign of ``ops.threshold``, in one launch (CPU profiles).

    bits a (M, K), bits b (N, K), int32 thresh and flip (N,) -> bits (M, N): bit n of row m is
    ``c <= thresh[n]`` where ``flip[n]`` else ``c >= thresh[n]``, c = (a @ b.T)[m, n] over +-1.
    Only where :func:`supports_fused_threshold`.
    """
    _check_operands(a, b, "bgemm_threshold")
    runtime = a.runtime
    if not supports_fused_threshold(runtime):
        raise ValueError(f"bgemm_threshold needs a CPU profile (XNOR_BLOCK); "
                         f"{runtime.params.name!r} has none")
    (m, k), n = a.shape, b.shape[0]
    check_thresholds("bgemm_threshold", thresh, flip, n)
    words32 = a.storage_shape[1]
    span = runtime.params.words32
    defines = _bgemm_defines(runtime, m, n, fused=True)
    out = Tensor(runtime, (m, n), "bits")
    rw = out.storage_shape[1]
    global_size, local_size = _grid(defines, m, n)
    launch(runtime, "bgemm.cl", "bgemm_threshold", defines, global_size, local_size,
           m, n, words32 // span, k, rw, a, b, thresh, flip, out)
    return out


def fgemm(a: Tensor, b: Tensor) -> Tensor:
    """float32 a (M, K) and b (N, K) -> float32 (M, N) = a @ b.T."""
    if a.kind != "float32" or b.kind != "float32":
        raise TypeError(f"fgemm takes float32, got {a.kind} and {b.kind}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"fgemm shapes do not match: a {a.shape}, b {b.shape}")
    runtime = a.runtime
    (m, k), n = a.shape, b.shape[0]
    defines = runtime.params.defines("fgemm")
    if not defines.get("USE_LOCAL", 0):
        # Few rows (batch 1: a GEMV): rows past M would repeat the last one's work, so cut the
        # register block and the work-group's height down to what M fills.
        tm = min(defines["TM"], m)
        defines = dict(defines, TM=tm, WG_M=min(defines["WG_M"], -(-m // tm)))
    out = Tensor(runtime, (m, n), "float32")
    global_size, local_size = _grid(defines, m, n)
    launch(runtime, "fgemm.cl", "fgemm", defines, global_size, local_size, m, n, k, a, b, out)
    return out
