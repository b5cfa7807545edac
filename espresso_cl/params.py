"""Per-device tuning parameters, as data.

Each profile maps a kernel family (the stem of its ``kernels/<family>.cl`` file) to the
``#define`` values that file takes; ``WORD_BITS`` is added to every family. The
runtime picks a profile from the device (GPU, CPU, simulator); ``ESPRESSO_PARAMS=<profile>``
forces one, so that, for example, the GPU configuration runs on the PoCL CPU device in tests.
The values are part of every program's cache key, because they are prepended to the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PARAMS_ENV_VAR = "ESPRESSO_PARAMS"


@dataclass(frozen=True)
class Params:
    """A named set of tuning parameters; ``defines(family)`` gives one kernel file's defines."""

    name: str
    word_bits: int
    families: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)  # defines every family receives, like WORD_BITS

    def defines(self, family: str) -> dict:
        """The ``#define``s for ``kernels/<family>.cl`` (the file's own defaults fill the rest)."""
        return dict(self.families.get(family, {}), **self.common, WORD_BITS=self.word_bits)

    @property
    def words32(self) -> int:
        """32-bit words per kernel word (1 or 2)."""
        return self.word_bits // 32


def _gemm(tm, tn, wg_m, wg_n, use_local, tk):
    return {"TM": tm, "TN": tn, "WG_M": wg_m, "WG_N": wg_n, "USE_LOCAL": use_local, "TK": tk}


def _conv(tp, toc, wg_p, wg_oc, **local):
    """Window kernels: TP pixels x TOC channels per work-item, WG_OC x WG_P work-items."""
    return {"TP": tp, "TOC": toc, "WG_P": wg_p, "WG_OC": wg_oc, **local}


PROFILES = {
    # PoCL and other CPU runtimes: 64-bit words, register blocks, caches instead of local memory.
    "cpu": Params("cpu", 64, {
        # XNOR_BLOCK: one work-item per group, a TM x TN block of kernels/xnor_cpu.h's tiles.
        "bgemm": dict(_gemm(12, 16, 1, 1, 0, 16), XNOR_BLOCK=1),
        # KV: float vectors along K (AVX2 FMAs); 3 x 4 blocks fill the 16 vector registers.
        "fgemm": dict(_gemm(3, 4, 8, 4, 0, 16), KV=8),
        # IM2COL: window rows + bgemm (the direct kernel reached 0.6 of bgemm's rate).
        "bconv2d": _conv(4, 4, 1, 8, USE_LOCAL=0, IM2COL=1),
        "fconv2d": _conv(3, 4, 8, 4, USE_LOCAL=0, KV=8, PAD_C=64),  # fgemm's vector loop on window rows
        "bitplane": _conv(4, 8, 1, 4),
    }),
    # NVIDIA GPUs: popc is a native 32-bit instruction; local-memory tiles, 256 work-items.
    "gpu": Params("gpu", 32, {
        "bgemm": _gemm(4, 4, 16, 16, 1, 16),
        "fgemm": _gemm(4, 4, 16, 16, 1, 16),
        "bconv2d": _conv(4, 4, 16, 16, USE_LOCAL=1, TK=16),
        "fconv2d": _conv(4, 4, 16, 16, USE_LOCAL=1, TK=16),
        # 2 x 4 blocks keep bitplane_conv2d under 64 registers on sm_80 (4 x 4 took 95: 31%
        # occupancy); 4 channels per work-item share each pixel's plane popcounts.
        "bitplane": _conv(2, 4, 16, 16),
    }),
    # Anything else: small work-groups that every OpenCL 1.2 device accepts.
    "generic": Params("generic", 32, {
        "bgemm": _gemm(2, 2, 4, 4, 0, 8),
        "fgemm": _gemm(2, 2, 4, 4, 0, 8),
        "bconv2d": _conv(2, 2, 4, 4, USE_LOCAL=0),
        "fconv2d": _conv(2, 2, 4, 4, USE_LOCAL=0),
        "bitplane": _conv(2, 2, 4, 4),
    }),
}


