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
import pyopencl as cl

from .. import registry, settings
from ..intmath import round_up, size_bucket
from ..tensor import Tensor

TIMING = settings.kernel_timing()
kernel_times: dict[str, list[float]] = defaultdict(list)
launched: set[str] = set()


def _arg(value):
    if isinstance(value, Tensor):
        return value.buffer  # None in a dry run
    if isinstance(value, (bool, np.bool_)):
        return np.int32(int(value))
    if isinstance(value, (int, np.integer)):
        if not -2**31 <= int(value) < 2**31:
            raise OverflowError(f"kernel argument {value} does not fit an int32")
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return np.float32(value)
    return value


def loose_group(runtime, global_size: tuple) -> tuple:
    """The work-group of a kernel with no tile of its own: the profile's ``group_items``
    work-items (as the device allows), the dimensions before the last taking the power of two
    that covers them and the last one, which grows with the batch, the rest. So it depends on
    the layer, not on the batch size."""
    traits = runtime.traits
    items = min(runtime.profile.group_items, traits.max_work_group_size)
    items = 1 << (items.bit_length() - 1)
    limits = traits.max_work_item_sizes or (items,) * len(global_size)
    local = []
    for dim, size in enumerate(global_size):
        last = dim == len(global_size) - 1
        take = max(1, min(items if last else size_bucket(size), items, limits[dim]))
        local.append(take)
        items //= take
    return tuple(local)


def launch(runtime, filename: str, name: str, defines: dict | None, global_size, local_size, *args):
    """Enqueue kernel ``name`` of ``kernels/<filename>`` (built with ``defines``) on the runtime's
    queue; also into the launch list this thread records, if any; only built in a dry run."""
    args = [_arg(a) for a in args]
    kernel = runtime.kernel(filename, name, defines, args)
    global_size = tuple(int(g) for g in global_size)
    local_size = loose_group(runtime, global_size) if local_size is None else tuple(int(l) for l in local_size)
    global_size = tuple(round_up(g, l) for g, l in zip(global_size, local_size))
    capture = runtime.capture
    grid_limit = runtime.quirks.launch_compiles_past_grid
    if capture.dry or grid_limit is not None:
        large = grid_limit is not None and max(global_size) > grid_limit
        variant = (filename, name, tuple(sorted((defines or {}).items())), local_size, large)
        if capture.dry:
            if capture.launches is not None:
                capture.launches.append(variant)
            return None
        runtime.compiled_launches.add(variant)
    start = time.perf_counter()
    if capture.recorder is None:
        event = kernel(runtime.queue, global_size, local_size, *args)
    else:
        # The list's own kernel object runs now: PoCL's first launch of a kernel object costs
        # more than the next, and this way a replay never pays it.
        bound = capture.recorder.add(runtime.programs.program(filename, defines), name, global_size,
                                     local_size, args)
        event = cl.enqueue_nd_range_kernel(runtime.queue, bound, global_size, local_size)
    launched.add(f"{filename}:{name}")
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
