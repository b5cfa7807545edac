"""A benchmark case (one shape or batch of one workload) and how it is run into a result record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .timing import FLOAT_ROLES, Settings, Timing, progress, time_interleaved, warm_up

# The contender whose output every check compares against (it is never skipped).
REFERENCE = "NumPy float32"


@dataclass
class Case:
    """One workload at one size: its contenders, the work per call and the correctness check.

    ``check(outputs)`` takes the warm-up outputs by contender label (skipped or failed
    contenders are absent) and returns ``(passed, what was checked)``. ``extra(settings)``,
    where given, measures more figures once the timed rounds are done (a dict merged into
    the record).
    """

    family: str                    # "gemm", "mlp" or "cnn"
    name: str
    params: dict
    macs: int                      # multiply-accumulates per call (binary MACs for binary mode)
    contenders: list
    check: Callable[[dict], tuple]
    items: int | None = None       # images per call, for images/s
    memory: dict = field(default_factory=dict)
    extra: Callable[[Settings], dict] | None = None


def _figures(case: Case, timing: Timing) -> dict:
    record = {"role": timing.role, "device": timing.device}
    if timing.skipped:
        record["skipped"] = timing.skipped
    if timing.error:
        record["error"] = timing.error
    if timing.ok:
        stats = timing.stats()
        record.update(stats)
        # Throughput from the median; its spread from the quartiles of time (q3 time -> q1 rate).
        record["mac_per_s"] = case.macs / stats["median_s"]
        record["mac_per_s_iqr"] = [case.macs / stats["q3_s"], case.macs / stats["q1_s"]]
        if case.items:
            record["images_per_s"] = case.items / stats["median_s"]
            record["images_per_s_iqr"] = [case.items / stats["q3_s"], case.items / stats["q1_s"]]
    return record


def run_case(case: Case, settings: Settings, devices: dict, history: dict) -> dict:
    """Warm up, check, time and summarise ``case``; ``history`` (family, label) -> seconds per
    MAC is read to skip hopeless contenders and updated with this case's medians."""
    progress(f"[{case.family}] {case.name}: warm-up and correctness check "
             f"({len(case.contenders)} contenders)")
    predicted = {c.label: history[(case.family, c.label)] * case.macs
                 for c in case.contenders if (case.family, c.label) in history}
    timings, outputs, warm = warm_up(case.contenders, predicted, settings)
    errors = [t.label for t in timings.values() if t.error]
    if REFERENCE in outputs:
        passed, detail = case.check(outputs)
    else:
        passed, detail = False, f"no {REFERENCE} reference output"
    if errors:
        passed, detail = False, f"{detail}; no output from {', '.join(errors)}"
    record = {"family": case.family, "name": case.name, "params": case.params, "macs": case.macs,
              "items": case.items, "memory": case.memory, "check": {"passed": passed, "detail": detail}}
    if not passed:
        progress(f"    CHECK FAILED: {detail}; no timings are reported for this case")
        record["contenders"] = {label: _figures(case, t) for label, t in timings.items()}
        return record
    progress(f"    check passed: {detail}")
    time_interleaved(case.contenders, timings, warm, settings)
    record["contenders"] = {label: _figures(case, t) for label, t in timings.items()}
    for label, t in timings.items():
        if t.ok:
            history[(case.family, label)] = t.median / case.macs
    record["speedups"] = _speedups(timings)
    record["peak_fraction"] = _peak_fractions(case, timings, devices)
    if case.extra is not None:
        record.update(case.extra(settings))
    progress("    done: " + "; ".join(
        f"{label} {_headline(case, record['contenders'][label])}" for label, t in timings.items() if t.ok))
    return record


def _speedups(timings: dict) -> dict:
    """For each binary contender: every other timed contender's median time over its own."""
    ok = {label: t for label, t in timings.items() if t.ok}
    return {label: {other: o.median / t.median for other, o in ok.items() if other != label}
            for label, t in ok.items() if t.role == "binary"}


def float_baselines(result: dict, label: str) -> dict:
    """other label -> speed-up of binary contender ``label`` over each timed float32 baseline
    that counts for it: those on the host CPU and those on ``label``'s own device (its float
    mode), never another device's."""
    device, contenders = result["contenders"][label]["device"], result["contenders"]
    return {other: ratio for other, ratio in result.get("speedups", {}).get(label, {}).items()
            if contenders[other]["role"] in FLOAT_ROLES and contenders[other]["device"] in (None, device)}


def fastest_float(result: dict, label: str) -> tuple[str, float] | None:
    """(label, speed-up of ``label`` over it) of the fastest float32 baseline that counts for
    binary contender ``label``, or None where none was timed."""
    ratios = float_baselines(result, label)
    return min(ratios.items(), key=lambda item: item[1]) if ratios else None


def _peak_fractions(case: Case, timings: dict, devices: dict) -> dict:
    fractions = {}
    for label, t in timings.items():
        device = devices.get(t.device)
        if t.ok and t.role == "binary" and device is not None and device.peak:
            rate = case.macs / t.median
            low, high = device.peak
            fractions[label] = {"of_high_peak": rate / high, "of_low_peak": rate / low}
    return fractions


def _headline(case: Case, figures: dict) -> str:
    if case.items:
        return f"{figures['images_per_s']:.4g} img/s"
    return f"{figures['mac_per_s'] / 1e9:.4g} G MAC/s"

