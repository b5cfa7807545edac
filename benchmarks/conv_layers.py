"""Per-layer table of BinaryNet's CIFAR-10 CNN: each binary convolution next to the XNOR GEMM of
the same M, N, K (M = batch * OH * OW output pixels, N = output channels, K = KH * KW * C bits).

    python benchmarks/conv_layers.py [--batches 1 64] [--repeats 7] [--quick]

Each row times ``ops.bconv2d`` (``ops.bitplane_conv2d`` for the uint8 first layer) and
``ops.bgemm`` on random operands of the layer's shapes, best of ``repeats`` samples (each
sample loops until it lasts ``min_sample_s``), and gives G binary-MAC/s for both and their
ratio. The first layer's MACs count 8-bit pixels as 1 MAC each (its GEMM column runs the
K = 27-bit product, so the ratio there only says how much the bit planes cost). Results are
checked against the NumPy reference on the first call.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import argparse
import os
import resource
import time

import numpy as np

from espresso_cl import ops, reference
from espresso_cl.geometry import ConvGeometry
from espresso_cl.tensor import Tensor

# (name, H, W, C, OC, first): BinaryNet's CIFAR-10 convolutions, 3x3 'same', stride 1.
FULL = (("conv1", 32, 32, 3, 128, True), ("conv2", 32, 32, 128, 128, False),
        ("conv3", 16, 16, 128, 256, False), ("conv4", 16, 16, 256, 256, False),
        ("conv5", 8, 8, 256, 512, False), ("conv6", 8, 8, 512, 512, False))
QUICK = (("conv1", 32, 32, 3, 32, True), ("conv2", 32, 32, 32, 32, False),
         ("conv3", 16, 16, 32, 64, False), ("conv4", 16, 16, 64, 64, False),
         ("conv5", 8, 8, 64, 128, False), ("conv6", 8, 8, 128, 128, False))


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


def _bits(runtime, values):
    return Tensor.from_numpy(runtime, reference.pack_bits(values), "bits", shape=values.shape)


def _calibrate(runtime, fn, min_sample_s: float) -> int:
    """Calls per sample so that one sample lasts about ``min_sample_s``."""
    fn()
    runtime.queue.finish()
    start = time.perf_counter()
    fn()
    runtime.queue.finish()
    return max(1, int(min_sample_s / max(time.perf_counter() - start, 1e-6)))


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (the OpenCL runtime's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_times(runtime, fns, repeats: int, min_sample_s: float) -> list:
    """(wall, cpu) seconds per call of each of ``fns``: the best of ``repeats`` samples, the
    functions' samples interleaved so that a busy machine's noise falls on all of them alike.
    CPU seconds (all threads) are the steadier measure when other processes share the cores."""
    numbers = [_calibrate(runtime, fn, min_sample_s) for fn in fns]
    wall, cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, (fn, number) in enumerate(zip(fns, numbers)):
            start, start_cpu = time.perf_counter(), _cpu_s()
            for _ in range(number):
                fn()
            runtime.queue.finish()
            wall[i] = min(wall[i], (time.perf_counter() - start) / number)
            cpu[i] = min(cpu[i], (_cpu_s() - start_cpu) / number)
    return list(zip(wall, cpu))


def conv_layer_rows(runtime, batches=(1, 64), layers=FULL, repeats: int = 7,
                    min_sample_s: float = 0.05, check: bool = True, seed: int = 0) -> list:
    """One dict per (layer, batch): shapes, seconds and G binary-MAC/s of conv and GEMM, ratio."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch in batches:
        for name, h, w, c, oc, first in layers:
            g = ConvGeometry.of(h, w, 3, 3, 1, "same")
            m, n, k = batch * g.oh * g.ow, oc, 9 * c
            wt = _pm1(rng, (oc, 3, 3, c))
            if first:
                x = rng.integers(0, 256, size=(batch, h, w, c), dtype=np.uint8)
                tx = Tensor.from_numpy(runtime, x, "uint8")
                conv = lambda tx=tx, tw=_bits(runtime, wt): ops.bitplane_conv2d(tx, tw, 1, "same")  # noqa: E731
            else:
                x = _pm1(rng, (batch, h, w, c))
                tx = _bits(runtime, x)
                conv = lambda tx=tx, tw=_bits(runtime, wt): ops.bconv2d(tx, tw, 1, "same")  # noqa: E731
            if check:
                expected = reference.conv2d(x, wt, 1, "same", 0)
                np.testing.assert_array_equal(conv().numpy(), expected, err_msg=f"{name} batch {batch}")
            a, b = _bits(runtime, _pm1(rng, (m, k))), _bits(runtime, _pm1(rng, (n, k)))
            gemm = lambda a=a, b=b: ops.bgemm(a, b)  # noqa: E731
            (conv_s, conv_cpu), (gemm_s, gemm_cpu) = best_times(runtime, (conv, gemm), repeats, min_sample_s)
            macs = m * n * k
            rows.append({"layer": name, "batch": batch, "M": m, "N": n, "K": k,
                         "conv_ms": conv_s * 1e3, "gemm_ms": gemm_s * 1e3,
                         "conv_gmacs": macs / conv_s / 1e9, "gemm_gmacs": macs / gemm_s / 1e9,
                         "ratio": gemm_s / conv_s, "conv_cpu_ms": conv_cpu * 1e3,
                         "gemm_cpu_ms": gemm_cpu * 1e3, "cpu_ratio": gemm_cpu / conv_cpu})
    return rows


def markdown(rows: list) -> str:
    lines = ["| layer | batch | M | N | K | conv ms | GEMM ms | conv G bMAC/s | GEMM G bMAC/s | conv/GEMM "
             "| conv/GEMM by CPU time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['batch']} | {r['M']} | {r['N']} | {r['K']} | {r['conv_ms']:.3f} | "
                     f"{r['gemm_ms']:.3f} | {r['conv_gmacs']:.1f} | {r['gemm_gmacs']:.1f} | {r['ratio']:.2f} "
                     f"| {r['cpu_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    import espresso_cl

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-sample", type=float, default=0.05, help="seconds per timed sample")
    parser.add_argument("--quick", action="store_true", help="CI widths (32, 64, 128)")
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args(argv)
    runtime = espresso_cl.get_runtime()
    print(f"# {runtime.describe()}, profile {runtime.profile.name}, load average {os.getloadavg()[0]:.2f}")
    rows = conv_layer_rows(runtime, args.batches, QUICK if args.quick else FULL, args.repeats,
                           args.min_sample, not args.no_check)
    print(markdown(rows))
    print(f"# load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
