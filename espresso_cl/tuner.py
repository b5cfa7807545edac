"""The tuner (``python -m espresso_cl tune``): searches each kernel family's tuning values for
the current device, CLBlast style, and keeps the fastest in the tuning database.

A family's search space is data: one or more :class:`Space`\\ s, each a set of candidate values
per parameter (a path into the family's dataclass, ``tiles.tm``) and constraints on them
(:class:`MultipleOf`, :class:`AtMost`, :class:`Needs`) that name device and profile facts
(work-group and local-memory limits, the micro-kernel's register tile) instead of code paths.
Each candidate profile is the device's hand-set profile with that family replaced. It runs the
family's representative shapes (the networks' layer shapes, the 1024 x 1024 x 4096 GEMM) on
fixed inputs; its output must equal the hand-set profile's bit for bit (the float families get
small integer inputs, whose sums are exact in any order), or it is rejected. A candidate that
fails to build or to run is skipped. Times are medians of samples after a warm-up call, and
each candidate is compared with the hand-set profile as timed at most :data:`REBASE_EVERY`
candidates before (a shared machine's load drifts). The winner is timed again against the
hand-set profile, alternately, before it is kept: it must beat it by :data:`MIN_GAIN` on the
geometric mean over the shapes.

The search of a family stops at its share of the time budget; the candidates are tried in a
fixed pseudo-random order (CLBlast's random search), the family's spaces in turn, so a bounded
search samples the whole space.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from . import __version__ as _version
from . import ops, reference, tuning, tuning_db
from .runtime import Runtime
from .tensor import Tensor
from .tuning import Profile

MIN_GAIN = 1.03  # below this, a timing difference on a shared machine is noise: keep the hand-set values
REBASE_EVERY = 4  # candidates between timings of the hand-set values, whom each is compared with


# -- search spaces, as data ------------------------------------------------------------------

@dataclass(frozen=True)
class MultipleOf:
    """Parameter ``parameter`` is a multiple of ``factor`` (a number or a fact's name)."""

    parameter: str
    factor: object


@dataclass(frozen=True)
class AtMost:
    """The sum over ``terms`` of each term's product (parameters, facts or numbers) is at most
    ``limit`` (a number or a fact's name)."""

    terms: tuple
    limit: object


@dataclass(frozen=True)
class Needs:
    """The space applies only where fact ``fact`` is true."""

    fact: str


@dataclass(frozen=True)
class Space:
    """Candidate values per parameter (paths into the family's dataclass) and the constraints
    every candidate must meet."""

    parameters: dict
    constraints: tuple = ()


def _value(name, candidate: dict, facts: dict):
    if not isinstance(name, str):
        return name
    value = candidate[name] if name in candidate else facts[name]
    return int(value) if isinstance(value, bool) else value


def allowed(constraint, candidate: dict, facts: dict) -> bool:
    if isinstance(constraint, MultipleOf):
        return _value(constraint.parameter, candidate, facts) % _value(constraint.factor, candidate, facts) == 0
    if isinstance(constraint, AtMost):
        total = sum(math.prod(_value(name, candidate, facts) for name in term) for term in constraint.terms)
        return total <= _value(constraint.limit, candidate, facts)
    if isinstance(constraint, Needs):
        return bool(facts[constraint.fact])
    raise TypeError(f"unknown constraint {constraint!r}")


def candidates(spaces, facts: dict) -> list:
    """Every candidate (a dict of parameter path -> value) of ``spaces`` that meets its space's
    constraints: each space in a fixed pseudo-random order, the spaces taken in turn, so that
    a bounded search samples every strategy (a kernel, a ``prefer`` order) alike."""
    shuffle = random.Random(0).shuffle
    per_space = []
    for space in spaces:
        names = list(space.parameters)
        found = [dict(zip(names, values)) for values in itertools.product(*(space.parameters[n] for n in names))]
        found = [c for c in found if all(allowed(rule, c, facts) for rule in space.constraints)]
        shuffle(found)
        per_space.append(found)
    return [c for turn in itertools.zip_longest(*per_space) for c in turn if c is not None]


def nested(candidate: dict) -> dict:
    """{"tiles.tm": 4, "kv": 8} -> {"tiles": {"tm": 4}, "kv": 8} (tuning.with_overrides' form)."""
    out: dict = {}
    for path, value in candidate.items():
        *parents, leaf = path.split(".")
        place = out
        for parent in parents:
            place = place.setdefault(parent, {})
        place[leaf] = value
    return out


def facts_of(traits, profile: Profile) -> dict:
    """What constraints may name: device limits and the profile's code."""
    return {"max_work_group_size": traits.max_work_group_size, "local_mem_bytes": traits.local_mem_bytes,
            "word_bytes": profile.word_bits // 8, "x86_machine_code": profile.x86_machine_code,
            # xnor_cpu.h's register tile: 3 x 8 with AVX-512, 2 x 4 otherwise
            "xnor_rows": 3 if profile.x86_machine_code else 2,
            "xnor_cols": 8 if profile.x86_machine_code else 4,
            # float_cpu.h's AVX-512 tile: TM x 6 with TM <= 4 (kernels/fgemm.cl's #error)
            "float_tn_step": 6 if profile.x86_machine_code else 1,
            "float_tn_max": 6 if profile.x86_machine_code else 64,
            "float_tm_max": 4 if profile.x86_machine_code else 64}


_WORK_GROUP = AtMost((("tiles.wg_m", "tiles.wg_n"),), "max_work_group_size")
_REGISTERS = AtMost((("tiles.tm", "tiles.tn"),), 64)  # accumulators per work-item
# Local tiles of TK words for BM rows of A and BN rows of B (kernels/tiles.h, TK_PAD = TK + 1).
_LOCAL_WORDS = AtMost((("tiles.wg_m", "tiles.tm", "tiles.tk", "word_bytes"),
                       ("tiles.wg_n", "tiles.tn", "tiles.tk", "word_bytes")), "local_mem_bytes")
_CPU_TILED = {"tiles.tm": (1, 2, 4, 8), "tiles.tn": (1, 2, 4, 8), "tiles.wg_m": (1, 2, 4),
              "tiles.wg_n": (1, 2, 4, 8, 16), "tiles.use_local": (False,)}
_CPU_LOCAL = {"tiles.tm": (2, 4, 8), "tiles.tn": (2, 4, 8), "tiles.wg_m": (1, 4, 8, 16),
              "tiles.wg_n": (8, 16, 32), "tiles.use_local": (True,), "tiles.tk": (16, 32, 64)}
_GPU_TILED = {"tiles.tm": (2, 4, 8), "tiles.tn": (2, 4, 8), "tiles.wg_m": (8, 16), "tiles.wg_n": (8, 16, 32),
              "tiles.use_local": (True, False), "tiles.tk": (8, 16, 32)}
_FLOAT_KV = {"kv": (1, 4, 8)}  # float_cpu.h: 1, 4 or 8 lanes
_FLOAT_TILE = (MultipleOf("tiles.tn", "float_tn_step"), AtMost((("tiles.tn",),), "float_tn_max"),
               AtMost((("tiles.tm",),), "float_tm_max"))

# Per family: the spaces searched on CPU devices and on others.
SPACES = {
    "bgemm": {
        "cpu": (Space({"kernel": ("cpu_blocks",), "tiles.tm": (2, 3, 4, 6, 8, 12, 24),
                       "tiles.tn": (4, 8, 16, 32, 64), "tiles.wg_m": (1,), "tiles.wg_n": (1,)},
                      (MultipleOf("tiles.tm", "xnor_rows"), MultipleOf("tiles.tn", "xnor_cols"))),
                Space(dict(_CPU_TILED, kernel=("tiled",)), (_WORK_GROUP, _REGISTERS)),
                # Local tiles on a CPU: Intel's runtime runs 16-wide groups as SIMD lanes, which
                # then read B from a cached local tile instead of gathering from global memory.
                Space(dict(_CPU_LOCAL, kernel=("tiled",)), (_WORK_GROUP, _REGISTERS, _LOCAL_WORDS))),
        "other": (Space(dict(_GPU_TILED, kernel=("tiled",)), (_WORK_GROUP, _REGISTERS, _LOCAL_WORDS)),),
    },
    "fgemm": {
        "cpu": (Space(dict(_FLOAT_KV, **{"tiles.tm": (2, 3, 4, 6), "tiles.tn": (2, 4, 6, 8),
                                         "tiles.wg_m": (1, 4, 8, 16), "tiles.wg_n": (1, 2, 4)}),
                      (_WORK_GROUP, _REGISTERS) + _FLOAT_TILE),),
        "other": (Space(dict(_GPU_TILED, kv=(1,)), (_WORK_GROUP, _REGISTERS, _LOCAL_WORDS)),),
    },
    "bconv": {
        "cpu": (Space({"prefer": (("blocks", "im2col"),), "blocks_tiles.tm": (2, 3, 6, 12, 24),
                       "blocks_tiles.tn": (8, 16, 32, 64)},
                      (MultipleOf("blocks_tiles.tm", "xnor_rows"), MultipleOf("blocks_tiles.tn", "xnor_cols"))),
                Space({"prefer": (("im2col",),)}),
                Space(dict(_CPU_TILED, prefer=(("direct",),)), (_WORK_GROUP, _REGISTERS))),
        "other": (Space(dict(_GPU_TILED, prefer=(("direct",),)), (_WORK_GROUP, _REGISTERS, _LOCAL_WORDS)),
                  Space({"prefer": (("im2col",),)})),
    },
    "fconv": {
        "cpu": (Space(dict(_FLOAT_KV, **{"tiles.tm": (2, 3, 4), "tiles.tn": (2, 4, 6),
                                         "tiles.wg_m": (1, 4, 8), "tiles.wg_n": (1, 2, 4), "pad_c": (16, 64)}),
                      (_WORK_GROUP, _REGISTERS) + _FLOAT_TILE),),
        "other": (Space(dict(_GPU_TILED, kv=(1,)), (_WORK_GROUP, _REGISTERS, _LOCAL_WORDS)),),
    },
    "bitplane": {
        # bitplane_avx512.cl's tiles: 4 (or 1) pixels x 32 channels, TN = 32.
        "cpu": (Space({"prefer": (("avx512", "tiled"),), "avx512_tiles.tm": (4, 8, 12, 16, 24),
                       "avx512_tiles.tn": (32,)}, (Needs("x86_machine_code"),)),
                Space({"prefer": (("tiled",),), "tiles.tm": (2, 4, 8), "tiles.tn": (4, 8, 16),
                       "tiles.wg_m": (1, 2), "tiles.wg_n": (1, 4, 8)}, (_WORK_GROUP, _REGISTERS))),
        "other": (Space({"prefer": (("tiled",),), "tiles.tm": (1, 2, 4), "tiles.tn": (2, 4, 8),
                         "tiles.wg_m": (8, 16), "tiles.wg_n": (8, 16)}, (_WORK_GROUP, _REGISTERS)),),
    },
}


# -- representative shapes -------------------------------------------------------------------

def _pm1(rng, shape) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


def _small_ints(rng, shape) -> np.ndarray:
    # Integers in [-2, 2]: every partial sum of the float families' products is an integer far
    # below 2^24, so any summation order gives the same float32 bits.
    return rng.integers(-2, 3, shape).astype(np.float32)


def _bits(runtime, values) -> Tensor:
    return Tensor.from_numpy(runtime, reference.pack_bits(values), "bits", shape=values.shape)


@dataclass(frozen=True)
class Shape:
    """One timed problem: ``label``, its multiply-accumulates, and ``arrays(rng)`` -> its inputs,
    ``run(runtime, arrays)`` -> a zero-argument call returning the output tensor."""

    label: str
    macs: int
    arrays: Callable
    run: Callable


def gemm_shape(m: int, n: int, k: int) -> Shape:
    return Shape(f"{m}x{n}x{k}", m * n * k, lambda rng: (_pm1(rng, (m, k)), _pm1(rng, (n, k))),
                 lambda rt, arrays: (lambda a=_bits(rt, arrays[0]), b=_bits(rt, arrays[1]): ops.bgemm(a, b)))


def fgemm_shape(m: int, n: int, k: int) -> Shape:
    return Shape(f"{m}x{n}x{k}", m * n * k, lambda rng: (_small_ints(rng, (m, k)), _small_ints(rng, (n, k))),
                 lambda rt, arrays: (lambda a=Tensor.from_numpy(rt, arrays[0], "float32"),
                                     b=Tensor.from_numpy(rt, arrays[1], "float32"): ops.fgemm(a, b)))


def _conv_macs(n, h, w, c, oc, k=3) -> int:
    return n * h * w * oc * k * k * c  # 'same', stride 1


def bconv_shape(n, h, w, c, oc) -> Shape:
    return Shape(f"{n}x{h}x{w}x{c}->{oc}", _conv_macs(n, h, w, c, oc),
                 lambda rng: (_pm1(rng, (n, h, w, c)), _pm1(rng, (oc, 3, 3, c))),
                 lambda rt, arrays: (lambda x=_bits(rt, arrays[0]), f=_bits(rt, arrays[1]):
                                     ops.bconv2d(x, f, 1, "same")))


def fconv_shape(n, h, w, c, oc) -> Shape:
    return Shape(f"{n}x{h}x{w}x{c}->{oc}", _conv_macs(n, h, w, c, oc),
                 lambda rng: (_small_ints(rng, (n, h, w, c)), _small_ints(rng, (oc, 3, 3, c))),
                 lambda rt, arrays: (lambda x=Tensor.from_numpy(rt, arrays[0], "float32"),
                                     f=Tensor.from_numpy(rt, arrays[1], "float32"): ops.fconv2d(x, f, 1, "same")))


def bitplane_shape(n, h, w, c, oc) -> Shape:
    return Shape(f"{n}x{h}x{w}x{c}->{oc} uint8", _conv_macs(n, h, w, c, oc),
                 lambda rng: (rng.integers(0, 256, (n, h, w, c)).astype(np.uint8), _pm1(rng, (oc, 3, 3, c))),
                 lambda rt, arrays: (lambda x=Tensor.from_numpy(rt, arrays[0], "uint8"), f=_bits(rt, arrays[1]):
                                     ops.bitplane_conv2d(x, f, 1, "same")))


# Per family: (full shapes, quick shapes); the first is the headline. The GEMM of the issue,
# the MLP's hidden layer at batch 64, CIFAR-10 CNN layers (conv1 on pixels, conv3, conv5) at batch 16.
SHAPES = {
    "bgemm": ((gemm_shape(1024, 1024, 4096), gemm_shape(64, 4096, 4096)),
              (gemm_shape(256, 256, 1024), gemm_shape(16, 1024, 1024))),
    "fgemm": ((fgemm_shape(256, 1024, 1024), fgemm_shape(64, 1024, 784)),
              (fgemm_shape(64, 256, 256),)),
    "bconv": ((bconv_shape(16, 16, 16, 128, 256), bconv_shape(16, 8, 8, 256, 512)),
              (bconv_shape(2, 16, 16, 32, 64),)),
    "fconv": ((fconv_shape(4, 16, 16, 128, 128),), (fconv_shape(1, 16, 16, 32, 32),)),
    "bitplane": ((bitplane_shape(16, 32, 32, 3, 128),), (bitplane_shape(2, 32, 32, 3, 32),)),
}


# -- timing ----------------------------------------------------------------------------------

def median_seconds(runtime, call: Callable, samples: int = 5, min_sample_s: float = 0.05) -> float:
    """Seconds per call: a warm-up call, then the median of ``samples`` samples of as many calls
    as fill ``min_sample_s``. The timer the tuner uses unless told otherwise (tests inject one)."""
    call()
    runtime.queue.finish()
    start = time.perf_counter()
    call()
    runtime.queue.finish()
    once = max(time.perf_counter() - start, 1e-6)
    number = max(1, int(min_sample_s / once))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(number):
            call()
        runtime.queue.finish()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


# -- the search ------------------------------------------------------------------------------

@dataclass
class FamilyResult:
    family: str
    hand_set: dict            # the family's hand-set values (dataclasses.asdict)
    tuned: dict | None        # the winner's values; None: the hand-set values stay
    shapes: list              # labels
    hand_set_rates: list      # G MAC/s per shape
    tuned_rates: list         # G MAC/s per shape (the hand-set's again where nothing won)
    tried: int = 0
    rejected: list = field(default_factory=list)  # (values, why): failed to build/run, or mismatched
    stopped_by_budget: bool = False
    searched: tuple = ()      # the parameter paths the spaces name (what the table shows)

    @property
    def gain(self) -> float:
        return _geomean([t / h for t, h in zip(self.tuned_rates, self.hand_set_rates)])


def _geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


class _Using:
    """Runs ``runtime`` under ``profile`` for a while (the tuner's own runtime only)."""

    def __init__(self, runtime, profile):
        self.runtime, self.profile = runtime, profile

    def __enter__(self):
        self.saved, self.runtime.profile = self.runtime.profile, self.profile

    def __exit__(self, *exc):
        self.runtime.profile = self.saved


def _outputs_and_times(runtime, profile, shapes, inputs, timer) -> tuple:
    outputs, times = [], []
    with _Using(runtime, profile):
        for shape, arrays in zip(shapes, inputs):
            call = shape.run(runtime, arrays)
            outputs.append(call().numpy())
            times.append(timer(runtime, call))
    return outputs, times


def _first_error(exc: Exception) -> str:
    """The line of a build log that says what went wrong (else the message's first line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return ((errors or lines or [type(exc).__name__])[0])[:200]


def tune_family(runtime, family: str, base: Profile, shapes, spaces, budget_s: float,
                max_candidates: int, timer=median_seconds, clock=time.monotonic, log=print) -> FamilyResult:
    """Search ``family`` over ``spaces`` from the hand-set profile ``base`` (see the module)."""
    rng = np.random.default_rng(1)
    inputs = [shape.arrays(rng) for shape in shapes]
    expected, base_times = _outputs_and_times(runtime, base, shapes, inputs, timer)
    hand_set = getattr(base, family)
    result = FamilyResult(family, asdict(hand_set), None, [s.label for s in shapes],
                          [s.macs / t / 1e9 for s, t in zip(shapes, base_times)], [],
                          searched=tuple(dict.fromkeys(p for space in spaces for p in space.parameters)))
    deadline = clock() + budget_s
    best = None  # (score, profile, values)
    seen = {hand_set}
    for candidate in candidates(spaces, facts_of(runtime.traits, base)):
        if result.tried >= max_candidates or clock() > deadline:
            result.stopped_by_budget = clock() > deadline
            break
        profile = tuning.with_overrides(base, {family: nested(candidate)}, name=f"{base.name}+candidate")
        if getattr(profile, family) in seen:
            continue
        seen.add(getattr(profile, family))
        result.tried += 1
        if result.tried % REBASE_EVERY == 0:  # the machine's load drifts: a fresh yardstick
            base_times = _outputs_and_times(runtime, base, shapes, inputs, timer)[1]
        try:
            outputs, times = _outputs_and_times(runtime, profile, shapes, inputs, timer)
        except Exception as exc:  # a build or launch failure of this candidate only
            result.rejected.append((candidate, f"failed: {_first_error(exc)}"))
            continue
        wrong = [s.label for s, got, want in zip(shapes, outputs, expected)
                 if got.shape != want.shape or got.tobytes() != want.tobytes()]
        if wrong:
            result.rejected.append((candidate, f"output differs from the hand-set profile's at {wrong}"))
            continue
        score = _geomean([b / t for b, t in zip(base_times, times)])
        log(f"  {family} {candidate}: {score:.2f}x")
        if best is None or score > best[0]:
            best = (score, profile, candidate)
    if best is not None and best[0] >= MIN_GAIN:
        # Time the winner and the hand-set values again, alternately, so that a busy moment
        # during the search does not decide.
        again_base, again_best = [], []
        for _ in range(2):
            again_base.append(_outputs_and_times(runtime, base, shapes, inputs, timer)[1])
            again_best.append(_outputs_and_times(runtime, best[1], shapes, inputs, timer)[1])
        base_t = [min(ts) for ts in zip(*again_base)]
        best_t = [min(ts) for ts in zip(*again_best)]
        if _geomean([b / t for b, t in zip(base_t, best_t)]) >= MIN_GAIN:
            result.tuned = asdict(getattr(best[1], family))
            result.hand_set_rates = [s.macs / t / 1e9 for s, t in zip(shapes, base_t)]
            result.tuned_rates = [s.macs / t / 1e9 for s, t in zip(shapes, best_t)]
    if result.tuned is None:
        result.tuned_rates = list(result.hand_set_rates)
    return result


# -- the command -----------------------------------------------------------------------------

DEFAULT_BUDGET_S = 240.0
QUICK_BUDGET_S = 30.0


def tune(device_spec: str | None = None, families=tuning.FAMILIES, quick: bool = False,
         budget_s: float | None = None, timer=median_seconds, log=print) -> tuple:
    """Tune ``families`` on the device ``device_spec`` names (default ``$ESPRESSO_DEVICE``):
    (hand-set profile, traits, [FamilyResult]). The budget is shared equally by the families."""
    from .device import select_device, traits_of

    device = select_device(device_spec)
    traits = traits_of(device)
    base = tuning.profile_for(traits, tuned=False)
    runtime = Runtime(device, profile=base)
    budget_s = budget_s if budget_s is not None else (QUICK_BUDGET_S if quick else DEFAULT_BUDGET_S)
    kind = "cpu" if traits.kind == "cpu" else "other"
    results = []
    for family in families:
        log(f"tuning {family} on {traits.name} ({base.name})")
        shapes = SHAPES[family][1 if quick else 0]
        results.append(tune_family(runtime, family, base, shapes, SPACES[family][kind],
                                   budget_s / len(families), 8 if quick else 200, timer=timer, log=log))
    return base, traits, results


def entry(traits, base: Profile, results) -> dict | None:
    """The database entry of a tuning run (None when no family beat its hand-set values)."""
    won = [r for r in results if r.tuned is not None]
    if not won:
        return None
    return {"device": tuning_db.device_key(traits.identity), "profile": base.name,
            "overrides": {r.family: r.tuned for r in won},
            "measured": {r.family: {"shapes": r.shapes, "hand_set_gmacs": [round(v, 2) for v in r.hand_set_rates],
                                    "tuned_gmacs": [round(v, 2) for v in r.tuned_rates]} for r in won},
            "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "library": _version}


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _short(values: dict, hand_set: dict | None = None, shown=()) -> str:
    """The fields of ``values`` that differ from ``hand_set``; where there is none, those
    named in ``shown`` (all if empty)."""
    flat = _flat(values)
    if shown and hand_set is None:
        flat = {k: v for k, v in flat.items() if k in shown}
    if hand_set is not None:
        base = _flat(hand_set)
        flat = {k: v for k, v in flat.items() if base.get(k) != v}
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
                    for k, v in flat.items()) or "(same)"


def table(results) -> str:
    """A Markdown table: family, shape, hand-set values and rate, tuned values and rate, gain."""
    lines = ["| family | shape | hand-set | G MAC/s | tuned (changes) | G MAC/s | gain |",
             "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for r in results:
        for i, label in enumerate(r.shapes):
            hand = _short(r.hand_set, shown=r.searched) if i == 0 else ""
            tuned = ("" if i else _short(r.tuned, r.hand_set)) if r.tuned is not None else ("" if i else "(kept)")
            lines.append(f"| {r.family if i == 0 else ''} | {label} | {hand} | {r.hand_set_rates[i]:.1f} | "
                         f"{tuned} | {r.tuned_rates[i]:.1f} | {r.tuned_rates[i] / r.hand_set_rates[i]:.2f}x |")
    return "\n".join(lines)
