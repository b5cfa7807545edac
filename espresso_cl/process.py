"""Whether this process may use OpenCL: not in a child forked after OpenCL was used.

An OpenCL implementation's state does not survive ``fork()``: PoCL's worker threads exist only
in the parent, so a forked child's first kernel (or even its first new context) waits forever
for them; CUDA refuses outright. Rebuilding the context in the child is therefore impossible,
and the library instead refuses, at once and with the way out, every OpenCL use in such a
child. A child forked before any OpenCL use (the parent only imported espresso_cl) is fine.
"""

from __future__ import annotations

import os


class ForkedProcessError(RuntimeError):
    """OpenCL is used in a process forked from one that had already used it."""


_used_in_pid: int | None = None   # the process that initialised OpenCL, if any
_forked_from: int | None = None   # in a forked child: that process


def _after_fork_in_child() -> None:
    global _forked_from
    if _used_in_pid is not None:
        _forked_from = _used_in_pid


os.register_at_fork(after_in_child=_after_fork_in_child)


def check() -> None:
    """Raise :class:`ForkedProcessError` in a forked child of a process that used OpenCL."""
    if _forked_from is not None:
        raise ForkedProcessError(
            f"this process ({os.getpid()}) was forked from process {_forked_from} after that one "
            f"had used OpenCL, whose state does not survive fork(); espresso_cl cannot run here. "
            f"Start workers with multiprocessing.get_context('spawn') (or 'forkserver'), or fork "
            f"them before the parent first loads or runs a model (README: threads and processes).")


def opencl_used() -> None:
    """Record that this process is about to initialise OpenCL (after :func:`check`)."""
    global _used_in_pid
    check()
    if _used_in_pid is None:
        _used_in_pid = os.getpid()
