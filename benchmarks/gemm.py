"""XNOR-popcount GEMM against float32 matrix products of the same +-1 matrices (the suite's
``gemm`` family; ``benchmarks/headline.py`` runs one shape alone)."""

from __future__ import annotations

import numpy as np

from espresso_cl import ops, reference
from espresso_cl.tensor import Tensor

from .case import REFERENCE, Case
from .timing import Contender

SHAPES = {
    # Batch-1 and small-batch GEMV shapes (the MLP's hidden layers), then square-ish GEMMs.
    "full": ((1, 4096, 4096), (16, 4096, 4096), (256, 4096, 4096),
             (1024, 1024, 1024), (1024, 1024, 4096), (4096, 4096, 4096)),
    "quick": ((1, 1024, 1024), (64, 1024, 1024), (256, 256, 2048)),
}
HEADLINE = (1024, 1024, 4096)


def _pm1(rng, rows: int, cols: int) -> np.ndarray:
    return np.where(rng.random((rows, cols)) < 0.5, -1, 1).astype(np.int8)


def _finished(runtime, launch):
    """A call that returns only once the queue has drained, so wall time covers the kernel."""
    def run():
        out = launch()
        runtime.queue.finish()
        return out
    return run


def _device_contenders(device, a_bits, b_bits, a_float, b_float, shapes) -> list:
    rt = device.runtime
    (m, k), (n, _) = shapes
    ta = Tensor.from_numpy(rt, a_bits, "bits", shape=(m, k))
    tb = Tensor.from_numpy(rt, b_bits, "bits", shape=(n, k))
    fa = Tensor.from_numpy(rt, a_float, "float32")
    fb = Tensor.from_numpy(rt, b_float, "float32")
    return [
        Contender(f"binary {device.key}", "binary", device.key,
                  _finished(rt, lambda: ops.bgemm(ta, tb)), Tensor.numpy),
        Contender(f"float {device.key}", "float", device.key,
                  _finished(rt, lambda: ops.fgemm(fa, fb)), Tensor.numpy),
    ]


def gemm_case(m: int, n: int, k: int, devices, torch, seed: int = 0) -> Case:
    """C (M, N) = A (M, K) . B (N, K)^T over random +-1 matrices, by every contender."""
    rng = np.random.default_rng(seed)
    a, b = _pm1(rng, m, k), _pm1(rng, n, k)
    a_bits, b_bits = reference.pack_bits(a), reference.pack_bits(b)
    a_float, b_float = a.astype(np.float32), b.astype(np.float32)
    contenders = []
    for device in devices:
        contenders += _device_contenders(device, a_bits, b_bits, a_float, b_float, (a.shape, b.shape))
    contenders.append(Contender(REFERENCE, "numpy", None, lambda: np.matmul(a_float, b_float.T)))
    if torch is not None:
        ta, tb = torch.from_numpy(a_float), torch.from_numpy(b_float)
        contenders.append(Contender("PyTorch float32", "torch", None,
                                    lambda: torch.matmul(ta, tb.T), lambda t: t.numpy()))

    def check(outputs: dict) -> tuple[bool, str]:
        # Sums of +-1 products are integers below 2**24: float32 holds them exactly, so the
        # float matmul of the +-1 matrices is an exact reference for the binary product.
        ref = outputs[REFERENCE]
        wrong = [label for label, out in outputs.items()
                 if out.shape != ref.shape or not np.array_equal(out, ref)]
        if wrong:
            return False, f"differs from NumPy's float32 matmul of the +-1 matrices: {', '.join(wrong)}"
        return True, (f"exact: {len(outputs) - 1} product(s) equal NumPy's float32 matmul of the "
                      f"+-1 matrices element for element")

    memory = {"operands_packed_bytes": int(a_bits.nbytes + b_bits.nbytes),
              "operands_float32_bytes": int(a_float.nbytes + b_float.nbytes),
              "output_bytes": m * n * 4}
    return Case("gemm", f"{m}x{n}x{k}", {"M": m, "N": n, "K": k}, m * n * k, contenders, check,
                memory=memory)


def cases(mode: str, devices, torch):
    """The mode's GEMM cases, made one at a time (the large operands of one are freed before the next)."""
    for m, n, k in SHAPES[mode]:
        yield gemm_case(m, n, k, devices, torch)
