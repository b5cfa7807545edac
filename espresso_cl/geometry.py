"""Output geometry of convolution and pooling windows (shared by kernels' launchers and the reference)."""

from __future__ import annotations

from dataclasses import dataclass

from . import checks
from .intmath import ceil_div

PADDINGS = ("same", "valid")


def padding_of(value, what: str = "padding"):
    """A padding as layers keep it: ``'same'``, ``'valid'``, or explicit amounts
    ``((top, bottom), (left, right))``; an int p means p on every side, a pair (ph, pw) means
    ph on top and bottom, pw on left and right (as PyTorch's ``padding=(ph, pw)``)."""
    if isinstance(value, str):
        return checks.one_of(value, what, PADDINGS)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        sides = []
        for pair in value:
            if isinstance(pair, (list, tuple)):
                if len(pair) != 2:
                    break
                sides.append(tuple(checks.integer(p, f"{what} amount", 0, checks.MAX_SIZE) for p in pair))
            else:
                amount = checks.integer(pair, f"{what} amount", 0, checks.MAX_SIZE)
                sides.append((amount, amount))
        else:
            return "valid" if sides == [(0, 0), (0, 0)] else tuple(sides)
    elif not isinstance(value, (list, tuple)):
        amount = checks.integer(value, what, 0, checks.MAX_SIZE)
        return ((amount, amount), (amount, amount)) if amount else "valid"
    raise ValueError(f"{what} must be 'same', 'valid', an int, (ph, pw) or ((top, bottom), (left, right)); "
                     f"got {value!r}")


def simplest_padding(amounts: tuple, kernel: tuple, stride: int):
    """Explicit ((top, bottom), (left, right)) by the simplest name with the same windows:
    'valid' when none, 'same' for stride 1 where they are what 'same' pads (a model file then
    stays format version 1), else the amounts."""
    if amounts == ((0, 0), (0, 0)):
        return "valid"
    same = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return "same" if stride == 1 and tuple(amounts) == same else amounts


def padding_config(padding):
    """A padding as JSON: the name, or [[top, bottom], [left, right]]."""
    return padding if isinstance(padding, str) else [list(pair) for pair in padding]


@dataclass(frozen=True)
class ConvGeometry:
    """Where a (KH, KW) window with ``stride`` lands on an H x W image.

    'same' follows TensorFlow's convention: OH = ceil(H / stride), the total padding
    max((OH - 1) * stride + KH - H, 0) split with the smaller half on top / left. For stride 1
    and an odd kernel that is (K - 1) / 2 on every side, as PyTorch's ``padding=K // 2``; for
    stride 2 on an even size it is not (TensorFlow pads 0 on top, PyTorch 1): give explicit
    amounts ``((top, bottom), (left, right))`` to match PyTorch, OH = (H + top + bottom - KH)
    // stride + 1. Rows and columns past the last window are never read.
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
    def of(cls, h: int, w: int, kh: int, kw: int, stride: int, padding) -> "ConvGeometry":
        padding = padding_of(padding)
        if stride < 1 or kh < 1 or kw < 1:
            raise ValueError(f"kernel {kh}x{kw} and stride {stride} must be positive")
        if padding == "same":
            oh, ow = ceil_div(h, stride), ceil_div(w, stride)
            pad_h = max((oh - 1) * stride + kh - h, 0)
            pad_w = max((ow - 1) * stride + kw - w, 0)
            return cls(h, w, kh, kw, stride, oh, ow, pad_h // 2, pad_w // 2)
        (top, bottom), (left, right) = ((0, 0), (0, 0)) if padding == "valid" else padding
        if h + top + bottom < kh or w + left + right < kw:
            raise ValueError(f"a {kh}x{kw} window does not fit a {h}x{w} image padded by "
                             f"{top}+{bottom} rows and {left}+{right} columns")
        oh = (h + top + bottom - kh) // stride + 1
        ow = (w + left + right - kw) // stride + 1
        return cls(h, w, kh, kw, stride, oh, ow, top, left)

    def every_window_meets_the_image(self) -> bool:
        """Whether each window covers at least one pixel of the image (pooling needs one)."""
        last_row, last_col = (self.oh - 1) * self.stride - self.pad_top, (self.ow - 1) * self.stride - self.pad_left
        return (self.pad_top < self.kh and self.pad_left < self.kw
                and last_row < self.h and last_col < self.w)
