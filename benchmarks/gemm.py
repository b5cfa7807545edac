"""XNOR-popcount GEMM against float32 matrix products of the same +-1 matrices.

Run alone for the headline figure (M = N = 1024, K = 4096 unless ``--shape`` says otherwise)::

    python benchmarks/gemm.py            # or: python -m benchmarks.gemm

It prints espresso_cl's G binary-MAC/s next to NumPy's float32 matmul of the same shape,
measured in the same run, after checking the binary product against NumPy's exactly.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a script: make the repository root importable so `benchmarks` resolves as a package.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import argparse

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


def main(argv=None) -> int:
    from . import report, suite

    parser = argparse.ArgumentParser(description="XNOR GEMM G binary-MAC/s next to NumPy float32 matmul")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("M", "N", "K"), default=HEADLINE)
    parser.add_argument("--repeats", type=int, default=suite.MODES["full"].settings.repeats)
    args = parser.parse_args(argv)
    m, n, k = args.shape
    mode = suite.Mode("gemm", suite.MODES["full"].settings,
                      f"benchmarks/gemm.py: XNOR GEMM at {m}x{n}x{k} only, full-mode timing")
    run = suite.Suite(mode, repeats=args.repeats)
    run.run(gemm_case(m, n, k, run.devices, run.torch))
    report.print_report(run.summary())
    for line in report.gemm_lines(run.summary()):
        print(line)
    return 0 if run.all_passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
