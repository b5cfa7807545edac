#!/usr/bin/env bash
# Make sure some CPU OpenCL device can build kernels; `make venv` runs this once.
# pocl-binary-distribution 3.0 (the only PoCL on PyPI) is built on LLVM 14, which does not know
# CPUs newer than it (AMD Zen 5: "unknown target CPU 'generic'"), so on those machines no CPU
# kernel builds. Debian's pocl-opencl-icd (PoCL 3.1, LLVM 15) does; espresso_cl's device choice
# skips a device that cannot build and takes it. Installing needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
probe() { "$PY" -c 'import espresso_cl.device as d; d.select_device("cpu")' 2>/dev/null; }
probe && exit 0
echo "No CPU OpenCL device here can build kernels (PoCL 3.0 predates this CPU); installing Debian's pocl-opencl-icd." >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends pocl-opencl-icd >/dev/null; }
    apt_install || { apt-get update -qq >/dev/null && apt_install; }
    probe && exit 0
fi
"$PY" -c 'import espresso_cl.device as d; d.select_device("cpu")' || true
echo "Install a CPU OpenCL runtime: apt-get install pocl-opencl-icd, or pip install 'espresso_cl[intel]'." >&2
exit 1
