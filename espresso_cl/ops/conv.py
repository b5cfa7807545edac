"""Launchers of the convolution kernels: kernels/bconv2d*.cl, kernels/fconv2d.cl, kernels/bitplane*.cl.

The direct binary and float convolutions run in two steps: the image is copied into the frame
its windows cover, padded pixels included (skipped when nothing is padded), then the
convolution reads whole window rows from the frame with no bounds test. On CPUs the binary
convolution is instead one fused AVX-512 kernel (zero padding) or window rows (im2col) plus
the GEMM: :func:`espresso_cl.registry.select` picks by profile and padding. The bit-plane
convolution packs each output pixel's whole window, since a first layer has too few channels
to fill a word.
"""

from __future__ import annotations

import operator
from dataclasses import replace

from .. import registry
from ..geometry import ConvGeometry
from ..intmath import ceil_div, round_up, size_bucket
from ..tensor import Tensor
from ..tuning import Tiles
from .gemm import bgemm, whole_words
from .launch import launch
from .pack import check_thresholds

PAD_VALUES = ("zero", "one")
PLANES = registry.BITPLANES


def _geometry(op: str, x: Tensor, w: Tensor, stride: int, padding: str) -> ConvGeometry:
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ValueError(f"{op} takes x (N, H, W, C) and w (OC, KH, KW, C), got {x.shape} and {w.shape}")
    if x.shape[3] != w.shape[3]:
        raise ValueError(f"{op}: x has {x.shape[3]} channels but w expects {w.shape[3]}")
    if x.runtime is not w.runtime:
        raise ValueError(f"{op}: x and w live on different runtimes")
    for name, t in (("x", x), ("w", w)):
        if t.kind == "bits" and t.segment != t.shape[3]:
            raise ValueError(f"{op}: {name} must be packed one pixel per row (segment {t.shape[3]}), "
                             f"got segment {t.segment}")
    _, h, wd, _ = x.shape
    _, kh, kw, _ = w.shape
    return ConvGeometry.of(h, wd, kh, kw, operator.index(stride), padding)


def _one_pad(op: str, pad_value: str) -> bool:
    if pad_value not in PAD_VALUES:
        raise ValueError(f"{op}: pad_value must be one of {PAD_VALUES}, got {pad_value!r}")
    return pad_value == "one"


def _frame_size(g: ConvGeometry) -> tuple:
    """Rows and columns of the frame that the windows cover."""
    return (g.oh - 1) * g.stride + g.kh, (g.ow - 1) * g.stride + g.kw


def _frame(x: Tensor, g: ConvGeometry, variant, defines: dict, one_pad: bool, *sizes) -> tuple:
    """(frame, XH, XW): x itself where no window leaves the image, else x copied by the
    variant's pad kernel into the frame with its padding. ``sizes`` are the kernel's per-pixel
    sizes after N, H, W (C, then RW for bits)."""
    xh, xw = _frame_size(g)
    n, h, wd, c = x.shape
    if g.pad_top == g.pad_left == 0 and xh <= h and xw <= wd:
        return x, h, wd
    runtime = x.runtime
    framed = Tensor(runtime, (n, xh, xw, c), x.kind)
    per_item = defines.get("PAD_C", 1)  # words (channels) one work-item copies
    launch(runtime, variant.file, variant.kernels[1], defines,
           (ceil_div(framed.storage_shape[-1], per_item), n * xh * xw), None,
           n, h, wd, *sizes, xh, xw, g.pad_top, g.pad_left, one_pad, x, framed)
    return framed, xh, xw


def _fitted(tiles: Tiles, pixels: int) -> Tiles:
    """``tiles`` with TM cut down when there are too few pixels to fill it: a dense layer at
    batch 1 is one pixel, and TM - 1 idle rows would each cost a full row. Pixels count by
    their bucket (:func:`~espresso_cl.intmath.size_bucket`): few programs cover every batch."""
    return replace(tiles, tm=min(tiles.tm, ceil_div(size_bucket(pixels), tiles.wg_m)))


# Most bytes of window rows (im2col) that bconv2d holds at once; more output pixels run in chunks.
IM2COL_BYTES = 32 << 20


