"""Reference sign, packing and unpacking."""

from __future__ import annotations

import numpy as np

from ..layout import packed_words


def sign(x: np.ndarray) -> np.ndarray:
    """+1 where x >= 0 (so sign(0) = +1), else -1, as int8."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def pack_bits(values: np.ndarray, segment: int | None = None) -> np.ndarray:
    """Pack +-1 values (..., C) into uint32 words (..., row_words), bit 1 = +1.

    The last axis is cut into segments of ``segment`` channels (default: all C), each padded
    with 0 bits to a whole number of 64-bit words, least significant bit first.
    """
    values = np.asarray(values)
    channels = values.shape[-1]
    segment = channels if segment is None else segment
    lead = values.shape[:-1]
    seg = (values > 0).reshape(lead + (channels // segment, segment))
    width = packed_words(segment) * 32
    padded = np.zeros(lead + (channels // segment, width), dtype=bool)
    padded[..., :segment] = seg
    packed = np.packbits(padded, axis=-1, bitorder="little")
    words = packed.view("<u4").astype(np.uint32)
    return words.reshape(lead + (-1,))


def unpack_bits(words: np.ndarray, channels: int, segment: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_bits`: uint32 words -> int8 +-1 values (..., channels)."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    segment = channels if segment is None else segment
    lead = words.shape[:-1]
    per_seg = packed_words(segment)
    seg = words.reshape(lead + (channels // segment, per_seg)).astype("<u4")
    bits = np.unpackbits(seg.view(np.uint8), axis=-1, bitorder="little")[..., :segment]
    return np.where(bits.reshape(lead + (channels,)) > 0, 1, -1).astype(np.int8)
