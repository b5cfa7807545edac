"""``python -m benchmarks.lce``: Larq Compute Engine's interpreter against espresso_cl on the
same ``.tflite`` files (issue 15), side by side.

The BinaryNet MLP (784-4096x3-10) and CIFAR-10 CNN, built in Larq with random weights and
converted by LCE (:mod:`benchmarks.lce_runner`, run by LCE's own Python, named by
``ESPRESSO_LCE_PYTHON``: TensorFlow 2.16 needs NumPy < 2), go to ``artifacts/lce/`` at each
batch size (LCE's interpreter runs the batch the file was converted with). LCE runs with 2
threads: its default kernels, its indirect-bgemm and reference bconv options, and for the MLP
the same network with its dense layers written as 1x1 binary convolutions (LCE has no binary
dense operator). espresso_cl runs ``from_lce`` of the same file on the default device, on the
same uint8 pixels; both outputs' classes are compared. LCE runs in another process, so the two
are not interleaved: on a busy machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from espresso_cl import settings

RUNNER = Path(__file__).with_name("lce_runner.py")
ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"mlp": ("mlp", "mlp1x1"), "cnn": ("cnn",)}  # network -> LCE files (the first one: espresso_cl's)


def lce_python() -> str:
    python = settings.lce_python()
    if not python:
        raise SystemExit(f"set {settings.LCE_PYTHON} to a Python with larq-compute-engine 0.16 and TensorFlow 2.16 "
                         f"(training/make_lce_models.py says how to make that environment)")
    return python


def ensure_models(python: str, folder: Path, batches) -> None:
    missing = [b for b in batches if not all((folder / f"{f}-b{b}.tflite").exists()
                                             for files in NETWORKS.values() for f in files)]
    if missing:
        print(f"converting the Larq networks at batch {missing} into {folder} (minutes)", file=sys.stderr)
        subprocess.run([python, str(RUNNER), "build", str(folder)] + [str(b) for b in missing], check=True)


def time_lce(python: str, path: Path, repeats: int, threads: int) -> dict:
    done = subprocess.run([python, str(RUNNER), "time", str(path), str(repeats), str(threads)], check=True,
                          stdout=subprocess.PIPE, text=True)  # its stderr: ours
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_espresso(path: Path, batch: int, repeats: int) -> tuple[list, np.ndarray]:
    from espresso_cl import from_lce

    model = from_lce(path, input_dtype="uint8")
    x = np.random.default_rng(1).integers(0, 256, (batch,) + model.input_shape).astype(np.uint8)
    out = model.predict(x)  # warm-up: builds the kernels, uploads the weights
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return times, out


def run(folder: Path, batches, repeats: int, threads: int) -> list:
    python = lce_python()
    ensure_models(python, folder, batches)
    rows = []
    for network, files in NETWORKS.items():
        for batch in batches:
            lce, classes = {}, None
            for name in files:
                result = time_lce(python, folder / f"{name}-b{batch}.tflite", repeats, threads)
                classes = result["classes"] if classes is None else classes
                for option, times in result["times"].items():
                    label = option if name == files[0] else f"{option} ({name}: dense as 1x1 bconv)"
                    lce[label] = float(np.median(times))
            ours, out = time_espresso(folder / f"{files[0]}-b{batch}.tflite", batch, repeats)
            agree = int(np.sum(out.reshape(len(out), -1).argmax(1) == np.asarray(classes)))
            rows.append({"network": network, "batch": batch, "espresso_cl_s": float(np.median(ours)),
                         "lce_s": lce, "threads": threads, "repeats": repeats,
                         "same_class": f"{agree}/{batch}"})
    return rows


def table(rows) -> str:
    lines = ["| network | batch | espresso_cl ms/image | LCE default ms/image | x | LCE fastest option ms/image | x "
             "| same class |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b = r["batch"]
        ours, default = r["espresso_cl_s"] / b, r["lce_s"]["default"] / b
        best = min(r["lce_s"], key=r["lce_s"].get)
        fastest = r["lce_s"][best] / b
        lines.append(f"| {r['network']} | {b} | {ours * 1e3:.3f} | {default * 1e3:.3f} | {default / ours:.1f} | "
                     f"{fastest * 1e3:.3f} ({best}) | {fastest / ours:.1f} | {r['same_class']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lce", description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per contender (medians)")
    parser.add_argument("--threads", type=int, default=2, help="LCE's interpreter threads")
    parser.add_argument("--models", type=Path, default=ROOT / "artifacts" / "lce", help="where the .tflite files go")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    rows = run(args.models, args.batches, args.repeats, args.threads)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
