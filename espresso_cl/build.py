"""Kernel programs: source text with its defines, build with the device's quirks, and cache.

A program is the text of ``kernels/<file>`` with its ``#include "x"`` lines replaced by the
files, after one ``#define`` line per tuning value. It is built once per (device, text): an
edited kernel file or header is rebuilt, and a launch costs a few ``stat()`` calls, not a read
and hash of the source (PoCL's launch itself takes 10-40 us).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pyopencl as cl

from .device import DeviceTraits, Quirks

# OpenCL C 1.2 everywhere: it is what NVIDIA's OpenCL driver guarantees.
BUILD_OPTIONS = ("-cl-std=CL1.2",)

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


class KernelBuildError(RuntimeError):
    """A kernel program failed to build; the message holds the build log."""


@functools.cache
def kernel_dir() -> Path:
    """The folder of ``.cl`` sources: inside the installed package first, the source tree second."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / "common.h").is_file():
            return candidate
    raise FileNotFoundError(
        f"espresso_cl kernel sources not found in {here / 'kernels'} or {here.parent / 'kernels'}"
    )


def resolve_includes(path: Path, seen: set[Path] | None = None) -> str:
    """Source text with ``#include "x"`` replaced by the file, so the cache key covers headers."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)

    def include(match: re.Match) -> str:
        return resolve_includes(path.parent / match.group(1), seen)

    return _INCLUDE.sub(include, path.read_text())


def format_defines(defines: dict) -> str:
    return "".join(f"#define {name} {value}\n" for name, value in sorted(defines.items()))


def program_source(filename: str, defines: dict | None = None, files: set | None = None) -> str:
    """The text built for ``kernels/<filename>`` with ``defines`` (the files read go into ``files``)."""
    return format_defines(defines or {}) + resolve_includes(kernel_dir() / filename, files)


def _signature(args) -> tuple:
    """The scalar dtype of each kernel argument (None for a buffer)."""
    return tuple(arg.dtype if isinstance(arg, np.generic) else None for arg in args)


def _stamps(paths) -> tuple:
    """What tells that a source file changed: modification time and size of each."""
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


class ProgramCache:
    """The built programs of one context, and one kernel object per program, name and thread
    (a kernel object holds its arguments from being set to being enqueued)."""

    def __init__(self, context, traits: DeviceTraits, quirks: Quirks):
        self.context, self.traits, self.quirks = context, traits, quirks
        self._programs: dict = {}
        # (identity, folder, file, defines) -> (files read, their stamps, program)
        self._recent: dict = {}
        self._threads = threading.local()
        self._lock = threading.Lock()
        self.builds = 0  # programs built (compiled) so far
        # Kernel objects for launch lists, not in one: creating one costs PoCL 0.15-0.6 ms.
        self._spares: dict = {}
        self._signatures: dict = {}  # (program, kernel) -> scalar dtype or None, per argument

    def program(self, filename: str, defines: dict | None = None):
        """The program built from ``kernels/<filename>`` with ``defines`` prepended."""
        folder = kernel_dir()
        # The device's identity is part of both keys: a binary depends on the driver version.
        recent_key = self.traits.identity + (folder, filename, tuple(sorted((defines or {}).items())))
        recent = self._recent.get(recent_key)
        if recent is not None and _stamps(recent[0]) == recent[1]:
            return recent[2]
        files: set[Path] = set()
        source = program_source(filename, defines, files)
        key = self.traits.identity + (hashlib.sha256(source.encode()).hexdigest(),)
        with self._lock:
            program = self._programs.get(key)
            if program is None:
                program = self._build(filename, source)
                self._programs[key] = program
                self.builds += 1
            paths = tuple(sorted(files))
            self._recent[recent_key] = (paths, _stamps(paths), program)
        return program

    def kernel(self, filename: str, name: str, defines: dict | None = None, args=()):
        """This thread's kernel object ``name`` of the program, typed for ``args`` (as
        :func:`espresso_cl.ops.launch.launch` passes them) when it is made."""
        program = self.program(filename, defines)
        kernels = self._threads.__dict__.setdefault("kernels", {})
        key = (program.int_ptr, name)
        kernel = kernels.get(key)
        if kernel is None:
            if args:
                self._signatures.setdefault(key, _signature(args))
            kernel = kernels[key] = self._typed(program, name)
        return kernel

    def _typed(self, program, name: str):
        """A new kernel object whose scalar arguments are declared: PyOpenCL then sets 7
        arguments in 0.5 us instead of 16-24 us (as NumPy scalars)."""
        kernel = cl.Kernel(program, name)
        signature = self._signatures.get((program.int_ptr, name))
        if signature:  # (unknown for a kernel fetched without its arguments)
            kernel.set_scalar_arg_dtypes(list(signature))
        return kernel

    def kernel_object(self, program, name: str):
        """A kernel object of its own (for a launch list, which binds its arguments once)."""
        with self._lock:
            spares = self._spares.get((program.int_ptr, name))
            if spares:
                return spares.pop()
        return self._typed(program, name)

    def recycle(self, program, kernel) -> None:
        """Take back a kernel object :meth:`kernel_object` gave (its arguments are set anew)."""
        with self._lock:
            self._spares.setdefault((program.int_ptr, kernel.function_name), []).append(kernel)

    def stock(self, program, name: str, count: int) -> None:
        """Have ``count`` spare kernel objects of ``name`` ready (made now, not when recording)."""
        key = (program.int_ptr, name)
        with self._lock:
            missing = count - len(self._spares.get(key, ()))
        made = [self._typed(program, name) for _ in range(missing)]
        with self._lock:
            self._spares.setdefault(key, []).extend(made)

    def _build(self, filename: str, source: str):
        options = list(BUILD_OPTIONS) + list(self.quirks.build_options)
        attempts = 3 if self.quirks.retry_empty_builds else 1
        for attempt in range(attempts):
            text = source if attempt == 0 else f"{source}\n/* espresso_cl rebuild {attempt} */\n"
            try:
                program = self._compile(text, options)
            except cl.RuntimeError as exc:
                raise KernelBuildError(f"building kernels/{filename} for {self.traits.describe()} "
                                       f"failed:\n{exc}") from exc
            if program.get_info(cl.program_info.NUM_KERNELS) > 0:
                return program
        raise KernelBuildError(f"kernels/{filename}: the build for {self.traits.describe()} returned no kernels")

    def _compile(self, text: str, options: list):
        if not self.quirks.build_log_warnings_only:
            return cl.Program(self.context, text).build(options=options)
        # PyOpenCL would warn "non-empty compiler output" on every build: keep only what the
        # log calls a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cl.CompilerWarning)
            program = cl.Program(self.context, text).build(options=options)
        device = self.context.devices[0]
        log = program.get_build_info(device, cl.program_build_info.LOG) or ""
        flagged = [line for line in log.splitlines() if "warning" in line.lower()]
        if flagged:
            warnings.warn("Intel OpenCL build warnings:\n" + "\n".join(flagged), cl.CompilerWarning,
                          stacklevel=4)
        return program
