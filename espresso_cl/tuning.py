"""Tuning profiles, as data: one named :class:`Profile` per kind of device.

A profile holds, per kernel family, a small dataclass of tile sizes and host strategies (which
kernel variant to prefer: :mod:`espresso_cl.registry` knows what each variant can do). It says
which devices it is chosen for, whether its kernels hold x86 machine code (then it runs only
on PoCL CPU devices with those features, and never under Oclgrind), and the profile to fall back
to where it cannot run. ``ESPRESSO_PARAMS=<profile>`` forces one (:mod:`espresso_cl.settings`),
so that, for example, the GPU configuration runs on the PoCL CPU device in tests.

The values reach the kernels as ``#define`` lines prepended to the source, so they are part of
every program's cache key. Pure Python: importable without pyopencl.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, fields, is_dataclass, replace

from . import settings, tuning_db
from .cpu_features import AVX512_XNOR


@dataclass(frozen=True)
class Tiles:
    """A work-item's register block of ``tm`` rows x ``tn`` columns and a work-group of
    ``wg_m`` x ``wg_n`` work-items; with ``use_local``, tiles of ``tk`` words along K are staged
    in local memory. For convolutions rows are output pixels and columns output channels.
    ``rows_first``: in a grid of one work-item per block (``registry.blocks_grid``), dimension 0
    runs over row blocks, not column blocks; the launcher sets it per product
    (``registry.rows_first``), not the profile."""

    tm: int
    tn: int
    wg_m: int = 1
    wg_n: int = 1
    use_local: bool = False
    tk: int = 16
    rows_first: bool = False

    def defines(self) -> dict:
        return {"TM": self.tm, "TN": self.tn, "WG_M": self.wg_m, "WG_N": self.wg_n,
                "USE_LOCAL": int(self.use_local), "TK": self.tk, "ROWS_FIRST": int(self.rows_first)}


@dataclass(frozen=True)
class MmaTiles:
    """The tensor-core GEMM's tiles (kernels/bgemm_mma.cl): a work-group of ``warps_m`` x
    ``warps_n`` warps, each ``frags_m`` x ``frags_n`` m16n8k256 fragments (16 x 8 outputs)."""

    warps_m: int = 2
    warps_n: int = 4
    frags_m: int = 4
    frags_n: int = 4

    @property
    def work_group(self) -> int:
        return 32 * self.warps_m * self.warps_n

    @property
    def block(self) -> tuple:
        """(rows, columns) of C a work-group computes."""
        return 16 * self.frags_m * self.warps_m, 8 * self.frags_n * self.warps_n

    def defines(self) -> dict:
        return {"MMA_WARPS_M": self.warps_m, "MMA_WARPS_N": self.warps_n,
                "MMA_MF": self.frags_m, "MMA_NF": self.frags_n}


@dataclass(frozen=True)
class BinaryGemm:
    """``kernel``: "tiled" (bgemm.cl, one output per register slot, local-memory tiles on GPUs)
    or "cpu_blocks" (bgemm_cpu.cl, a TM x TN block of xnor_cpu.h register tiles per work-item);
    each with fused batch-norm + sign and affine variants. ``mma``: tiles of the 1-bit
    tensor-core GEMM (kernels/bgemm_mma.cl), which the profile prefers on devices whose
    tensor-core probe passes (espresso_cl/ops/tensor_cores.py); None: never. ``gemv``:
    bgemv.cl's tiles, for products of at most ``gemv.tm`` rows (a work-group per
    ``wg_m * tn`` columns, K split over ``wg_n`` work-items, ``tk`` words each per step);
    None: bgemm's own kernel takes every M."""

    kernel: str
    tiles: Tiles
    mma: MmaTiles | None = None
    gemv: Tiles | None = None


@dataclass(frozen=True)
class FloatGemm:
    tiles: Tiles
    kv: int = 1  # floats per vector along K (1: scalar loop)

    def defines(self) -> dict:
        return dict(self.tiles.defines(), KV=self.kv)


