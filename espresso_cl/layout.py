"""The packed-bit layout rules (see ``kernels/common.h``); plain arithmetic, no NumPy or OpenCL."""

from __future__ import annotations

from .intmath import ceil_div

# Buffers hold 32-bit words; a kernel may read two as one 64-bit word (tuning.Profile.word_bits).
STORAGE_WORD_BITS = 32
ROW_ALIGN_BITS = 64  # rows pad to whole 64-bit words so CPUs may read them as ulong


def packed_words(channels: int) -> int:
    """32-bit words in one packed row of ``channels`` bits (always even: 64-bit aligned)."""
    if channels < 1:
        raise ValueError(f"a packed row needs at least one channel, got {channels}")
    return ceil_div(channels, ROW_ALIGN_BITS) * (ROW_ALIGN_BITS // STORAGE_WORD_BITS)


def row_words(channels: int, segment: int | None = None) -> int:
    """32-bit words of a packed row of ``channels`` bits made of segments of ``segment`` bits."""
    segment = channels if segment is None else segment
    if segment < 1 or channels % segment:
        raise ValueError(f"{channels} channels do not split into segments of {segment}")
    return channels // segment * packed_words(segment)


def storage_shape(shape: tuple, kind: str, segment: int | None = None) -> tuple:
    """The shape of the array that holds a tensor of logical ``shape`` and ``kind``."""
    if kind == "bits":
        return tuple(shape[:-1]) + (row_words(shape[-1], segment),)
    return tuple(shape)