# x86-64 CPUs with AVX-512 VPOPCNTDQ under PoCL: the "cpu" profile plus ESPRESSO_AVX512 for
# every family (kernels/xnor_cpu.h's micro-kernels; PoCL itself compiles for an AVX2 CPU model).
# bgemm: blocks of TM x TN from 3 x 8 register tiles.
PROFILES["cpu-avx512"] = Params(
    "cpu-avx512", 64,
    dict(PROFILES["cpu"].families, bgemm=dict(_gemm(12, 32, 1, 1, 0, 16), XNOR_BLOCK=1),
         # fgemm, fconv2d: kernels/float_cpu.h's 4 x 6 AVX-512 float tiles, 1.2-1.4x the
         # "cpu" profile's AVX2 3 x 4 tiles on Zen 4 (KV is for compilers without AVX-512).
         fgemm=dict(_gemm(4, 6, 16, 1, 0, 16), KV=8),
         fconv2d=_conv(4, 6, 8, 2, USE_LOCAL=0, KV=8, PAD_C=64)),
    common={"ESPRESSO_AVX512": 1},
)
AVX512_PROFILE = "cpu-avx512"

# Intel's oneAPI OpenCL CPU runtime (docs/intel.md; pip install 'espresso_cl[intel]'). Its
# compiler runs work-items of dimension 0 as SIMD lanes once a work-group spans 16 of them,
# which turns these kernels' per-lane rows of B into gathers (bgemm at WG_N = 16: 0.6x);
# at 8 or fewer it keeps one work-item per thread and its scalar popcnt loop reached
# 345-360 G binary-MAC/s (best sample) at 1024x1024x4096 on 2 quiet Zen 4 cores; block
# shapes from 2x2 to 8x2 and WG_N 4-8 were within 5% (4x2, 8 wide: best). IM2COL beat the
# direct bconv2d kernel there too (1.3-1.4x). Its frontend targets SPIR, so neither
# __x86_64__ (POPC takes popcount(), which it inlines) nor ESPRESSO_AVX512's micro-kernels
# apply. Values of its own, so that PoCL's tuning never moves it.
INTEL_CPU_PROFILE = "intel-cpu"
PROFILES[INTEL_CPU_PROFILE] = Params(INTEL_CPU_PROFILE, 64, {
    "bgemm": _gemm(4, 2, 1, 8, 0, 16),
    "fgemm": dict(_gemm(3, 4, 4, 4, 0, 16), KV=8),
    "bconv2d": _conv(4, 4, 1, 8, USE_LOCAL=0, IM2COL=1),
    "fconv2d": _conv(3, 4, 4, 4, USE_LOCAL=0, KV=8, PAD_C=64),  # PAD_C: frame copy 185 -> 36 ms
    "bitplane": _conv(4, 8, 1, 4),
})


def avx512_unsupported(device) -> str:
    """Why ``device`` cannot run the "cpu-avx512" profile ('' when it can)."""
    from . import cpu_features
    from .runtime import _is_pocl, _kind

    if _kind(device) != "cpu" or not _is_pocl(device):
        return f"{device.name.strip()} is not a PoCL CPU device"
    if not cpu_features.is_x86_64():
        return "the CPU is not x86-64"
    missing = cpu_features.missing_avx512()
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    return ""


def params_for(device) -> Params:
    """The profile for ``device``, or the one ``$ESPRESSO_PARAMS`` names."""
    forced = os.environ.get(PARAMS_ENV_VAR, "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"{PARAMS_ENV_VAR}={forced!r} is not a profile; choose one of {sorted(PROFILES)}")
        if forced == AVX512_PROFILE and avx512_unsupported(device):
            raise ValueError(f"{PARAMS_ENV_VAR}={forced!r}: {avx512_unsupported(device)}")
        return PROFILES[forced]
    from .runtime import _is_intel_cpu, _kind

    kind = _kind(device)
    if _is_intel_cpu(device):
        return PROFILES[INTEL_CPU_PROFILE]
    if kind == "cpu" and not avx512_unsupported(device):
        return PROFILES[AVX512_PROFILE]
    if kind in ("gpu", "cpu"):
        return PROFILES[kind]
    return PROFILES["generic"]
