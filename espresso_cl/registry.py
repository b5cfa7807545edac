"""Every kernel variant, described once, and the one rule that picks a variant for a profile.

A :class:`KernelVariant` says what a ``kernels/*.cl`` file computes, which ``__kernel``
functions it holds, its launch-grid rule, which profiles can run it, whether it fuses the
folded batch-norm + sign, whether it exists only as x86 machine code (then Oclgrind cannot
run it), and whether it needs the device's tensor-core probe to have passed. The launchers
(:mod:`espresso_cl.ops`), the planner (:mod:`espresso_cl.plan`), the Oclgrind coverage check
and the tests ask :func:`select` / :func:`can_run` instead of looking at defines or kernel
names. Pure Python: importable without pyopencl.

Adding a variant: its ``.cl`` file, one entry in :data:`VARIANTS`, and, if profiles should
prefer it, its strategy name in their ``prefer`` tuples (:mod:`espresso_cl.tuning`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from .intmath import ceil_div
from .tuning import MmaTiles, Profile, Tiles


def tiles_grid(tiles: Tiles, rows: int, cols: int) -> tuple:
    """WG_N x WG_M work-groups, each work-item a TM x TN register block spread by the group."""
    bm, bn = tiles.wg_m * tiles.tm, tiles.wg_n * tiles.tn
    return ((ceil_div(cols, bn) * tiles.wg_n, ceil_div(rows, bm) * tiles.wg_m),
            (tiles.wg_n, tiles.wg_m))


def blocks_grid(tiles: Tiles, rows: int, cols: int) -> tuple:
    """One work-item per work-group, each a contiguous TM x TN block; dimension 0 runs over
    column blocks, or over row blocks where ``tiles.rows_first`` (the kernels read their block
    through common.h's BLOCK_ROW / BLOCK_COL)."""
    row_blocks, col_blocks = ceil_div(rows, tiles.tm), ceil_div(cols, tiles.tn)
    return ((row_blocks, col_blocks) if tiles.rows_first else (col_blocks, row_blocks)), (1, 1)


def rows_first(row_operand_size: int, col_operand_size: int) -> bool:
    """Whether a blocks grid should run over row blocks first: where the operand the rows read
    (A of a GEMM, a conv's image) is no larger than the one the columns read (B, the filters),
    both in one unit.

    A CPU runtime hands each thread runs of consecutive work-groups. Along dimension 0 they
    share the block of the other dimension, which stays in cache while the operand of
    dimension 0 is read whole, once per run: so that one should be the smaller. Measured on 2
    Zen 5 cores (PoCL), each order in turn in one process: XNOR GEMM + threshold 1.05-1.06x
    at 16, 100 and 256 x 4096 x 4096 (0.99x at 64), the MLP at batch 256 1.03-1.04x."""
    return row_operand_size <= col_operand_size


def mma_grid(tiles: MmaTiles, rows: int, cols: int) -> tuple:
    """One-dimensional work-groups of whole warps, each a block of the tensor-core tiles."""
    bm, bn = tiles.block
    return (ceil_div(cols, bn) * tiles.work_group, ceil_div(rows, bm)), (tiles.work_group, 1)


# The define that turns the tensor-core variants' inline PTX on (kernels/bgemm_mma.cl). The host
# sets it to 1 only for devices whose quirks take inline PTX (espresso_cl/device.py).
INLINE_PTX = "ESPRESSO_MMA_PTX"


def gemv_grid(tiles: Tiles, rows: int, cols: int) -> tuple:
    """bgemv.cl: one work-group per WG_M * TN columns holding every row, K over its WG_N lanes."""
    return ((tiles.wg_n, ceil_div(cols, tiles.wg_m * tiles.tn) * tiles.wg_m),
            (tiles.wg_n, tiles.wg_m))


@dataclass(frozen=True, eq=False)
class KernelVariant:
    name: str
    op: str                  # what it computes: its launcher in espresso_cl.ops
    file: str                # kernels/<file>
    kernels: tuple           # its __kernel functions, the main one first
    runs_with: Callable[[Profile], bool]   # whether a profile selects / can run it
    grid: Callable | None = None           # (tiles, rows, cols) -> (global, local); None: per kernel
    strategy: str = ""       # the name profiles list in ``prefer`` (convolutions)
    # The profile's tuning data this variant's file takes (an object with ``defines()``);
    # None: only the profile's common defines.
    tuned: Callable[[Profile], object] | None = None
    fixed_defines: tuple = ()  # (name, value) pairs the host fixes for every profile
    fuses_threshold: bool = False
    fuses_pool: bool = False   # a fused convolution that also max-pools its bits
    zero_padding_only: bool = False
    x86_machine_code: bool = False  # AVX-512 code built only by PoCL on x86-64: not simulatable
    # Runs only where the caller says the device's tensor-core probe passed
    # (espresso_cl/ops/tensor_cores.py); its file has INLINE_PTX code.
    tensor_cores: bool = False

    @property
    def kernel(self) -> str:
        return self.kernels[0]

    def tuning(self, profile: Profile):
        return self.tuned(profile) if self.tuned is not None else None

    def defines(self, profile: Profile, tuned=None) -> Mapping:
        """The ``#define``s of this variant's file under ``profile`` (read-only); ``tuned``
        replaces the profile's tuning data (a launcher narrowing a block for a small problem)."""
        return _defines(self, profile, self.tuning(profile) if tuned is None else tuned)


# Launchers ask for every launch; profiles, tunings and variants are frozen, so the answers keep.
@functools.lru_cache(maxsize=4096)
def _defines(variant: KernelVariant, profile: Profile, tuned) -> Mapping:
    return MappingProxyType(dict(profile.defines(tuned), **dict(variant.fixed_defines)))


def _always(profile: Profile) -> bool:
    return True


def _cpu_blocks(profile: Profile) -> bool:
    return profile.bgemm.kernel == "cpu_blocks"


def _cpu_conv_blocks(profile: Profile) -> bool:
    # xnor_cpu.h's tiles take 64-bit words.
    return profile.word_bits == 64 and "blocks" in profile.bconv.prefer


def _avx512(prefer: str) -> Callable[[Profile], bool]:
    def runs_with(profile: Profile) -> bool:
        return profile.x86_machine_code and "avx512" in getattr(profile, prefer).prefer
    return runs_with


# Bit-planes of a uint8 pixel: the bit-plane kernels' PLANES, and the patches' second axis.
BITPLANES = 8
_PLANES = (("PLANES", BITPLANES),)

VARIANTS = (
    # Before bgemm_tiled: the profiles with tensor-core tiles take it where the probe passed.
    KernelVariant("bgemm_mma", "bgemm", "bgemm_mma.cl", ("bgemm_mma", "bgemm_row_popcounts"),
                  lambda p: p.bgemm.mma is not None, mma_grid, tuned=lambda p: p.bgemm.mma,
                  tensor_cores=True),
    KernelVariant("bgemm_tiled", "bgemm", "bgemm.cl", ("bgemm",),
                  lambda p: p.bgemm.kernel == "tiled", tiles_grid, tuned=lambda p: p.bgemm.tiles),
    # A separate op: the bgemm launcher runs it for at most gemv.tm rows where the profile has one.
    KernelVariant("bgemv", "bgemv", "bgemv.cl", ("bgemv",), lambda p: p.bgemm.gemv is not None,
                  gemv_grid, tuned=lambda p: p.bgemm.gemv),
    KernelVariant("bgemm_cpu", "bgemm", "bgemm_cpu.cl", ("bgemm_cpu",), _cpu_blocks, blocks_grid,
                  tuned=lambda p: p.bgemm.tiles),
    KernelVariant("bgemm_cpu_threshold", "bgemm_threshold", "bgemm_cpu.cl", ("bgemm_cpu_threshold",),
                  _cpu_blocks, blocks_grid, tuned=lambda p: p.bgemm.tiles, fuses_threshold=True),
    KernelVariant("bgemm_tiled_threshold", "bgemm_threshold", "bgemm.cl", ("bgemm_threshold",),
                  lambda p: p.bgemm.kernel == "tiled", tiles_grid, tuned=lambda p: p.bgemm.tiles,
                  fuses_threshold=True),
    KernelVariant("bgemm_tiled_affine", "bgemm_affine", "bgemm.cl", ("bgemm_affine",),
                  lambda p: p.bgemm.kernel == "tiled", tiles_grid, tuned=lambda p: p.bgemm.tiles),
    KernelVariant("bgemm_cpu_affine", "bgemm_affine", "bgemm_cpu.cl", ("bgemm_cpu_affine",), _cpu_blocks,
                  blocks_grid, tuned=lambda p: p.bgemm.tiles),
    KernelVariant("fgemm", "fgemm", "fgemm.cl", ("fgemm",), _always, tiles_grid, tuned=lambda p: p.fgemm),
    # Its second kernel lays the filters out by word for the AVX-512 tiles (ops/conv.py).
    KernelVariant("bconv2d_cpu", "bconv2d", "bconv2d_cpu.cl", ("bconv2d_cpu", "bconv2d_cpu_weights"),
                  _cpu_conv_blocks, blocks_grid, strategy="blocks", tuned=lambda p: p.bconv.blocks_tiles,
                  zero_padding_only=True),
    KernelVariant("bconv2d_threshold_cpu", "bconv2d_threshold", "bconv2d_cpu.cl",
                  ("bconv2d_cpu_threshold",), _cpu_conv_blocks, blocks_grid, strategy="blocks",
                  tuned=lambda p: p.bconv.blocks_tiles, fuses_threshold=True, fuses_pool=True),
    KernelVariant("bconv2d_im2col", "bconv2d", "bconv2d_im2col.cl",
                  ("bconv2d_im2col", "bconv2d_place", "bconv2d_fixup"),
                  lambda p: "im2col" in p.bconv.prefer, strategy="im2col"),
    KernelVariant("bconv2d_igemm", "bconv2d", "bconv2d_igemm.cl", ("bconv2d_igemm",),
                  lambda p: "igemm" in p.bconv.prefer, tiles_grid, strategy="igemm",
                  tuned=lambda p: p.bconv.tiles),
    # The same product with the threshold in its epilogue; its groups pack whole words of
    # output, so BN must be a multiple of 64 (a pixel's packed row is an even number of words).
    KernelVariant("bconv2d_igemm_threshold", "bconv2d_threshold", "bconv2d_igemm_threshold.cl",
                  ("bconv2d_igemm_threshold",),
                  lambda p: "igemm" in p.bconv.prefer and p.bconv.tiles.wg_n * p.bconv.tiles.tn % 64 == 0,
                  tiles_grid, strategy="igemm", tuned=lambda p: p.bconv.tiles, fuses_threshold=True),
    KernelVariant("bconv2d_direct", "bconv2d", "bconv2d.cl", ("bconv2d", "bconv2d_pad"),
                  _always, tiles_grid, strategy="direct", tuned=lambda p: p.bconv.tiles),
    # Only where the profile runs the direct kernel anyway: on CPUs that prefer window rows the
    # fused direct kernel took 1.4x the time of im2col + bgemm + threshold + pool at batch 64.
    KernelVariant("bconv2d_threshold_direct", "bconv2d_threshold", "bconv2d.cl", ("bconv2d_threshold",),
                  lambda p: "direct" in p.bconv.prefer, tiles_grid, strategy="direct",
                  tuned=lambda p: p.bconv.tiles, fuses_threshold=True, fuses_pool=True),
    KernelVariant("fconv2d", "fconv2d", "fconv2d.cl", ("fconv2d", "fconv2d_pad"), _always, tiles_grid,
                  tuned=lambda p: p.fconv),
    KernelVariant("bitplane_avx512", "bitplane_conv2d", "bitplane_avx512.cl", ("bitplane_conv2d_avx512",),
                  _avx512("bitplane"), blocks_grid, strategy="avx512",
                  tuned=lambda p: p.bitplane.avx512_tiles, fixed_defines=_PLANES, x86_machine_code=True),
    KernelVariant("bitplane_tiled", "bitplane_conv2d", "bitplane.cl", ("bitplane_conv2d",),
                  _always, tiles_grid, strategy="tiled", tuned=lambda p: p.bitplane.tiles,
                  fixed_defines=_PLANES),
    KernelVariant("bitplane_threshold_avx512", "bitplane_conv2d_threshold", "bitplane_avx512.cl",
                  ("bitplane_threshold_avx512",), _avx512("bitplane"), blocks_grid,
                  tuned=lambda p: p.bitplane.avx512_tiles, fixed_defines=_PLANES,
                  fuses_threshold=True, x86_machine_code=True),
    KernelVariant("bitplane_threshold_tiled", "bitplane_conv2d_threshold", "bitplane.cl",
                  ("bitplane_threshold",), _always, tiles_grid, strategy="tiled",
                  tuned=lambda p: p.bitplane.tiles, fixed_defines=_PLANES, fuses_threshold=True),
    # bitplane_pack's patches from the AVX-512 conv's file (its defines, so one program), where
    # that conv runs; ops.conv asks can_run("bitplane_patches").
    KernelVariant("bitplane_patches_avx512", "bitplane_patches", "bitplane_avx512.cl", ("bitplane_pack_avx512",),
                  _avx512("bitplane"), tuned=lambda p: p.bitplane.avx512_tiles, fixed_defines=_PLANES,
                  x86_machine_code=True),
    # Window packing for both bit-plane variants; built with the tiled kernel's defines so
    # that it shares its program.
    KernelVariant("bitplane_pack", "bitplane_pack", "bitplane.cl", ("bitplane_pack", "bitplane_weights"),
                  _always, tuned=lambda p: p.bitplane.tiles, fixed_defines=_PLANES),
    KernelVariant("pack", "pack", "pack.cl", ("pack_sign", "unpack_sign", "threshold_pack", "threshold_sign"),
                  _always),
    KernelVariant("pool", "pool", "pool.cl", ("maxpool_bits", "maxpool"), _always),
    KernelVariant("affine", "affine", "affine.cl", ("affine", "sign_float"), _always),
    KernelVariant("softmax", "softmax", "softmax.cl", ("softmax", "argmax"), _always),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}


def _order(op: str, profile: Profile) -> list:
    """The variants of ``op`` in the order the profile prefers them (by strategy), then the rest."""
    variants = [v for v in VARIANTS if v.op == op]
    prefer = {"bconv2d": profile.bconv.prefer, "bconv2d_threshold": profile.bconv.prefer,
              "bitplane_conv2d": profile.bitplane.prefer}.get(op, ())
    rank = {strategy: i for i, strategy in enumerate(prefer)}
    return sorted(variants, key=lambda v: rank.get(v.strategy, len(rank)))


@functools.lru_cache(maxsize=1024)
def select(op: str, profile: Profile, pad_value: str = "zero", tensor_cores: bool = False,
           pooled: bool = False) -> KernelVariant:
    """The variant that runs ``op`` under ``profile`` (for convolutions: with that padding, and,
    where ``pooled``, a max-pool in the same launch); ``tensor_cores``: the device's tensor-core
    probe passed (the runtime holds the answer)."""
    for variant in _order(op, profile):
        if _takes(variant, profile, pad_value, pooled) and (tensor_cores or not variant.tensor_cores):
            return variant
    raise ValueError(f"no kernel variant runs {op!r} under profile {profile.name!r}")


def _takes(variant: KernelVariant, profile: Profile, pad_value: str, pooled: bool) -> bool:
    return (variant.runs_with(profile) and not (variant.zero_padding_only and pad_value != "zero")
            and (variant.fuses_pool or not pooled))


@functools.lru_cache(maxsize=1024)
def can_run(op: str, profile: Profile, pad_value: str = "zero", pooled: bool = False) -> bool:
    """Whether some variant runs ``op`` under ``profile`` (fused ops exist on some profiles only;
    for convolutions: with that padding, and, where ``pooled``, a max-pool in the same launch)."""
    return any(v.op == op and _takes(v, profile, pad_value, pooled) for v in VARIANTS)


def file_defines(filename: str, profile: Profile, inline_ptx: bool = False) -> dict:
    """The defines ``kernels/<filename>`` is built with under ``profile`` (before a launcher
    narrows a block for a small problem): those of its first variant the profile runs, with
    INLINE_PTX = 1 for a tensor-core variant where ``inline_ptx`` (an NVIDIA device)."""
    variants = [v for v in VARIANTS if v.file == filename]
    if not variants:
        raise ValueError(f"no kernel variant lives in kernels/{filename}")
    chosen = next((v for v in variants if v.runs_with(profile)), variants[0])
    defines = dict(chosen.defines(profile))
    if inline_ptx and chosen.tensor_cores:
        defines[INLINE_PTX] = 1
    return defines


def launch_names(variants=VARIANTS) -> set:
    """``<file>:<kernel>`` of every kernel of ``variants``."""
    return {f"{v.file}:{kernel}" for v in variants for kernel in v.kernels}


def simulatable_kernels() -> set:
    """``<file>:<kernel>`` of every kernel Oclgrind can run (not x86 machine code)."""
    return launch_names([v for v in VARIANTS if not v.x86_machine_code])