@dataclass(frozen=True)
class BinaryConv:
    """``prefer``: the variants to try, in order ("blocks": one kernel on bgemm_cpu's register
    tiles, CPUs with 64-bit words; "im2col": window rows + the GEMM; "igemm": windows gathered
    into bgemm's local tiles; "direct": the tiled kernel, which always works). The conv +
    threshold kernels exist for "blocks", "igemm" and "direct" (where listed); those of
    "blocks" and "direct" also pool. ``tiles`` are the direct and igemm kernels',
    ``blocks_tiles`` the blocks kernel's (multiples of xnor_cpu.h's register tile)."""

    prefer: tuple
    tiles: Tiles
    blocks_tiles: Tiles = Tiles(12, 32)


@dataclass(frozen=True)
class FloatConv:
    tiles: Tiles
    kv: int = 1     # as FloatGemm
    pad_c: int = 1  # channels one work-item of the frame copy moves

    def defines(self) -> dict:
        return dict(self.tiles.defines(), KV=self.kv, PAD_C=self.pad_c)


@dataclass(frozen=True)
class BitplaneConv:
    """``prefer`` as BinaryConv ("avx512": blocks of ``avx512_tiles``, 4 pixels x 32 channels,
    with a fused batch-norm + sign variant; "tiled": the portable kernel)."""

    prefer: tuple
    tiles: Tiles
    avx512_tiles: Tiles = Tiles(4, 32)


# eq=False: a profile is itself (hash by identity, cheap for the registry's caches).
@dataclass(frozen=True, eq=False)
class Profile:
    """A named set of tuning values, and the devices it is for."""

    name: str
    word_bits: int                 # the kernels' word: 64 on CPUs, 32 where popc is 32-bit
    bgemm: BinaryGemm
    fgemm: FloatGemm
    bconv: BinaryConv
    fconv: FloatConv
    bitplane: BitplaneConv
    # Chosen automatically for devices of these implementations / kinds (empty: any).
    implementations: tuple = ()
    kinds: tuple = ()
    # x86 features its kernels' machine code uses; non-empty means the profile runs only on
    # PoCL CPU devices of an x86-64 CPU that has them (and never under Oclgrind).
    cpu_features: tuple = ()
    fallback: str | None = None    # the profile to use where this one cannot run
    # Work-items per work-group of the kernels without a tile (packing, pooling, elementwise).
    # Fixed by the layer, never left to the driver: PoCL picks one per global size, and
    # compiles the kernel again for each (espresso_cl/ops/launch.py).
    group_items: int = 256

    @property
    def x86_machine_code(self) -> bool:
        return bool(self.cpu_features)

    @property
    def simulatable(self) -> bool:
        """Whether Oclgrind can run this profile's kernels (portable OpenCL C only)."""
        return not self.x86_machine_code

    @property
    def words32(self) -> int:
        """32-bit words per kernel word (1 or 2)."""
        return self.word_bits // 32

    def common_defines(self) -> dict:
        """The defines every kernel file receives."""
        defines = {"WORD_BITS": self.word_bits}
        if self.x86_machine_code:
            defines["ESPRESSO_AVX512"] = 1
        return defines

    def defines(self, tiles_or_family=None) -> dict:
        """Common defines plus a family's own (a dataclass with ``defines()``, or Tiles)."""
        own = tiles_or_family.defines() if tiles_or_family is not None else {}
        return dict(own, **self.common_defines())

    def cannot_run_on(self, traits) -> str:
        """Why this profile's kernels cannot run on a device ('' when they can)."""
        if not self.x86_machine_code:
            return ""
        if traits.kind != "cpu" or traits.implementation != "pocl":
            return f"{traits.name} is not a PoCL CPU device"
        if not traits.cpu_features:
            return "the CPU is not x86-64"
        missing = [name for name in self.cpu_features if name not in traits.cpu_features]
        return f"the CPU lacks {', '.join(missing)}" if missing else ""

    def chosen_for(self, traits) -> bool:
        return ((not self.implementations or traits.implementation in self.implementations)
                and (not self.kinds or traits.kind in self.kinds))


_CPU = Profile(
    # PoCL and other CPU runtimes: 64-bit words, register blocks, caches instead of local memory.
    "cpu", 64,
    # 12 x 16 blocks of xnor_cpu.h's tiles.
    bgemm=BinaryGemm("cpu_blocks", Tiles(12, 16)),
    # 3 x 4 blocks of float8 K-vectors fill the 16 AVX2 vector registers.
    fgemm=FloatGemm(Tiles(3, 4, 8, 4), kv=8),
    # Window rows + bgemm: the direct kernel reached 0.6 of bgemm's rate.
    bconv=BinaryConv(("im2col",), Tiles(4, 4, 1, 8)),
    fconv=FloatConv(Tiles(3, 4, 8, 4), kv=8, pad_c=64),  # fgemm's vector loop on window rows
    bitplane=BitplaneConv(("tiled",), Tiles(4, 8, 1, 4)),
    kinds=("cpu",),
)

