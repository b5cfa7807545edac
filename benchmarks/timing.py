"""Running one benchmark case: warm-up (whose outputs feed the correctness check), then
interleaved timed rounds, then statistics.

Interleaving (round r times every contender once before round r + 1) spreads a busy
machine's noise over all contenders alike instead of penalising whoever ran last.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ROLES = ("binary", "float", "numpy", "torch", "onnxruntime", "onnxruntime-cuda")
# The float32 baselines: what "the fastest float contender" is chosen from.
FLOAT_ROLES = ("float", "numpy", "torch", "onnxruntime", "onnxruntime-cuda")


@dataclass
class Contender:
    """One way of computing a case. ``run()`` must return only when the result is complete
    (device work finished); ``fetch`` turns its return value into a NumPy array for the check."""

    label: str
    role: str                      # one of ROLES
    device: str | None             # Device.key it runs on; None: the host CPU outside OpenCL
    run: Callable[[], object]
    fetch: Callable[[object], np.ndarray] = np.asarray

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass(frozen=True)
class Settings:
    """How hard to measure. Fewer repeats go to a contender whose calls are slow, never fewer
    than ``min_repeats``; one predicted to take over ``max_call_s`` a call is skipped."""

    repeats: int
    min_repeats: int
    budget_s: float        # timed seconds per contender and case, at most (beyond min_repeats)
    max_call_s: float
    min_sample_s: float    # fast calls are looped until one sample lasts this long
    settle_s: float        # pause before each sample (see time_interleaved)


@dataclass
class Timing:
    """Seconds per call of one contender: one entry per timed round."""

    label: str
    role: str
    device: str | None
    samples: list = field(default_factory=list)
    number: int = 1                 # calls per sample
    skipped: str | None = None      # why it was not timed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.samples) and self.skipped is None and self.error is None

    def stats(self) -> dict:
        s = np.asarray(self.samples, np.float64)
        q1, median, q3 = np.percentile(s, [25, 50, 75])
        return {"median_s": float(median), "q1_s": float(q1), "q3_s": float(q3),
                "min_s": float(s.min()), "max_s": float(s.max()), "repeats": len(s), "calls_per_sample": self.number}

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


def progress(message: str) -> None:
    """A progress line on stderr, so the table on stdout stays clean when redirected."""
    print(message, file=sys.stderr, flush=True)


def _call(contender: Contender) -> tuple[float, object]:
    start = time.perf_counter()
    out = contender.run()
    return time.perf_counter() - start, out


def warm_up(contenders, predicted: dict, settings: Settings):
    """One call of each contender (kernel builds, weight uploads, caches).

    ``predicted`` maps a label to its expected seconds per call (from a smaller case); a
    contender expected to exceed ``settings.max_call_s`` is not run. Returns the timings
    (empty, or marked skipped / error), the NumPy outputs by label and the warm-up seconds.
    """
    timings, outputs, warm = {}, {}, {}
    for c in contenders:
        t = Timing(c.label, c.role, c.device)
        timings[c.label] = t
        expected = predicted.get(c.label)
        # NumPy's output is the check's reference, so it always runs.
        if c.role != "numpy" and expected is not None and expected > settings.max_call_s:
            t.skipped = (f"predicted {expected:.0f} s per call (from its speed on the previous case), "
                         f"over the {settings.max_call_s:.0f} s cap")
            progress(f"    skip {c.label}: {t.skipped}")
            continue
        try:
            seconds, out = _call(c)
            outputs[c.label] = c.fetch(out)
            # The first call builds kernels and uploads weights: a second one, unless the first
            # was slow, is what sizes the timed samples (so a fast call is looped, not timed
            # once from cold because its first call included a kernel build).
            if seconds < settings.budget_s / 10:
                seconds, _ = _call(c)
        except Exception as exc:  # noqa: BLE001 - one broken contender must not hide the others
            t.error = f"{type(exc).__name__}: {exc}"
            progress(f"    ERROR {c.label}: {t.error}")
            continue
        warm[c.label] = seconds
    return timings, outputs, warm


def time_interleaved(contenders, timings: dict, warm: dict, settings: Settings) -> None:
    """Timed rounds over the contenders that warmed up; fills ``timings[label].samples``."""
    plan = {}
    for c in contenders:
        if c.label not in warm:
            continue
        first = max(warm[c.label], 1e-6)
        number = max(1, min(10_000, math.ceil(settings.min_sample_s / first)))
        affordable = int(settings.budget_s // (first * number))
        repeats = max(settings.min_repeats, min(settings.repeats, affordable))
        plan[c.label] = (c, number, repeats)
        timings[c.label].number = number
    rounds = max((repeats for _, _, repeats in plan.values()), default=0)
    for r in range(rounds):
        for c, number, repeats in plan.values():
            if r >= repeats:
                continue
            # OpenBLAS and OpenMP workers spin for a while after a call; without a pause the
            # previous contender's spinning threads take cores from this one.
            time.sleep(settings.settle_s)
            start = time.perf_counter()
            for _ in range(number):
                c.run()
            timings[c.label].samples.append((time.perf_counter() - start) / number)
