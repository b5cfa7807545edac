#!/usr/bin/env bash
# Compile every kernel for sm_80 and sm_90 with the GPU profile (scripts/gpu_compile.py).
# Installs clang-16 and libclc-16 with apt-get when they are missing (CI runs as root);
# `apt-get update` runs only if the first install fails, since it is the slow part.
# ptxas comes from the CUDA toolkit already on the machine (/usr/local/cuda/bin); nvdisasm from
# there or from the nvidia-cuda-nvdisasm wheel.
# Extra arguments go to gpu_compile.py (for example --json artifacts/gpu-compile.json).
set -euo pipefail
cd "$(dirname "$0")/.."
# Any python3 will do: the script needs no package beyond the standard library.
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

if ! command -v clang-16 >/dev/null || [ ! -f /usr/lib/clc/nvptx64--nvidiacl.bc ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends clang-16 libclc-16 >/dev/null; }
    apt_install || { apt-get update -qq >/dev/null && apt_install; }
fi
export PATH="$PATH:/usr/local/cuda/bin"
# nvdisasm (the tensor-core kernels' SASS must hold BMMA) from NVIDIA's wheel where the CUDA
# toolkit lacks it, best effort: without it the compile still runs and says the check was skipped.
if [ -z "${NVDISASM:-}" ] && ! command -v nvdisasm >/dev/null; then
    NVD_DIR=${TMPDIR:-/tmp}/espresso_cl-nvdisasm
    [ -d "$NVD_DIR/nvidia" ] || "$PY" -m pip install -q --target "$NVD_DIR" nvidia-cuda-nvdisasm >/dev/null 2>&1 || true
    found=$(find "$NVD_DIR" -path '*/bin/nvdisasm' -type f 2>/dev/null | head -n 1)
    if [ -n "$found" ]; then export NVDISASM=$found; fi
fi
exec "$PY" scripts/gpu_compile.py "$@"
