"""Kernel programs (espresso_cl/build.py): sources, build without warnings, cache, build failures."""

import os
import re
import threading
import uuid
from dataclasses import replace

import pyopencl as cl
import pytest

from espresso_cl import build as build_module
from espresso_cl import registry
from espresso_cl.build import KernelBuildError, ProgramCache, kernel_dir, program_source
from espresso_cl.runtime import Runtime

KERNEL_FILES = sorted(path.name for path in kernel_dir().glob("*.cl"))


# --- kernel sources -----------------------------------------------------------------------

def test_kernel_dir_holds_the_sources():
    folder = kernel_dir()
    assert (folder / "common.h").is_file()
    assert {"pack.cl", "bgemm.cl", "fgemm.cl"} <= set(KERNEL_FILES)


# NVIDIA's OpenCL compiler (driver 580) prints this for every kernel of a program; it is a
# note about its own inlining of kernels, not about the source.
_BENIGN_WARNING = re.compile(r"function \w+ is a kernel, so overriding noinline attribute")


def test_every_kernel_file_belongs_to_a_registered_variant():
    assert set(KERNEL_FILES) == {v.file for v in registry.VARIANTS}


@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_every_kernel_file_builds_without_warnings(profiled_runtime, filename):
    # PoCL 3.0 has given programs with zero kernels on rebuilding a source whose first build
    # printed warnings, so a warning is a failure. Both PoCL's and PyOpenCL's caches hand back
    # binaries without their build log; a unique comment forces a real compile to read.
    rt = profiled_runtime
    if all(v.x86_machine_code and not v.runs_with(rt.profile) for v in registry.VARIANTS if v.file == filename):
        pytest.skip(f"kernels/{filename} holds x86 AVX-512 code only, which profile {rt.profile.name} does not build")
    source = (program_source(filename, registry.file_defines(filename, rt.profile))
              + f"\n/* build-log check {uuid.uuid4()} */\n")
    program = rt.programs._build(filename, source)
    log = program.get_build_info(rt.device, cl.program_build_info.LOG)
    warnings = [line for line in log.lower().splitlines()
                if "warning" in line and not _BENIGN_WARNING.search(line)]
    assert not warnings, f"kernels/{filename} ({rt.profile.name} profile):\n{log}"
    assert program.get_info(cl.program_info.NUM_KERNELS) > 0


# --- program cache ------------------------------------------------------------------------

@pytest.fixture
def build_count(monkeypatch):
    """Every source ProgramCache._build compiles, in order."""
    sources = []
    real_build = ProgramCache._build

    def counting_build(self, filename, source):
        sources.append(source)
        return real_build(self, filename, source)

    monkeypatch.setattr(ProgramCache, "_build", counting_build)
    return sources


def test_program_is_built_once_per_source_and_defines(runtime, build_count):
    rt = Runtime(runtime.device)
    first = rt.programs.program("pack.cl")
    assert rt.programs.program("pack.cl") is first
    assert len(build_count) == 1
    other = rt.programs.program("pack.cl", {"IN_T": "float"})
    assert other is not first
    assert rt.programs.program("pack.cl", {"IN_T": "float"}) is other
    assert len(build_count) == 2
    # Kernel objects hold their arguments: one per thread, reused within it.
    mine = rt.kernel("pack.cl", "pack_sign")
    assert rt.kernel("pack.cl", "pack_sign") is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(rt.kernel("pack.cl", "pack_sign")))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert len(build_count) == 2


def test_a_new_driver_version_misses_the_cache(monkeypatch, runtime, build_count):
    rt = Runtime(runtime.device)
    before = rt.programs.program("pack.cl")
    monkeypatch.setattr(rt.programs, "traits", replace(rt.traits, driver=rt.traits.driver + "-new"))
    assert rt.programs.program("pack.cl") is not before
    assert len(build_count) == 2


def test_a_changed_header_misses_the_cache(monkeypatch, runtime, build_count, tmp_path):
    (tmp_path / "common.h").write_text("#define VALUE 1\n")
    (tmp_path / "probe.cl").write_text(
        '#include "common.h"\n__kernel void probe(__global int *out) { out[0] = VALUE; }\n')
    monkeypatch.setattr(build_module, "kernel_dir", lambda: tmp_path)
    rt = Runtime(runtime.device)
    before = rt.programs.program("probe.cl")
    header = tmp_path / "common.h"
    stamp = header.stat().st_mtime_ns
    header.write_text("#define VALUE 2\n")
    # The same size, and on a coarse clock maybe the same time: a later edit's stamp.
    os.utime(header, ns=(stamp + 10**9, stamp + 10**9))
    assert rt.programs.program("probe.cl") is not before
    assert len(build_count) == 2


# --- build failures and the PoCL zero-kernel bug ------------------------------------------

def test_syntax_error_raises_with_the_build_log(monkeypatch, runtime, tmp_path):
    (tmp_path / "common.h").write_text("")
    (tmp_path / "broken.cl").write_text(
        "__kernel void broken(__global int *out) { out[0] = no_such_name; }\n")
    monkeypatch.setattr(build_module, "kernel_dir", lambda: tmp_path)
    with pytest.raises(KernelBuildError) as caught:
        Runtime(runtime.device).programs.program("broken.cl")
    assert "broken.cl" in str(caught.value)
    assert "no_such_name" in str(caught.value)


def _flaky_compiler(monkeypatch, failures):
    """Make the first ``failures`` builds produce real programs with zero kernels, as PoCL does."""
    sources = []
    real_program = cl.Program

    def program(context, source):
        sources.append(source)
        if len(sources) <= failures:
            source = "int no_kernel_here(int x) { return x; }\n"
        return real_program(context, source)

    monkeypatch.setattr(build_module.cl, "Program", program)
    return sources


@pytest.fixture
def retrying(runtime):
    if not runtime.quirks.retry_empty_builds:
        pytest.skip(f"{runtime.traits.implementation} builds are not retried (device.QUIRKS)")
    return runtime


def test_zero_kernel_build_is_retried(monkeypatch, retrying):
    runtime = retrying
    sources = _flaky_compiler(monkeypatch, failures=1)
    program = Runtime(runtime.device).programs.program("pack.cl")
    assert program.get_info(cl.program_info.NUM_KERNELS) > 0
    assert "pack_sign" in program.get_info(cl.program_info.KERNEL_NAMES).split(";")
    # The retry must change the source text, or PoCL's cache would return the same empty binary.
    assert len(sources) == 2 and sources[0] != sources[1]


def test_zero_kernel_build_that_never_recovers_raises(monkeypatch, retrying):
    runtime = retrying
    sources = _flaky_compiler(monkeypatch, failures=1_000)
    with pytest.raises(KernelBuildError, match="no kernels"):
        Runtime(runtime.device).programs.program("pack.cl")
    assert 1 < len(sources) < 1_000