def _image_order(block: Tiles, row_words: int, col_words: int) -> Tiles:
    """``block`` in the order ``registry.rows_first`` gives for a blocks grid whose rows read
    ``row_words`` in all (the images, or the bit-plane patches) and columns ``col_words`` (the
    filters), each counted in words of a pixel's channels. Callers count the images by the
    bucket of the batch (:func:`~espresso_cl.intmath.size_bucket`), so that every batch size
    of a bucket runs the program built for it."""
    return replace(block, rows_first=registry.rows_first(row_words, col_words))


def _interior(lo_pad: int, size: int, k: int, stride: int, out: int) -> tuple:
    """Output positions [lo, hi) whose windows stay inside an image axis of ``size``."""
    lo = min(ceil_div(lo_pad, stride), out)
    hi = max(lo, min(out, (size + lo_pad - k) // stride + 1))
    return lo, hi


def bconv2d(x: Tensor, w: Tensor, stride: int, padding: str, pad_value: str = "zero") -> Tensor:
    """Binary convolution: bits x (N, H, W, C), bits w (OC, KH, KW, C) -> int32 (N, OH, OW, OC).

    Each output is the sum over the window's taps of the +-1 dot product of pixel and weights.
    ``padding`` 'same' or 'valid' and ``stride`` place the window (:class:`ConvGeometry`);
    ``pad_value`` 'zero' makes a padded tap add exactly 0, 'one' reads it as all +1.

    Four variants (``registry.select`` picks by the profile's preference and the padding):
    "blocks" (CPUs, zero padding), one kernel on bgemm_cpu's register tiles (AVX-512 ones
    where the CPU has them) that reads the windows from the image; "igemm" (GPUs), windows
    gathered into bgemm's local-memory tiles; "im2col" (CPUs), each output pixel's
    window copied into a packed row and :func:`ops.bgemm <espresso_cl.ops.gemm.bgemm>` run on
    the rows (at most :data:`IM2COL_BYTES` of rows at a time), then the zero-padded border
    pixels corrected; "direct" (GPUs), the tiled kernel on local-memory tiles.
    """
    if x.kind != "bits" or w.kind != "bits":
        raise TypeError(f"bconv2d takes packed bits x and w, got {x.kind} and {w.kind}")
    g = _geometry("bconv2d", x, w, stride, padding)
    one_pad = _one_pad("bconv2d", pad_value)
    runtime = x.runtime
    profile = runtime.profile
    variant = registry.select("bconv2d", profile, pad_value)
    if variant.strategy == "blocks":
        return _bconv2d_blocks(variant, x, w, g)
    if variant.strategy == "im2col":
        return _bconv2d_im2col(variant, x, w, g, one_pad)
    if variant.strategy == "igemm":
        return _bconv2d_igemm(variant, x, w, g, one_pad)
    n, h, wd, c = x.shape
    oc = w.shape[0]
    rw = x.storage_shape[-1]
    pixels = n * g.oh * g.ow
    tiles = _fitted(variant.tuning(profile), pixels)
    defines = variant.defines(profile, tiles)
    framed, xh, xw = _frame(x, g, variant, defines, one_pad, c, rw)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    launch(runtime, variant.file, variant.kernel, defines, *variant.grid(tiles, pixels, oc),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
           xh, xw, rw // profile.words32, one_pad, framed, w, out)
    return out


def _bconv2d_blocks(variant, x: Tensor, w: Tensor, g: ConvGeometry) -> Tensor:
    runtime = x.runtime
    profile = runtime.profile
    n, h, wd, c = x.shape
    oc = w.shape[0]
    tiles = _image_order(variant.tuning(profile), size_bucket(n) * h * wd, oc * g.kh * g.kw)
    defines = variant.defines(profile, tiles)
    cw = x.storage_shape[-1] // profile.words32
    pixels = n * g.oh * g.ow
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    launch(runtime, variant.file, variant.kernel, defines, *variant.grid(tiles, pixels, oc),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left, cw, x, w,
           _filters_by_word(w, g, cw, defines), out)
    return out


def _filters_by_word(w: Tensor, g: ConvGeometry, cw: int, defines) -> Tensor:
    """bconv2d_cpu.cl's second form of the filters: by word in groups of 32 for the AVX-512
    tiles (the profile's x86 machine code; :func:`filter_words_by_group`, once per weight
    tensor), ``w`` itself for the others, which read only the filters by row."""
    if not w.runtime.profile.x86_machine_code:
        return w
    return w.derived("bconv2d_cpu_weights", lambda: filter_words_by_group(w, g.kh * g.kw * cw, defines))


def filter_words_by_group(w: Tensor, kq: int, defines) -> Tensor:
    """Filters of ``kq`` 64-bit words each (bits, OC x ...) -> 64-bit words in groups of 32
    filters (bconv2d_cpu_weights): word k of filter 32 g + j at (g * kq + k) * 32 + j, filters
    past OC 0. One 64-bit word per row of the result."""
    runtime = w.runtime
    oc = w.shape[0]
    ocp = round_up(oc, 32)
    variant = registry.BY_NAME["bconv2d_cpu"]
    out = Tensor(runtime, (kq * ocp, 64), "bits")
    launch(runtime, variant.file, variant.kernels[1], defines, (ocp, kq), None, oc, kq, ocp, w, out)
    return out


def _bconv2d_igemm(variant, x: Tensor, w: Tensor, g: ConvGeometry, one_pad: bool) -> Tensor:
    runtime = x.runtime
    profile = runtime.profile
    n, h, wd, c = x.shape
    oc = w.shape[0]
    pixels = n * g.oh * g.ow
    tiles = _fitted(variant.tuning(profile), pixels)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles),
           *variant.grid(tiles, pixels, oc),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
           x.storage_shape[-1] // profile.words32, one_pad, x, w, out)
    return out


def _bconv2d_im2col(variant, x: Tensor, w: Tensor, g: ConvGeometry, one_pad: bool) -> Tensor:
    runtime = x.runtime
    defines = variant.defines(runtime.profile)
    im2col, place, fixup = variant.kernels
    n, h, wd, c = x.shape
    oc = w.shape[0]
    rw = x.storage_shape[-1]
    cw = rw // runtime.profile.words32
    taps = g.kh * g.kw
    pixels = n * g.oh * g.ow
    weights = w.reshape((oc, taps * c), segment=c)  # (ky, kx, c) rows: the window rows' layout
    if taps == 1 and g.stride == 1 and g.oh == h and g.ow == wd:
        # A 1x1 window over every pixel: the image already is the rows.
        out = bgemm(x.reshape((pixels, c), segment=c), weights)
        return out.reshape((n, g.oh, g.ow, oc))
    row_bytes = taps * rw * 4
    chunk = max(1, min(pixels, IM2COL_BYTES // row_bytes))
    cols = Tensor(runtime, (chunk, taps * c), "bits", segment=c)
    oy_lo, oy_hi = _interior(g.pad_top, h, g.kh, g.stride, g.oh)
    ox_lo, ox_hi = _interior(g.pad_left, wd, g.kw, g.stride, g.ow)
    border = 0 if one_pad else g.oh * g.ow - (oy_hi - oy_lo) * (ox_hi - ox_lo)
    # Zero padding with padded taps: the first im2col launch also sums each tap's weights.
    sums = Tensor(runtime, (taps, oc), "int32") if border else None
    out = None
    for p0 in range(0, pixels, chunk):
        rows = min(chunk, pixels - p0)
        nsums = taps * oc if border and p0 == 0 else 0
        launch(runtime, variant.file, im2col, defines, (rows + nsums,), None,
               h, wd, c, cw, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
               one_pad, p0, rows, nsums, oc, x, cols, w, sums if border else cols)
        if rows < chunk:  # the last chunk: the first rows of the buffer
            cols = cols.prefix((rows, taps * c), segment=c)
        part = bgemm(cols, weights)
        if rows == pixels:
            out = part
        else:
            if out is None:
                out = Tensor(runtime, (pixels, oc), "int32")
            launch(runtime, variant.file, place, defines, (rows * oc,), None,
                   rows * oc, p0 * oc, part, out)
    out = out.reshape((n, g.oh, g.ow, oc))
    if border:
        launch(runtime, variant.file, fixup, defines, (n * border,), None,
               n, h, wd, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
               oy_lo, oy_hi, ox_lo, ox_hi, border, sums, out)
    return out


def _pool_geometry(op: str, g: ConvGeometry, pool) -> ConvGeometry:
    """Where ``pool`` ((kh, kw), stride, padding; None: no pool) lands on the conv output of ``g``."""
    if pool is None:
        return ConvGeometry.of(g.oh, g.ow, 1, 1, 1, "valid")
    (pkh, pkw), pstride, ppadding = pool
    p = ConvGeometry.of(g.oh, g.ow, pkh, pkw, operator.index(pstride), ppadding)
    if not p.every_window_meets_the_image():
        raise ValueError(f"{op}: pool padding {ppadding} leaves a window with no pixel of the image")
    return p


def bconv2d_threshold(x: Tensor, w: Tensor, thresh: Tensor, flip: Tensor, stride: int, padding: str,
                      pad_value: str = "zero", pool=None, and_flips: bool = False) -> Tensor:
    """:func:`bconv2d`, the folded batch-norm + sign of ``ops.threshold``, packed, and where
    ``pool`` is given the max-pool of the bits (``ops.maxpool_bits``), in one launch (only where
    ``registry.can_run("bconv2d_threshold", profile, pad_value)``).

    bits x (N, H, W, C), bits w (OC, KH, KW, C), int32 thresh and flip (OC,) -> bits
    (N, OH, OW, OC): bit c of a conv pixel is ``acc <= thresh[c]`` where ``flip[c]`` else
    ``acc >= thresh[c]``, acc the pixel's :func:`bconv2d` output. ``pool``: ``((kh, kw), stride,
    padding)`` on the conv output, each window's bits ORed, or, with ``and_flips``, ANDed in
    the flipped channels (a pool before the batch-norm); the output is then the pooled image.
    """
    if x.kind != "bits" or w.kind != "bits":
        raise TypeError(f"bconv2d_threshold takes packed bits x and w, got {x.kind} and {w.kind}")
    g = _geometry("bconv2d_threshold", x, w, stride, padding)
    one_pad = _one_pad("bconv2d_threshold", pad_value)
    runtime = x.runtime
    profile = runtime.profile
    if not registry.can_run("bconv2d_threshold", profile, pad_value, pool is not None):
        raise ValueError(f"bconv2d_threshold: profile {profile.name!r} has no fused convolution "
                         f"with {pad_value} padding{' and a pool' if pool is not None else ''}")
    variant = registry.select("bconv2d_threshold", profile, pad_value, pooled=pool is not None)
    n, h, wd, c = x.shape
    oc = w.shape[0]
    check_thresholds("bconv2d_threshold", thresh, flip, oc)
    p = _pool_geometry("bconv2d_threshold", g, pool)
    out = Tensor(runtime, (n, p.oh, p.ow, oc), "bits")
    window = p.kh * p.kw
    pooled = n * p.oh * p.ow
    pool_args = (p.kh, p.kw, p.stride, p.pad_top, p.pad_left, p.oh, p.ow, bool(and_flips), out.storage_shape[-1])
    cw = x.storage_shape[-1] // profile.words32
    if variant.strategy == "igemm":  # (no pool: registry.select took another where one is asked)
        tiles = _fitted(variant.tuning(profile), n * g.oh * g.ow)
        launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles),
               *variant.grid(tiles, n * g.oh * g.ow, oc),
               n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
               cw, one_pad, out.storage_shape[-1], x, w, thresh, flip, out)
        return out
    if variant.strategy == "blocks":
        # Whole 32-bit words of channels per work-item, about TM conv pixels: TM / window pooled ones.
        block = _image_order(variant.tuning(profile), size_bucket(n) * h * wd, oc * g.kh * g.kw)
        block = replace(block, tm=max(1, block.tm // window), tn=round_up(block.tn, 32))
        defines = variant.defines(profile, block)
        launch(runtime, variant.file, variant.kernel, defines, *variant.grid(block, pooled, oc),
               n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left, cw, one_pad,
               *pool_args, x, w, _filters_by_word(w, g, cw, defines), thresh, flip, out)
        return out
    # The direct kernel: whole words of channels per work-group, and rows for a window at least.
    tiles = whole_words(variant.tuning(profile))
    if tiles.wg_m * tiles.tm < window:
        tiles = replace(tiles, tm=ceil_div(window, tiles.wg_m))
    rows = tiles.wg_m * tiles.tm
    per_group = rows // window
    defines = variant.defines(profile, tiles)
    # The frame comes from bconv2d.cl's bconv2d_pad, which the unfused direct variant names.
    framed, xh, xw = _frame(x, g, registry.BY_NAME["bconv2d_direct"], defines, one_pad, c, x.storage_shape[-1])
    launch(runtime, variant.file, variant.kernel, defines,
           *variant.grid(tiles, ceil_div(pooled, per_group) * rows, oc),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left, xh, xw, cw,
           one_pad, *pool_args, framed, w, thresh, flip, out)
    return out


def fconv2d(x: Tensor, w: Tensor, stride: int, padding: str, pad_value: str = "zero") -> Tensor:
    """float32 convolution: x (N, H, W, C), w (OC, KH, KW, C) -> float32 (N, OH, OW, OC).

    Geometry as :func:`bconv2d`; padded pixels are 0.0 ('zero') or 1.0 ('one'), so the float
    mode of a binary network computes what :func:`bconv2d` does.
    """
    if x.kind != "float32" or w.kind != "float32":
        raise TypeError(f"fconv2d takes float32 x and w, got {x.kind} and {w.kind}")
    g = _geometry("fconv2d", x, w, stride, padding)
    one_pad = _one_pad("fconv2d", pad_value)
    runtime = x.runtime
    profile = runtime.profile
    variant = registry.select("fconv2d", profile)
    n, h, wd, c = x.shape
    oc = w.shape[0]
    pixels = n * g.oh * g.ow
    tuning = variant.tuning(profile)
    tuning = replace(tuning, tiles=_fitted(tuning.tiles, pixels))
    defines = variant.defines(profile, tuning)
    framed, xh, xw = _frame(x, g, variant, defines, one_pad, c)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "float32")
    launch(runtime, variant.file, variant.kernel, defines, *variant.grid(tuning.tiles, pixels, oc),
           n, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, xh, xw, framed, w, out)
    return out


def _packing_defines(runtime, pixels: int) -> dict:
    """The defines of bitplane.cl for ``pixels`` output pixels: the tiled kernel's, fitted."""
    variant = registry.select("bitplane_pack", runtime.profile)
    return variant.defines(runtime.profile, _fitted(variant.tuning(runtime.profile), pixels))


# Pixels per work-item of bitplane_pack_avx512: a few µs of work, against its call's cost.
PACKED_PER_ITEM = 64


def _bitplane_patches(x: Tensor, w: Tensor, g: ConvGeometry, defines: dict) -> Tensor:
    """Each output pixel's window as PLANES packed rows, interleaved by word (see bitplane.cl)."""
    runtime = x.runtime
    profile = runtime.profile
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    pixels = n * g.oh * g.ow
    patches = Tensor(runtime, (pixels, PLANES, kh * kw * c), "bits")
    if registry.can_run("bitplane_patches", profile):
        variant = registry.select("bitplane_patches", profile)
        launch(runtime, variant.file, variant.kernel, variant.defines(profile),
               (ceil_div(pixels, PACKED_PER_ITEM),), (1,), n, h, wd, c, kh, kw, g.oh, g.ow, g.stride,
               g.pad_top, g.pad_left, patches.storage_shape[-1] // profile.words32, PACKED_PER_ITEM, x, patches)
        return patches
    variant = registry.select("bitplane_pack", profile)
    launch(runtime, variant.file, variant.kernels[0], defines, (patches.storage_shape[-1], pixels), None,
           n, h, wd, c, kh, kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left, patches.storage_shape[-1],
           x, patches)
    return patches


def _bitplane_weight_rows(w: Tensor, rwp: int, ocp: int, defines: dict) -> Tensor:
    """The filters as packed window rows of ``rwp`` words (bitplane.cl's bitplane_weights), or,
    with ``ocp`` > 0, transposed (word k of 32 filters in a row) and padded to ``ocp`` filters
    with zero filters; once per weight tensor (Tensor.derived)."""
    runtime = w.runtime
    variant = registry.select("bitplane_pack", runtime.profile)
    oc, kh, kw, c = w.shape

    def rows():
        if ocp:
            out = Tensor(runtime, (rwp // runtime.profile.words32 * ocp, 64), "bits")
        else:
            out = Tensor(runtime, (oc, kh * kw * c), "bits")
        launch(runtime, variant.file, variant.kernels[1], defines, (rwp, ocp or oc), None, oc, kh * kw, c, w.storage_shape[-1], rwp, ocp, w, out)
        return out

    return w.derived(("bitplane_weights", rwp, ocp), rows)


def _check_bitplane(op: str, x: Tensor, w: Tensor) -> None:
    if x.kind != "uint8" or w.kind != "bits":
        raise TypeError(f"{op} takes uint8 x and packed bits w, got {x.kind} and {w.kind}")


def bitplane_conv2d(x: Tensor, w: Tensor, stride: int, padding: str) -> Tensor:
    """First layer on 8-bit pixels: uint8 x (N, H, W, C), bits w (OC, KH, KW, C) -> int32 (N, OH, OW, OC).

    Exact: x = sum over p of 2^p * bit-plane p, each plane a binary dot product with w.
    Padded pixels are 0 (zero padding only). A dense layer is the case H = W = KH = KW = 1.
    """
    _check_bitplane("bitplane_conv2d", x, w)
    g = _geometry("bitplane_conv2d", x, w, stride, padding)
    runtime = x.runtime
    profile = runtime.profile
    variant = registry.select("bitplane_conv2d", profile)
    n = x.shape[0]
    oc, kh, kw, _ = w.shape
    pixels = n * g.oh * g.ow
    defines = _packing_defines(runtime, pixels)
    patches = _bitplane_patches(x, w, g, defines)
    rwp = patches.storage_shape[-1]
    cw = rwp // profile.words32
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    if variant.strategy == "avx512":
        block = variant.tuning(profile)
        ocp = round_up(oc, block.tn)
        block = _image_order(block, PLANES * size_bucket(n) * g.oh * g.ow, ocp)
        wt = _bitplane_weight_rows(w, rwp, ocp, defines)
        launch(runtime, variant.file, variant.kernel, variant.defines(profile, block),
               *variant.grid(block, pixels, ocp), pixels, oc, cw, ocp, patches, wt, out)
        return out
    tiles = _fitted(variant.tuning(profile), pixels)
    rows = w if kh * kw == 1 else _bitplane_weight_rows(w, rwp, 0, defines)  # one tap: filters are rows
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles),
           *variant.grid(tiles, pixels, oc), pixels, oc, cw, patches, rows, out)
    return out


def bitplane_conv2d_threshold(x: Tensor, w: Tensor, thresh: Tensor, flip: Tensor, stride: int,
                              padding: str) -> Tensor:
    """:func:`bitplane_conv2d`, then the folded batch-norm + sign of ``ops.threshold``, packed,
    in the convolution's launch.

    uint8 x (N, H, W, C), bits w (OC, KH, KW, C), int32 thresh and flip (OC,) -> bits
    (N, OH, OW, OC): bit c of a pixel is ``acc <= thresh[c]`` where ``flip[c]`` else
    ``acc >= thresh[c]``, acc the pixel's :func:`bitplane_conv2d` output.
    """
    _check_bitplane("bitplane_conv2d_threshold", x, w)
    g = _geometry("bitplane_conv2d_threshold", x, w, stride, padding)
    runtime = x.runtime
    profile = runtime.profile
    variant = registry.select("bitplane_conv2d_threshold", profile)
    n = x.shape[0]
    oc, kh, kw, _ = w.shape
    check_thresholds("bitplane_conv2d_threshold", thresh, flip, oc)
    pixels = n * g.oh * g.ow
    defines = _packing_defines(runtime, pixels)
    patches = _bitplane_patches(x, w, g, defines)
    rwp = patches.storage_shape[-1]
    cw = rwp // profile.words32
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "bits")
    if variant.strategy == "tiled":
        # A work-group packs whole words of channels.
        tiles = whole_words(_fitted(variant.tuning(profile), pixels))
        rows = w if kh * kw == 1 else _bitplane_weight_rows(w, rwp, 0, defines)  # one tap: filters are rows
        launch(runtime, variant.file, variant.kernel, variant.defines(profile, tiles),
               *variant.grid(tiles, pixels, oc), pixels, oc, cw, out.storage_shape[-1], patches, rows,
               thresh, flip, out)
        return out
    block = variant.tuning(profile)
    ocp = round_up(oc, block.tn)
    block = _image_order(block, PLANES * size_bucket(n) * g.oh * g.ow, ocp)
    wt = _bitplane_weight_rows(w, rwp, ocp, defines)
    launch(runtime, variant.file, variant.kernel, variant.defines(profile, block),
           *variant.grid(block, pixels, ocp), pixels, oc, cw, ocp,
           out.storage_shape[-1], patches, wt, thresh, flip, out)
    return out
