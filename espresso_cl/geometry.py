"""Output geometry of convolution and pooling windows (shared by kernels' launchers and the reference)."""

from __future__ import annotations

from dataclasses import dataclass

from .intmath import ceil_div

PADDINGS = ("same", "valid")


@dataclass(frozen=True)
class ConvGeometry:
    """Where a (KH, KW) window with ``stride`` lands on an H x W image.

    'same' follows the usual convention: OH = ceil(H / stride), the total padding
    max((OH - 1) * stride + KH - H, 0) split with the smaller half on top / left.
    """

    h: int
    w: int
    kh: int
    kw: int
    stride: int
    oh: int
    ow: int
    pad_top: int
    pad_left: int

    @classmethod
    def of(cls, h: int, w: int, kh: int, kw: int, stride: int, padding: str) -> "ConvGeometry":
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if stride < 1 or kh < 1 or kw < 1:
            raise ValueError(f"kernel {kh}x{kw} and stride {stride} must be positive")
        if padding == "valid":
            if h < kh or w < kw:
                raise ValueError(f"a {kh}x{kw} window does not fit a {h}x{w} image without padding")
            return cls(h, w, kh, kw, stride, (h - kh) // stride + 1, (w - kw) // stride + 1, 0, 0)
        oh, ow = ceil_div(h, stride), ceil_div(w, stride)
        pad_h = max((oh - 1) * stride + kh - h, 0)
        pad_w = max((ow - 1) * stride + kw - w, 0)
        return cls(h, w, kh, kw, stride, oh, ow, pad_h // 2, pad_w // 2)
