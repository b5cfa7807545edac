"""Launching kernels: argument conversion, NDRange rounding and optional per-kernel timing.

``ESPRESSO_KERNEL_TIMING=1`` (:mod:`espresso_cl.settings`) makes every launch wait for its
kernel and record its time in :data:`kernel_times` (name -> list of seconds); off by default,
since it serialises the queue.

:data:`launched` names every kernel launched in this process as ``"<file>:<kernel>"``; the
Oclgrind check (``scripts/oclgrind_check.py``) uses it to prove that every kernel ran there.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from .. import registry, settings
from ..intmath import round_up
from ..tensor import Tensor

TIMING = settings.kernel_timing()
kernel_times: dict[str, list[float]] = defaultdict(list)
launched: set[str] = set()


def _arg(value):
    if isinstance(value, Tensor):
        return value.buffer
    if isinstance(value, (bool, np.bool_)):
        return np.int32(int(value))
    if isinstance(value, (int, np.integer)):
        if not -2**31 <= int(value) < 2**31:
            raise OverflowError(f"kernel argument {value} does not fit an int32")
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return np.float32(value)
    return value


def launch(runtime, filename: str, name: str, defines: dict | None, global_size, local_size, *args):
    """Enqueue kernel ``name`` of ``kernels/<filename>`` (built with ``defines``) on the runtime's
    queue; also into the launch list this thread records, if any; only built in a dry run."""
    kernel = runtime.kernel(filename, name, defines)
    capture = runtime.capture
    if capture.dry:
        return None
    global_size = tuple(int(g) for g in global_size)
    local_size = None if local_size is None else tuple(int(l) for l in local_size)
    if local_size is not None:
        global_size = tuple(round_up(g, l) for g, l in zip(global_size, local_size))
    args = [_arg(a) for a in args]
    start = time.perf_counter()
    event = kernel(runtime.queue, global_size, local_size, *args)
    launched.add(f"{filename}:{name}")
    if capture.recorder is not None:
        capture.recorder.add(runtime.programs.program(filename, defines), name, global_size, local_size, args)
    if TIMING:
        event.wait()
        kernel_times[name].append(time.perf_counter() - start)
    return event


def launch_op(runtime, op: str, name: str, extra_defines: dict | None, global_size, local_size, *args):
    """:func:`launch` kernel ``name`` of the variant the registry selects for ``op``, built with
    the variant's defines plus ``extra_defines`` (such as an element type)."""
    variant = registry.select(op, runtime.profile)
    if name not in variant.kernels:
        raise ValueError(f"kernel {name!r} is not one of variant {variant.name!r}'s {variant.kernels}")
    defines = dict(variant.defines(runtime.profile), **(extra_defines or {}))
    return launch(runtime, variant.file, name, defines, global_size, local_size, *args)
