"""The XNOR GEMM on the 1-bit tensor cores against the popcount kernel, on one device.

For each M x N x K: both paths' outputs compared bit for bit (with each other, and with NumPy
on the first rows), then each timed alone: wall time of ``ops.bgemm`` plus ``queue.finish()``,
median of ``--repeats`` calls after one warm-up (the tensor-core path's time includes counting
A's rows; B's counts are kept from the warm-up, as a layer's weights' are). The tensor-core path runs only
where the device passed the probe (espresso_cl/ops/tensor_cores.py); the popcount path is
taken by telling the runtime the probe said no.

    python scripts/gpu_mma_sweep.py [--shapes 4096,4096,4096 8192,8192,8192] [--repeats 10]
                                    [--conv-batch 64] [--json out.json] [--markdown out.md]

``--conv-batch B`` also times the binary convolutions of the CIFAR-10 CNN (conv2 .. conv6,
3x3 'same') at batch B two ways: the profile's own strategy, and im2col, whose product is
``ops.bgemm`` and so reaches the tensor cores; each next to the GEMM of the same M, N, K (the
issue's target: a convolution at 0.7 of that GEMM or better). The two strategies' outputs are
compared bit for bit.

Exit status 1 when any output differs (a timing is never a failure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espresso_cl import get_runtime, ops, reference  # noqa: E402
from espresso_cl.runtime import Runtime  # noqa: E402
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


# (name, H, W, C, OC) of the CIFAR-10 CNN's binary convolutions (benchmarks/conv_layers.py).
CONV_LAYERS = (("conv2", 32, 32, 128, 128), ("conv3", 16, 16, 128, 256), ("conv4", 16, 16, 256, 256),
               ("conv5", 8, 8, 256, 512), ("conv6", 8, 8, 512, 512))


def _median_call(runtime, call, repeats: int) -> tuple[float, np.ndarray]:
    out = call()
    runtime.queue.finish()
    result = out.numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runtime.queue.finish()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def conv_sweep(runtime, batch: int, repeats: int) -> list:
    """Each CIFAR-10 conv layer under the profile's strategy and under im2col, and its GEMM."""
    profile = runtime.profile
    im2col = Runtime(runtime.device, profile=replace(
        profile, name=profile.name + "+im2col", bconv=replace(profile.bconv, prefer=("im2col",) + profile.bconv.prefer)))
    rng = np.random.default_rng(1)
    rows = []
    for name, h, w, c, oc in CONV_LAYERS:
        x = np.where(rng.random((batch, h, w, c)) < 0.5, -1, 1).astype(np.int8)
        wt = np.where(rng.random((oc, 3, 3, c)) < 0.5, -1, 1).astype(np.int8)
        m, n, k = batch * h * w, oc, 9 * c
        row = {"layer": name, "m": m, "n": n, "k": k}
        outs = []
        for label, rt in ((profile.bconv.prefer[0], runtime), ("im2col", im2col)):
            tx = Tensor.from_numpy(rt, reference.pack_bits(x), "bits", shape=x.shape)
            tw = Tensor.from_numpy(rt, reference.pack_bits(wt), "bits", shape=wt.shape)
            seconds, out = _median_call(rt, lambda: ops.bconv2d(tx, tw, 1, "same"), repeats)
            row[f"conv {label}"] = {"seconds": seconds, "tera_binary_macs": m * n * k / seconds / 1e12}
            outs.append(out)
        _, _, ta, tb = _operands(runtime, rng, m, n, k)
        seconds, _ = _median_call(runtime, lambda: ops.bgemm(ta, tb), repeats)
        row["gemm"] = {"seconds": seconds, "tera_binary_macs": m * n * k / seconds / 1e12}
        row["exact"] = bool(np.array_equal(outs[0], outs[1]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


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
    if report.get("conv"):
        own = next(key for key in report["conv"][0] if key.startswith("conv ") and key != "conv im2col")
        lines += ["", f"CIFAR-10 CNN convolutions at batch {report['conv_batch']} (T binary-MAC/s; "
                  "ratio: convolution / GEMM of the same M, N, K; target 0.7):", "",
                  f"| layer | M x N x K | {own} | im2col | GEMM | {own} / GEMM | im2col / GEMM | equal |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in report["conv"]:
            gemm = row["gemm"]["tera_binary_macs"]
            a, b = row[own]["tera_binary_macs"], row["conv im2col"]["tera_binary_macs"]
            lines.append(f"| {row['layer']} | {row['m']}x{row['n']}x{row['k']} | {a:.1f} | {b:.1f} | {gemm:.1f} "
                         f"| {a / gemm:.2f} | {b / gemm:.2f} | {'yes' if row['exact'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), help="M,N,K triples")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", help="device spec (default $ESPRESSO_DEVICE)")
    parser.add_argument("--conv-batch", type=int, default=0,
                        help="also time the CIFAR-10 CNN's convolutions at this batch (0: no)")
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
    if args.conv_batch > 0:
        report["conv_batch"] = args.conv_batch
        report["conv"] = conv_sweep(get_runtime(args.device), args.conv_batch, args.repeats)
        report["exact"] &= all(row["exact"] for row in report["conv"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return 0 if report["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
