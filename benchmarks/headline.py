"""The headline figure alone: XNOR GEMM at one shape (M = N = 1024, K = 4096 unless ``--shape``
says otherwise) next to NumPy's float32 matmul of the same +-1 matrices, measured in the same
run, after checking the binary product against NumPy's exactly::

    python benchmarks/headline.py            # or: python -m benchmarks.headline
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a script: make the repository root importable so `benchmarks` resolves as a package.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import argparse

from . import report, suite
from .gemm import HEADLINE, gemm_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="XNOR GEMM G binary-MAC/s next to NumPy float32 matmul")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("M", "N", "K"), default=HEADLINE)
    parser.add_argument("--repeats", type=int, default=suite.MODES["full"].settings.repeats)
    args = parser.parse_args(argv)
    m, n, k = args.shape
    mode = suite.Mode("gemm", suite.MODES["full"].settings,
                      f"benchmarks/headline.py: XNOR GEMM at {m}x{n}x{k} only, full-mode timing")
    run = suite.Suite(mode, repeats=args.repeats)
    run.run(gemm_case(m, n, k, run.devices, run.torch))
    report.print_report(run.summary())
    for line in report.gemm_lines(run.summary()):
        print(line)
    return 0 if run.all_passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
