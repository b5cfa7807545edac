"""Launchers of kernels/bconv2d.cl, kernels/fconv2d.cl and kernels/bitplane.cl.

The direct binary and float convolutions run in two steps: the image is copied into the frame
its windows cover, padded pixels included (skipped when nothing is padded), then the
convolution reads whole window rows from the frame with no bounds test. On CPUs the binary
convolution is instead one fused AVX-512 kernel (zero padding) or window rows (im2col) plus
bgemm (see :func:`bconv2d`). The bit-plane convolution packs each output pixel's whole window,
since a first layer has too few channels to fill a word.
"""

from __future__ import annotations

import operator

from ..geometry import ConvGeometry
from ..tensor import Tensor
from .launch import launch
from .pack import check_thresholds

PAD_VALUES = ("zero", "one")
PLANES = 8  # bit-planes of a uint8 pixel


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


def _frame(x: Tensor, g: ConvGeometry, family: str, defines: dict, one_pad: bool, *sizes) -> tuple:
    """(frame, XH, XW): x itself where no window leaves the image, else x copied by
    ``<family>_pad`` into the frame with its padding. ``sizes`` are the kernel's per-pixel
    sizes after N, H, W (C, then RW for bits)."""
    xh, xw = _frame_size(g)
    n, h, wd, c = x.shape
    if g.pad_top == g.pad_left == 0 and xh <= h and xw <= wd:
        return x, h, wd
    runtime = x.runtime
    framed = Tensor(runtime, (n, xh, xw, c), x.kind)
    per_item = defines.get("PAD_C", 1)  # words (channels) one work-item copies
    launch(runtime, f"{family}.cl", f"{family}_pad", defines,
           (-(-framed.storage_shape[-1] // per_item), n * xh * xw), None, n, h, wd, *sizes, xh, xw, g.pad_top, g.pad_left, one_pad, x, framed)
    return framed, xh, xw


def _tiles(runtime, family: str, pixels: int) -> dict:
    """The family's defines, with TP cut down when there are too few pixels to fill it: a
    dense layer at batch 1 is one pixel, and TP - 1 idle rows would each cost a full row."""
    defines = runtime.params.defines(family)
    return dict(defines, TP=min(defines["TP"], -(-pixels // defines["WG_P"])))


def _grid(defines: dict, pixels: int, channels: int) -> tuple:
    bp, boc = defines["WG_P"] * defines["TP"], defines["WG_OC"] * defines["TOC"]
    global_size = (-(-channels // boc) * defines["WG_OC"], -(-pixels // bp) * defines["WG_P"])
    return global_size, (defines["WG_OC"], defines["WG_P"])


# Most bytes of window rows (im2col) that bconv2d holds at once; more output pixels run in chunks.
IM2COL_BYTES = 32 << 20


def _interior(lo_pad: int, size: int, k: int, stride: int, out: int) -> tuple:
    """Output positions [lo, hi) whose windows stay inside an image axis of ``size``."""
    lo = min(-(-lo_pad // stride), out)
    hi = max(lo, min(out, (size + lo_pad - k) // stride + 1))
    return lo, hi


def bconv2d(x: Tensor, w: Tensor, stride: int, padding: str, pad_value: str = "zero") -> Tensor:
    """Binary convolution: bits x (N, H, W, C), bits w (OC, KH, KW, C) -> int32 (N, OH, OW, OC).

    Each output is the sum over the window's taps of the +-1 dot product of pixel and weights.
    ``padding`` 'same' or 'valid' and ``stride`` place the window (:class:`ConvGeometry`);
    ``pad_value`` 'zero' makes a padded tap add exactly 0, 'one' reads it as all +1.

    Three ways, by profile: with ``ESPRESSO_AVX512`` (x86-64 CPUs with AVX-512 VPOPCNTDQ) and
    zero padding, one fused kernel on bgemm's AVX-512 tiles reads the windows from the image;
    with ``IM2COL`` (CPUs) each output pixel's window is copied into a packed row and
    :func:`ops.bgemm <espresso_cl.ops.gemm.bgemm>` runs on the rows (at most
    :data:`IM2COL_BYTES` of rows at a time), then the zero-padded border pixels are corrected;
    the others (GPUs) run the direct kernel on local-memory tiles.
    """
    if x.kind != "bits" or w.kind != "bits":
        raise TypeError(f"bconv2d takes packed bits x and w, got {x.kind} and {w.kind}")
    g = _geometry("bconv2d", x, w, stride, padding)
    one_pad = _one_pad("bconv2d", pad_value)
    runtime = x.runtime
    defines = runtime.params.defines("bconv2d")
    if defines.get("ESPRESSO_AVX512", 0) and not one_pad:
        return _bconv2d_avx512(x, w, g)
    if defines.get("IM2COL", 0):
        return _bconv2d_im2col(x, w, g, one_pad)
    n, h, wd, c = x.shape
    oc = w.shape[0]
    rw = x.storage_shape[-1]
    pixels = n * g.oh * g.ow
    defines = _tiles(runtime, "bconv2d", pixels)
    framed, xh, xw = _frame(x, g, "bconv2d", defines, one_pad, c, rw)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    launch(runtime, "bconv2d.cl", "bconv2d", defines, *_grid(defines, pixels, oc),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
           xh, xw, rw // runtime.params.words32, one_pad, framed, w, out)
    return out


def _bconv2d_avx512(x: Tensor, w: Tensor, g: ConvGeometry) -> Tensor:
    runtime = x.runtime
    defines = runtime.params.defines("bconv2d")
    n, h, wd, c = x.shape
    oc = w.shape[0]
    pixels = n * g.oh * g.ow
    xtm, xtn = defines.get("XTM", 12), defines.get("XTN", 32)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    launch(runtime, "bconv2d.cl", "bconv2d_avx512", defines, (-(-oc // xtn), -(-pixels // xtm)), (1, 1),
           n, h, wd, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
           x.storage_shape[-1] // runtime.params.words32, x, w, out)
    return out


def _bconv2d_im2col(x: Tensor, w: Tensor, g: ConvGeometry, one_pad: bool) -> Tensor:
    from .gemm import bgemm

    runtime = x.runtime
    defines = runtime.params.defines("bconv2d")
    n, h, wd, c = x.shape
    oc = w.shape[0]
    rw = x.storage_shape[-1]
    cw = rw // runtime.params.words32
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
        launch(runtime, "bconv2d.cl", "bconv2d_im2col", defines, (rows + nsums,), None,
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
            launch(runtime, "bconv2d.cl", "bconv2d_place", defines, (rows * oc,), None,
                   rows * oc, p0 * oc, part, out)
    out = out.reshape((n, g.oh, g.ow, oc))
    if border:
        launch(runtime, "bconv2d.cl", "bconv2d_fixup", defines, (n * border,), None,
               n, h, wd, oc, g.kh, g.kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left,
               oy_lo, oy_hi, ox_lo, ox_hi, border, sums, out)
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
    n, h, wd, c = x.shape
    oc = w.shape[0]
    pixels = n * g.oh * g.ow
    defines = _tiles(runtime, "fconv2d", pixels)
    framed, xh, xw = _frame(x, g, "fconv2d", defines, one_pad, c)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "float32")
    launch(runtime, "fconv2d.cl", "fconv2d", defines, *_grid(defines, pixels, oc),
           n, c, oc, g.kh, g.kw, g.oh, g.ow, g.stride, xh, xw, framed, w, out)
    return out


def supports_bitplane_threshold(runtime) -> bool:
    """Whether :func:`bitplane_conv2d_threshold` runs on ``runtime`` (its profile has
    ``ESPRESSO_AVX512``: PoCL on x86-64 CPUs with AVX-512 VPOPCNTDQ; elsewhere the bit-plane
    layer runs :func:`bitplane_conv2d`, then ``ops.threshold``)."""
    return bool(runtime.params.defines("bitplane").get("ESPRESSO_AVX512", 0))


def _bitplane_patches(x: Tensor, w: Tensor, g: ConvGeometry, defines: dict) -> Tensor:
    """Each output pixel's window as PLANES packed rows, interleaved by word (see bitplane.cl)."""
    runtime = x.runtime
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    pixels = n * g.oh * g.ow
    patches = Tensor(runtime, (pixels, PLANES, kh * kw * c), "bits")
    launch(runtime, "bitplane.cl", "bitplane_pack", defines, (patches.storage_shape[-1], pixels), None,
           n, h, wd, c, kh, kw, g.oh, g.ow, g.stride, g.pad_top, g.pad_left, patches.storage_shape[-1],
           x, patches)
    return patches


def _bitplane_transposed(w: Tensor, rwp: int, defines: dict) -> tuple:
    """(wt, ocp): the filters transposed (word k of 32 filters in a row), padded to ocp (a
    multiple of 32) with zero filters; once per weight tensor (Tensor.derived)."""
    runtime = w.runtime
    oc, kh, kw, c = w.shape
    ocp = -(-oc // 32) * 32
    cw = rwp // runtime.params.words32

    def transposed():
        wt = Tensor(runtime, (cw * ocp, 64), "bits")
        launch(runtime, "bitplane.cl", "bitplane_weights", defines, (rwp, ocp), None,
               oc, kh * kw, c, w.storage_shape[-1], rwp, ocp, w, wt)
        return wt

    return w.derived(("bitplane_weights", rwp, ocp), transposed), ocp


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
    n = x.shape[0]
    oc = w.shape[0]
    pixels = n * g.oh * g.ow
    defines = _tiles(runtime, "bitplane", pixels)
    patches = _bitplane_patches(x, w, g, defines)
    rwp = patches.storage_shape[-1]
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "int32")
    cw = rwp // runtime.params.words32
    if defines.get("ESPRESSO_AVX512", 0):
        wt, ocp = _bitplane_transposed(w, rwp, defines)
        launch(runtime, "bitplane.cl", "bitplane_conv2d_avx512", defines, (ocp // 32, -(-pixels // 4)), (1, 1),
               pixels, oc, cw, ocp, patches, wt, out)
        return out
    _, kh, kw, c = w.shape
    if kh * kw == 1:
        rows = w  # one tap: each filter already is one packed row
    else:
        def window_rows():
            rows = Tensor(runtime, (oc, kh * kw * c), "bits")
            launch(runtime, "bitplane.cl", "bitplane_weights", defines, (rwp, oc), None,
                   oc, kh * kw, c, w.storage_shape[-1], rwp, 0, w, rows)
            return rows

        rows = w.derived(("bitplane_weights", rwp, 0), window_rows)
    launch(runtime, "bitplane.cl", "bitplane_conv2d", defines, *_grid(defines, pixels, oc),
           pixels, oc, cw, patches, rows, out)
    return out


def bitplane_conv2d_threshold(x: Tensor, w: Tensor, thresh: Tensor, flip: Tensor, stride: int,
                              padding: str) -> Tensor:
    """:func:`bitplane_conv2d`, then the folded batch-norm + sign of ``ops.threshold``, packed,
    with the threshold in the convolution's launch (only where :func:`supports_bitplane_threshold`).

    uint8 x (N, H, W, C), bits w (OC, KH, KW, C), int32 thresh and flip (OC,) -> bits
    (N, OH, OW, OC): bit c of a pixel is ``acc <= thresh[c]`` where ``flip[c]`` else
    ``acc >= thresh[c]``, acc the pixel's :func:`bitplane_conv2d` output.
    """
    _check_bitplane("bitplane_conv2d_threshold", x, w)
    g = _geometry("bitplane_conv2d_threshold", x, w, stride, padding)
    runtime = x.runtime
    if not supports_bitplane_threshold(runtime):
        raise ValueError(f"bitplane_conv2d_threshold needs the AVX-512 profile (ESPRESSO_AVX512); "
                         f"{runtime.params.name!r} has none")
    n = x.shape[0]
    oc = w.shape[0]
    check_thresholds("bitplane_conv2d_threshold", thresh, flip, oc)
    pixels = n * g.oh * g.ow
    defines = _tiles(runtime, "bitplane", pixels)
    patches = _bitplane_patches(x, w, g, defines)
    rwp = patches.storage_shape[-1]
    wt, ocp = _bitplane_transposed(w, rwp, defines)
    out = Tensor(runtime, (n, g.oh, g.ow, oc), "bits")
    launch(runtime, "bitplane.cl", "bitplane_threshold_avx512", defines, (ocp // 32, -(-pixels // 4)), (1, 1),
           pixels, oc, rwp // runtime.params.words32, ocp, out.storage_shape[-1], patches, wt, thresh, flip, out)
    return out
