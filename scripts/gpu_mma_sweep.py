"""The XNOR GEMM on the 1-bit tensor cores against the popcount kernel, on one device.

For each M x N x K: both paths' outputs compared bit for bit (with each other, and with NumPy
on the first rows), then each timed alone: wall time of ``ops.bgemm`` plus ``queue.finish()``,
median of ``--repeats`` calls after one warm-up (the tensor-core path's time includes counting
A's rows; B's counts are kept from the warm-up, as a layer's weights' are). The tensor-core path runs only
where the device passed the probe (espresso_cl/ops/tensor_cores.py); the popcount path is
taken by telling the runtime the probe said no.

    python scripts/gpu_mma_sweep.py [--shapes 4096,4096,4096 8192,8192,8192] [--repeats 10]
                                    [--json out.json] [--markdown out.md]

Exit status 1 when any output differs (a timing is never a failure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espresso_cl import get_runtime, ops, reference  # noqa: E402
from espresso_cl.tensor import Tensor  # noqa: E402

DEFAULT_SHAPES = ("4096,4096,4096", "8192,8192,8192")
# Rows of A checked against NumPy (all of them would take minutes on the host at 8192^3).
REFERENCE_ROWS = 64


def _operands(runtime, rng, m: int, n: int, k: int):
    a = np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.int8)
    b = np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)
    ta = Tensor.from_numpy(runtime, reference.pack_bits(a), "bits", shape=a.shape)
    tb = Tensor.from_numpy(runtime, reference.pack_bits(b), "bits", shape=b.shape)
    return a, b, ta, tb


def _time(runtime, ta, tb, repeats: int) -> tuple[float, np.ndarray]:
    out = ops.bgemm(ta, tb)  # warm-up: builds, popcounts, first touch of buffers
    runtime.queue.finish()
    result = out.numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.bgemm(ta, tb)
        runtime.queue.finish()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def sweep(shapes, repeats: int, device: str | None) -> dict:
    runtime = get_runtime(device)
    rng = np.random.default_rng(0)
    usable = ops.gemm.tensor_cores_usable(runtime)
    report = {"device": runtime.describe(), "profile": runtime.profile.name, "tensor_cores": usable,
              "repeats": repeats, "rows": [], "exact": True}
    for m, n, k in shapes:
        a, b, ta, tb = _operands(runtime, rng, m, n, k)
        paths = {}
        for name, flag in (("tensor cores", True), ("popcount", False)):
            if flag and not usable:
                continue
            runtime.tensor_cores = flag
            paths[name] = _time(runtime, ta, tb, repeats)
        runtime.tensor_cores = usable
        outputs = [out for _, out in paths.values()]
        want = reference.xnor_gemm(a[:REFERENCE_ROWS], b)
        exact = all(np.array_equal(out[:REFERENCE_ROWS], want) for out in outputs) and \
            all(np.array_equal(out, outputs[0]) for out in outputs)
        report["exact"] &= exact
        row = {"m": m, "n": n, "k": k, "exact": exact}
        for name, (seconds, _) in paths.items():
            row[name] = {"seconds": seconds, "tera_binary_macs": m * n * k / seconds / 1e12}
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    return report


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']}; profile `{report['profile']}`; tensor cores "
             f"{'passed the probe' if report['tensor_cores'] else 'NOT available (probe failed or not attempted)'}; "
             f"median of {report['repeats']} calls (wall time with queue.finish).", "",
             "| M x N x K | tensor cores (T binary-MAC/s) | popcount (T binary-MAC/s) | speed-up | bit-exact |",
             "| --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        tc, pc = row.get("tensor cores"), row.get("popcount")
        speed = f"{pc['seconds'] / tc['seconds']:.2f}x" if tc and pc else "-"
        cells = [f"{row['m']}x{row['n']}x{row['k']}",
                 f"{tc['tera_binary_macs']:.1f}" if tc else "-",
                 f"{pc['tera_binary_macs']:.1f}" if pc else "-", speed, "yes" if row["exact"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), help="M,N,K triples")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", help="device spec (default $ESPRESSO_DEVICE)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
        if any(len(s) != 3 or min(s) < 1 for s in shapes):
            raise ValueError
    except ValueError:
        parser.error(f"--shapes takes M,N,K triples of positive integers, got {args.shapes}")
    report = sweep(shapes, args.repeats, args.device)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return 0 if report["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
