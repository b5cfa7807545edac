"""``python -m benchmarks``: XNOR GEMM, BinaryNet MLP and CNN, binary vs float baselines.

Progress goes to stderr, the report to stdout; the JSON holds every figure. The exit status
is 1 when a correctness check failed (no figure of that case is reported), never because a
machine is slow.
"""

from __future__ import annotations

import argparse

from . import report
from .suite import FAMILIES, MODES, Suite
from .timing import progress


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small shapes and scaled-down networks for CI (under 2 minutes on 2 cores)")
    parser.add_argument("--only", action="append", choices=FAMILIES,
                        help="run only this workload (repeatable; default: all)")
    parser.add_argument("--repeats", type=int, help="timed rounds per contender (default: 3 quick, 7 full)")
    parser.add_argument("--json", metavar="PATH", help="result file (default artifacts/benchmarks-<mode>.json)")
    parser.add_argument("--chart", metavar="PATH", help="speed-up chart (default artifacts/benchmarks-<mode>.png)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    families = [f for f in FAMILIES if f in (args.only or FAMILIES)]
    suite = Suite(mode, repeats=args.repeats)
    suite.run_families(families)
    summary = suite.summary()
    print()
    report.print_report(summary)
    json_path = args.json or f"artifacts/benchmarks-{mode.name}.json"
    report.write_json(summary, json_path)
    progress(f"results written to {json_path}")
    progress(report.write_chart(summary, args.chart or f"artifacts/benchmarks-{mode.name}.png"))
    return 0 if suite.all_passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