PROFILES = {
    # Intel's oneAPI OpenCL CPU runtime (docs/intel.md). Its compiler runs work-items of
    # dimension 0 as SIMD lanes once a work-group spans 16 of them, which turns these kernels'
    # per-lane rows of B into gathers (bgemm at WG_N = 16: 0.6x); at 8 or fewer it keeps one
    # work-item per thread and its scalar popcnt loop reached 345-360 G binary-MAC/s at
    # 1024x1024x4096 on 2 quiet Zen 4 cores (block shapes 2x2 to 8x2 and WG_N 4-8 within 5%;
    # 4x2, 8 wide: best). im2col beat the direct conv there too (1.3-1.4x). Its frontend
    # targets SPIR, so neither POPC's clang builtin nor the AVX-512 micro-kernels apply.
    "intel-cpu": replace(
        _CPU, name="intel-cpu", implementations=("intel-cpu",),
        bgemm=BinaryGemm("tiled", Tiles(4, 2, 1, 8)),
        fgemm=FloatGemm(Tiles(3, 4, 4, 4), kv=8),
        fconv=FloatConv(Tiles(3, 4, 4, 4), kv=8, pad_c=64)),  # pad_c: frame copy 185 -> 36 ms
    # x86-64 CPUs with AVX-512 VPOPCNTDQ under PoCL: kernels/xnor_cpu.h's and float_cpu.h's
    # AVX-512 micro-kernels (PoCL itself compiles for an AVX2 CPU model).
    "cpu-avx512": replace(
        _CPU, name="cpu-avx512", implementations=("pocl",), cpu_features=AVX512_XNOR, fallback="cpu",
        bgemm=BinaryGemm("cpu_blocks", Tiles(12, 32)),   # blocks of 3 x 8 register tiles
        # 4 x 6 AVX-512 float tiles: 1.2-1.4x the AVX2 3 x 4 tiles on Zen 4 (KV is for
        # compilers without AVX-512).
        fgemm=FloatGemm(Tiles(4, 6, 16, 1), kv=8),
        fconv=FloatConv(Tiles(4, 6, 8, 2), kv=8, pad_c=64),
        bconv=replace(_CPU.bconv, prefer=("blocks", "im2col")),
        bitplane=replace(_CPU.bitplane, prefer=("avx512", "tiled"))),
    "cpu": _CPU,
    # NVIDIA GPUs: popc is a native 32-bit instruction; local-memory tiles, 256 work-items;
    # the 1-bit tensor cores where the device's probe passes.
    "gpu": Profile(
        "gpu", 32, kinds=("gpu",),
        # mma: 8 warps of 64 x 32 outputs (4 x 4 fragments), 128 x 128 per work-group.
        # Batch 1-16: bgemv.cl, 16 columns per group (256 groups at N = 4096), K over 16 lanes
        # (64 bytes of a row per load), 8 words per lane per step (K = 4096 in one step, 8
        # loads of B in flight per lane); 25 KB of local memory at M = 16, under 32 KB.
        bgemm=BinaryGemm("tiled", Tiles(4, 4, 16, 16, use_local=True), mma=MmaTiles(2, 4, 4, 4),
                         gemv=Tiles(16, 1, 16, 16, tk=8)),
        fgemm=FloatGemm(Tiles(4, 4, 16, 16, use_local=True)),
        # Implicit GEMM (bconv2d_igemm.cl): windows gathered into bgemm's tiles, no frame copy.
        bconv=BinaryConv(("igemm", "direct"), Tiles(4, 4, 16, 16, use_local=True)),
        fconv=FloatConv(Tiles(4, 4, 16, 16, use_local=True)),
        # 2 x 4 blocks keep bitplane_conv2d under 64 registers on sm_80 (4 x 4 took 95: 31%
        # occupancy); 4 channels per work-item share each pixel's plane popcounts.
        bitplane=BitplaneConv(("tiled",), Tiles(2, 4, 16, 16))),
    # Anything else: small work-groups that every OpenCL 1.2 device accepts.
    "generic": Profile(
        "generic", 32,
        bgemm=BinaryGemm("tiled", Tiles(2, 2, 4, 4, tk=8)),
        fgemm=FloatGemm(Tiles(2, 2, 4, 4, tk=8)),
        bconv=BinaryConv(("direct",), Tiles(2, 2, 4, 4)),
        fconv=FloatConv(Tiles(2, 2, 4, 4)),
        bitplane=BitplaneConv(("tiled",), Tiles(2, 2, 4, 4))),
}
# PROFILES is in order of choice: the first profile chosen for a device, and able to run there, wins.
AVX512_PROFILE = "cpu-avx512"
INTEL_CPU_PROFILE = "intel-cpu"


