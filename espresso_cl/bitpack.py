"""Host-side packing of signs into the packed-bit layout (``kernels/common.h``, :mod:`.layout`).

The library's own packing, for weights and per-channel masks; ``reference/bits.py`` packs
independently (the test oracle) and the two are compared in ``tests/test_bitpack.py``.
"""

from __future__ import annotations

import numpy as np

from .layout import STORAGE_WORD_BITS, packed_words, row_words

# Lane i of a word is bit i: the least significant bit first.
_LANE_SHIFTS = np.arange(STORAGE_WORD_BITS, dtype=np.uint32)


def pack_signs(x: np.ndarray, segment: int | None = None) -> np.ndarray:
    """uint32 words (..., row_words) holding the signs of x (..., C): a set bit where
    ``x >= 0`` (sign(0) = +1), so +-1 values pack as themselves.

    The last axis is cut into segments of ``segment`` channels (default: all C), each packed
    into its own 64-bit-aligned run of words with clear pad bits.
    """
    x = np.asarray(x)
    channels = x.shape[-1]
    segment = channels if segment is None else int(segment)
    width = row_words(channels, segment)  # raises where the segments do not tile the channels
    lead, segments, per_segment = x.shape[:-1], channels // segment, packed_words(segment)
    lanes = np.zeros(lead + (segments, per_segment * STORAGE_WORD_BITS), np.uint32)
    lanes[..., :segment] = (x >= 0).reshape(lead + (segments, segment))
    lanes = lanes.reshape(lead + (segments, per_segment, STORAGE_WORD_BITS))
    words = np.bitwise_or.reduce(lanes << _LANE_SHIFTS, axis=-1)
    return np.ascontiguousarray(words.reshape(lead + (width,)), dtype=np.uint32)


def unpack_signs(words: np.ndarray, channels: int, segment: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_signs`: uint32 words (..., row_words) -> int8 +-1 (..., channels).
    Pad bits are not read."""
    words = np.asarray(words, np.uint32)
    segment = channels if segment is None else int(segment)
    width = row_words(channels, segment)
    if words.shape[-1] != width:
        raise ValueError(f"{channels} channels in segments of {segment} take {width} words a row, "
                         f"got {words.shape[-1]}")
    lead, segments, per_segment = words.shape[:-1], channels // segment, packed_words(segment)
    lanes = (words.reshape(lead + (segments, per_segment, 1)) >> _LANE_SHIFTS) & np.uint32(1)
    bits = lanes.reshape(lead + (segments, per_segment * STORAGE_WORD_BITS))[..., :segment]
    return np.where(bits.reshape(lead + (channels,)) != 0, 1, -1).astype(np.int8)
