"""Recorded launch lists: a model's call at one batch size as one upload, N enqueues, one read.

Running a plan step by step costs Python on every call: each op checks its operands, picks its
variant and block, allocates its output from the pool and sets its kernel's arguments. None of
that changes between two calls of the same model at the same batch size. So the first such
call runs the plan while recording (:func:`record`): every launch also goes into a
:class:`LaunchList` as a kernel object of its own with its arguments bound, and every tensor
of the run takes its buffer from the list's :class:`~espresso_cl.memory.Arena`, which reuses
a buffer once its tensor dies (the static memory plan) and never gives it to anyone else.
Later calls :meth:`~LaunchList.replay` it: copy the input in, enqueue the kernels with no
wait, read the output back.

A run that uploads or reads data in the middle cannot be replayed: the list says why
(:attr:`LaunchList.cannot_replay_because`) and its calls run the plan instead.

:func:`dry_run` runs a plan with nothing allocated or enqueued, only its kernels built: the
planner does it for every power-of-two batch size a model may meet, so no call compiles
(launchers choose blocks by :func:`~espresso_cl.intmath.size_bucket`).
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from .memory import Arena
from .tensor import Tensor

# A model's first call prepares every batch size up to this many samples (or its batch_size,
# if larger): whatever batch_size later calls pass, none of them builds a kernel.
PLANNED_ROWS = 256
# The launch lists of the power-of-two buckets up to this many samples are recorded while the
# model is planned. The first call at a new batch size of up to this many samples replays its
# bucket's list, padded, instead of recording its own: for so few samples, a recording (the
# Python of a run) costs several times a replay, where a padded replay costs at most the
# bucket's work. A size met again gets a list of its own.
PADDED_ROWS = 64


class LaunchList:
    """The launches of one recorded run, the buffers they use, and where input and output are."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.arena = Arena(runtime.buffers)
        self.launches: list = []          # (kernel, global size, local size)
        self.count = 0                    # launches recorded (kept after a release)
        self._buffers: list = []          # every buffer a launch takes, kept alive with it
        self._programs: list = []         # each launch's program
        self.cannot_replay_because: str | None = None
        self._input: Tensor | None = None
        self._output: Tensor | None = None
        self._lock = threading.Lock()
        self.released = False

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers the list owns."""
        return self.arena.nbytes

    def add(self, program, name: str, global_size, local_size, args):
        """One launch of the run being recorded (``args`` as the kernel takes them): the list's
        kernel object for it, its arguments set, for the caller to enqueue now."""
        kernel = self.runtime.programs.kernel_object(program, name)  # its arguments stay bound
        kernel.set_args(*args)
        self.launches.append((kernel, global_size, local_size))
        self._programs.append(program)
        self.count += 1
        self._buffers.extend(arg for arg in args if isinstance(arg, cl.MemoryObjectHolder))
        return kernel

    def cannot_replay(self, why: str) -> None:
        if self.cannot_replay_because is None:
            self.cannot_replay_because = why

    @property
    def replayable(self) -> bool:
        return self.cannot_replay_because is None and not self.released

    def replay(self, x: np.ndarray) -> np.ndarray | None:
        """The output of the recorded run on ``x`` as NumPy (storage layout), or None if the list
        was released meanwhile. ``x`` has the recorded input's dtype and sample shape, and at
        most its samples: the rows past it run on zeros, and only the output's first ``len(x)``
        rows are read (samples are independent in every layer)."""
        queue = self.runtime.queue
        x_rows = len(x)
        with self._lock:
            if not self.replayable:
                return None
            if x_rows < self._input.shape[0]:  # (a padded replay: a batch size's first call only)
                padded = np.zeros(self._input.storage_shape, self._input.dtype)
                padded[:x_rows] = x
                x = padded
            # x lives until the blocking read below, which ends after the copy.
            cl.enqueue_copy(queue, self._input.buffer, x, is_blocking=False)
            for kernel, global_size, local_size in self.launches:
                cl.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)
            out = np.empty((x_rows,) + self._output.storage_shape[1:], self._output.dtype)
            cl.enqueue_copy(queue, out, self._output.buffer)
        return out

    def release(self) -> None:
        """Give the list's buffers back to the pool; later replays return None."""
        with self._lock:
            self.released = True
            for program, (kernel, _, _) in zip(self._programs, self.launches):
                self.runtime.programs.recycle(program, kernel)
            self._programs.clear()
            self.launches.clear()
            self._buffers.clear()
            self._input = self._output = None
            self.arena.release()


def record(runtime, forward, x: np.ndarray, kind: str) -> tuple[LaunchList, np.ndarray]:
    """Run ``forward`` (input Tensor -> output Tensor) on ``x`` uploaded as a ``kind`` tensor,
    recording its launches; the list and the output as NumPy (storage layout)."""
    launches = LaunchList(runtime)
    with runtime.captured(recorder=launches):
        inp = Tensor(runtime, x.shape, kind)
        cl.enqueue_copy(runtime.queue, inp.buffer, x, is_blocking=False)
        out = forward(inp)
    result = out.numpy()
    # Both stay in use, so the arena never hands their buffers to another tensor.
    launches._input, launches._output = inp, out
    if not launches.replayable:
        launches.release()
    return launches, result


def dry_run(runtime, forward, shape: tuple, kind: str) -> list:
    """Build every kernel ``forward`` launches on a ``kind`` input of ``shape``; enqueue nothing.
    Its launches, as ``(file, kernel, defines, work-group, large grid)``; the grid counts only
    where the device compiles on a kernel's first launch (its quirks), else it is False."""
    launches: list = []
    with runtime.captured(dry=True, launches=launches):
        forward(Tensor(runtime, shape, kind))
    return launches