def profile_for(traits, tuned: bool = True) -> Profile:
    """The profile for a device (its :class:`~espresso_cl.device.DeviceTraits`), or the one
    ``$ESPRESSO_PARAMS`` names; a forced profile that cannot run there raises ValueError.
    With ``tuned``, a device's own profile takes its tuning database entry, if any
    (:func:`with_tuned_entry`); a forced profile never does."""
    forced = settings.forced_profile()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"{settings.PROFILE}={forced!r} is not a profile; choose one of {sorted(PROFILES)}")
        why = PROFILES[forced].cannot_run_on(traits)
        if why:
            raise ValueError(f"{settings.PROFILE}={forced!r}: {why}")
        return PROFILES[forced]
    for profile in PROFILES.values():
        if profile.chosen_for(traits):
            while profile.cannot_run_on(traits):
                profile = PROFILES[profile.fallback]
            return with_tuned_entry(profile, traits) if tuned else profile
    return with_tuned_entry(PROFILES["generic"], traits) if tuned else PROFILES["generic"]


# The families a tuning database entry may replace (Profile's fields of tuning data).
FAMILIES = ("bgemm", "fgemm", "bconv", "fconv", "bitplane")
TUNED_SUFFIX = "+tuned"


def with_overrides(profile: Profile, overrides: dict, name: str | None = None) -> Profile:
    """``profile`` with families' fields replaced by ``overrides`` ({family: {field: value}},
    nested as ``dataclasses.asdict`` writes them, any subset of fields), named ``name``
    (default ``<profile>+tuned``). A family or field that does not exist, or a value of
    another type, raises ValueError naming it."""
    unknown = set(overrides) - set(FAMILIES)
    if unknown:
        raise ValueError(f"no tuning family {sorted(unknown)}; the families are {FAMILIES}")
    families = {family: _with_fields(getattr(profile, family), values, family)
                for family, values in overrides.items()}
    return replace(profile, name=name or profile.name + TUNED_SUFFIX, **families)


def _with_fields(current, values, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected an object of fields, got {values!r}")
    known = {f.name for f in fields(current)}
    changes = {}
    for field, value in values.items():
        if field not in known:
            raise ValueError(f"{where}: no field {field!r} (it has {sorted(known)})")
        old = getattr(current, field)
        if is_dataclass(old):
            value = _with_fields(old, value, f"{where}.{field}")
        elif isinstance(old, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        if type(value) is not type(old):
            raise ValueError(f"{where}.{field}: {value!r} is not a {type(old).__name__}")
        changes[field] = value
    return replace(current, **changes)


def with_tuned_entry(profile: Profile, traits) -> Profile:
    """``profile`` with the tuning database's entry for this device, driver and profile
    applied (:mod:`espresso_cl.tuning_db`: the user's database over the shipped entries);
    ``profile`` itself where there is none, where ``$ESPRESSO_TUNED`` is off, or where the
    entry does not fit this profile (one warning)."""
    if settings.tuned_entries_off():
        return profile
    overrides = tuning_db.overrides_for(traits.identity, profile.name)
    if not overrides:
        return profile
    try:
        return _tuned(profile.name, json.dumps(overrides, sort_keys=True))
    except ValueError as exc:
        warnings.warn(f"tuning database entry for {traits.name} ({profile.name}) ignored: {exc}",
                      RuntimeWarning, stacklevel=2)
        return profile


# One tuned profile object per (profile, entry): the registry caches answers per profile object.
@functools.lru_cache(maxsize=64)
def _tuned(name: str, overrides_json: str) -> Profile:
    return with_overrides(PROFILES[name], json.loads(overrides_json))
