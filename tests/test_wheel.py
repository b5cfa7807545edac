"""The wheel: built from this tree, installed in a fresh venv, it finds its kernels and runs them.

Slow (the venv's dependencies come from PyPI, or pip's cache); deselect with ``-m 'not wheel'``.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the installed venv, from a folder outside the source tree, so that neither the
# tree's kernels/ nor its espresso_cl/ can be picked up by accident.
PROBE = textwrap.dedent("""
    import sysconfig
    from pathlib import Path

    import numpy as np

    import espresso_cl
    from espresso_cl import ops, reference
    from espresso_cl.build import kernel_dir
    from espresso_cl.tensor import Tensor

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for path in (Path(espresso_cl.__file__), kernel_dir()):
        assert site in path.resolve().parents, f"{path} is not inside {site}"

    runtime = espresso_cl.get_runtime()
    rng = np.random.default_rng(0)
    a = reference.sign(rng.standard_normal((3, 100)))
    b = reference.sign(rng.standard_normal((5, 100)))
    upload = lambda v: Tensor.from_numpy(runtime, reference.pack_bits(v), "bits", shape=v.shape)
    out = ops.bgemm(upload(a), upload(b)).numpy()
    assert np.array_equal(out, reference.xnor_gemm(a, b)), out
    print(kernel_dir())
    print(runtime.describe())
""")


def _run(command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900,
                            **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
                                    f"{result.stdout}\n{result.stderr}")
    return result.stdout


def test_wheel_installs_and_runs_a_kernel():
    with tempfile.TemporaryDirectory(prefix="espresso_cl-wheel-") as tmp:
        tmp = Path(tmp)
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
              "--no-deps", "-w", tmp / "dist", ROOT])
        (wheel,) = (tmp / "dist").glob("espresso_cl-*.whl")
        _run([sys.executable, "-m", "venv", tmp / "venv"])
        python = tmp / "venv" / "bin" / "python"
        _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel])

        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ESPRESSO_") and k not in ("PYTHONPATH", "PYTHONHOME")}
        installed_kernels, description = _run([python, "-c", PROBE], cwd=tmp, env=env).splitlines()[-2:]

        shipped = {p.name for p in Path(installed_kernels).iterdir()}
        in_tree = {p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cl", ".h")}
        assert in_tree <= shipped, f"missing from the wheel: {sorted(in_tree - shipped)}"
        print(f"wheel {wheel.name} ran on {description}")
