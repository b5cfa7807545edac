#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU, under 10 minutes: the tensor-core GEMM's tests
# and probe, the GEMM sweep (1-bit tensor cores against the popcount kernel, 4096^3 and
# 8192^3), the networks' benchmarks and the test suite, on the GPU through NVIDIA's OpenCL
# driver, with everything written to one folder. Each step has its own time limit (STEP_*
# below, seconds), in order of importance, so a slow step cannot take the evidence of the next.
#
#   scripts/gpu_run.sh [OUTDIR]        (default docs/results/gpu-run-<date>)
#
# Python packages come from wheels carried in $WHEELS (default wheels/), never from the
# network; packages the machine's python3 already has (numpy, pytest, matplotlib) are used
# as they are. Prepare the folder on a machine with network access (docs/gpu.md):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#       --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d wheels pyopencl pytest pytest-xdist matplotlib threadpoolctl \
#       onnx onnxruntime-gpu
# Environment: PYTHON (default python3), WHEELS, VENV (default /tmp/espresso_cl-gpu-venv).
# Exit status: 0 when every step passed, 1 otherwise (or when no GPU is found); once the GPU is
# found every step runs, so one run gives all the evidence. No `set -e` for that reason: each
# step's status is recorded in OUTDIR/steps.txt instead.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUTDIR=${1:-docs/results/gpu-run-$(date +%Y%m%d-%H%M%S)}
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
# Time limits per step (seconds); together under 10 minutes with the setup above.
STEP_TC=${STEP_TC:-90}
STEP_SWEEP=${STEP_SWEEP:-180}
STEP_NETWORKS=${STEP_NETWORKS:-120}
STEP_TESTS=${STEP_TESTS:-150}
status=0
: >"$OUTDIR/steps.txt"
step() {  # step NAME LIMIT LOG COMMAND...: run with a time limit, record the outcome
    local name=$1 limit=$2 log=$3 rc
    shift 3
    say "$name (limit ${limit} s) -> $log"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    tail -n 3 "$log" >&2
    case $rc in
        0) echo "$name: passed" >>"$OUTDIR/steps.txt" ;;
        124|137) echo "$name: TIMED OUT after ${limit} s" >>"$OUTDIR/steps.txt"; status=1 ;;
        *) echo "$name: FAILED (exit $rc)" >>"$OUTDIR/steps.txt"; status=1 ;;
    esac
}

# 1. The tensor-core GEMM: its tests (the mma.sync kernel bit-exact against NumPy on ragged
#    shapes, the probe on this device, the fallback) and bgemm's, whose GPU profile now runs
#    through the probe's choice.
step "tensor-core tests" "$STEP_TC" "$OUTDIR/tests-tensor-cores.log" \
    "$PY" -m pytest -q -p no:cacheprovider --junitxml "$OUTDIR/tests-tensor-cores.xml" tests/test_tensor_cores.py tests/test_bgemm.py
# 2. The GEMM sweep: tensor cores against the popcount kernel, outputs compared bit for bit;
#    then the CIFAR-10 CNN's convolutions at batch 64, direct and through im2col + ops.bgemm.
step "GEMM sweep" "$STEP_SWEEP" "$OUTDIR/gemm-sweep.log" \
    "$PY" scripts/gpu_mma_sweep.py --shapes 4096,4096,4096 8192,8192,8192 1024,1024,4096 \
    --repeats 10 --conv-batch 64 --json "$OUTDIR/gemm-sweep.json" --markdown "$OUTDIR/gemm-sweep.md"
# 3. The networks (MLP, CIFAR-10 CNN) and their conv layers, against float mode and NumPy.
step "network benchmarks" "$STEP_NETWORKS" "$OUTDIR/benchmarks.log" \
    "$PY" -m benchmarks --only mlp --only cnn --only conv --json "$OUTDIR/benchmarks.json" \
    --chart "$OUTDIR/benchmarks.png"
# 4. The test suite (the wheel test builds and installs a wheel from PyPI, which such a machine
#    cannot reach).
#    pytest-xdist, where present, spreads it over 8 processes.
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
step "test suite" "$STEP_TESTS" "$OUTDIR/tests.log" \
    "$PY" -m pytest -q "${XDIST[@]}" -m "not wheel" -p no:cacheprovider --junitxml "$OUTDIR/tests.xml" tests/
cat "$OUTDIR/steps.txt" >&2
say "done (status $status): $OUTDIR"
exit $status
