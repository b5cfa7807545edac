#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: the test suite and the benchmark suite on the
# GPU through NVIDIA's OpenCL driver, with everything written to one folder.
#
#   scripts/gpu_run.sh [OUTDIR]        (default artifacts/gpu-run-<date>)
#
# Python packages come from wheels carried in $WHEELS (default wheels/), never from the
# network; packages the machine's python3 already has (numpy, pytest, matplotlib) are used
# as they are. Prepare the folder on a machine with network access (docs/gpu.md):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#       --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d wheels pyopencl pytest matplotlib threadpoolctl \
#       onnx onnxruntime-gpu
# Environment: PYTHON (default python3), WHEELS, VENV (default /tmp/espresso_cl-gpu-venv).
# Exit status: 0 when the tests and the benchmarks passed, 1 otherwise (or when no GPU is
# found); once the GPU is found both always run, so one run gives all the evidence.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUTDIR=${1:-artifacts/gpu-run-$(date +%Y%m%d-%H%M%S)}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
VENV=${VENV:-/tmp/espresso_cl-gpu-venv}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
ENVLOG=$OUTDIR/environment.txt
say() { echo "gpu_run: $*" | tee -a "$ENVLOG" >&2; }
: >"$ENVLOG"

# The machine's own python3 keeps its packages (--system-site-packages); pip adds only what
# is missing, from the wheels folder.
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV" || { say "cannot create a venv with $PYTHON"; exit 1; }
fi
PY=$VENV/bin/python
missing() {  # the arguments that python cannot import
    "$PY" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "$@"
}
pip_install() { "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$@" 2>&1 | tee -a "$ENVLOG"; }
need=$(missing pyopencl numpy pytest)
if [ -n "$need" ]; then
    if [ ! -d "$WHEELS" ]; then
        say "missing Python packages ($need) and no wheels folder $WHEELS; see the pip download line at the top of this script"
        exit 1
    fi
    pip_install $need || { say "installing $need from $WHEELS failed"; exit 1; }
fi
# The benchmarks' chart (matplotlib), BLAS thread report (threadpoolctl) and ONNX Runtime
# baseline (onnx builds its graph) are optional.
for extra in $(missing matplotlib threadpoolctl onnx); do
    pip_install "$extra" >/dev/null || say "no $extra wheel in $WHEELS: the benchmarks run without it"
done
# onnxruntime-gpu (the same module, with the CUDA provider) where its wheel is there, else the CPU build.
if [ -n "$(missing onnxruntime)" ]; then
    pip_install onnxruntime-gpu >/dev/null || pip_install onnxruntime >/dev/null \
        || say "no onnxruntime wheel in $WHEELS: the benchmarks run without ONNX Runtime"
fi
# The source tree is the package: the runtime finds kernels/ beside espresso_cl/.
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# NVIDIA's OpenCL driver registers itself with /etc/OpenCL/vendors/nvidia.icd. Containers
# often mount the driver's libraries without that file: point the ICD loader (pyopencl's
# bundled ocl-icd reads OCL_ICD_VENDORS) at a folder holding one that names the library.
if [ ! -f /etc/OpenCL/vendors/nvidia.icd ] && [ -z "${OCL_ICD_VENDORS:-}" ]; then
    lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1 .*x86-64/ {print $NF; exit}')
    for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
        [ -z "$lib" ] && [ -f "$dir/libnvidia-opencl.so.1" ] && lib=$dir/libnvidia-opencl.so.1
    done
    if [ -z "$lib" ]; then
        say "no /etc/OpenCL/vendors/nvidia.icd and no libnvidia-opencl.so.1: the NVIDIA driver's OpenCL part is not installed"
        exit 1
    fi
    export OCL_ICD_VENDORS=$(mktemp -d)
    echo "$lib" >"$OCL_ICD_VENDORS/nvidia.icd"
    # OCL_ICD_VENDORS replaces the system folder: keep the CPU drivers registered there.
    cp /etc/OpenCL/vendors/*.icd "$OCL_ICD_VENDORS/" 2>/dev/null
    say "no /etc/OpenCL/vendors/nvidia.icd: OCL_ICD_VENDORS=$OCL_ICD_VENDORS names $lib"
fi

{
    echo "== git"; git -C "$REPO" log -1 --format='%H %s' 2>/dev/null
    echo "== nvidia-smi"; nvidia-smi 2>&1
    echo "== Python"; "$PY" -m pip list 2>/dev/null | grep -i -E '^(numpy|pyopencl|pytest|torch|matplotlib|threadpoolctl|onnx|onnxruntime|onnxruntime-gpu) '
    echo "== OpenCL devices"
} >>"$ENVLOG"
if ! "$PY" -c "from espresso_cl.runtime import describe_devices, get_runtime
print(describe_devices()); print('chosen:', get_runtime('gpu').describe())" >>"$ENVLOG" 2>&1; then
    say "no OpenCL GPU device: see $ENVLOG"
    exit 1
fi

export ESPRESSO_DEVICE=gpu PYTHONUNBUFFERED=1
status=0
say "tests (ESPRESSO_DEVICE=gpu) -> $OUTDIR/tests.log"
# The wheel test builds and installs a wheel from PyPI, which such a machine cannot reach.
"$PY" -m pytest -q -m "not wheel" -p no:cacheprovider --junitxml "$OUTDIR/tests.xml" tests/ 2>&1 \
    | tee "$OUTDIR/tests.log" || status=1
say "benchmarks -> $OUTDIR/benchmarks.json, $OUTDIR/benchmarks.png"
"$PY" -m benchmarks --json "$OUTDIR/benchmarks.json" --chart "$OUTDIR/benchmarks.png" 2>&1 \
    | tee "$OUTDIR/benchmarks.log" || status=1
say "done (status $status): $OUTDIR"
exit $status
