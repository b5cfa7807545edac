"""The library's host-side packing (espresso_cl.bitpack) against the reference packing, on shapes
and segments where words, 64-bit rows and segments end in awkward places. Pure NumPy."""

import numpy as np
import pytest

from espresso_cl import reference
from espresso_cl.bitpack import pack_signs, unpack_signs

# (leading shape, channels, segment): segments of 1, of a word and one, of two rows less one ...
CASES = [
    ((), 1, None), ((3,), 1, None), ((2,), 31, None), ((4,), 32, None), ((1,), 33, None),
    ((5,), 63, None), ((2,), 64, None), ((3,), 65, None), ((2, 3), 100, None), ((7,), 129, None),
    ((3,), 6, 1), ((2,), 12, 3), ((4,), 66, 33), ((2, 2), 130, 65), ((3,), 254, 127),
    ((2,), 192, 64), ((1, 2, 3), 96, 32), ((5,), 200, 40),
]


def _values(rng, shape):
    """Reals with exact zeros among them (sign(0) = +1)."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.2] = 0.0
    return x


@pytest.mark.parametrize("lead, channels, segment", CASES)
def test_pack_signs_matches_reference(lead, channels, segment):
    rng = np.random.default_rng(channels * 1000 + (segment or 0))
    x = _values(rng, lead + (channels,))
    ours = pack_signs(x, segment)
    expected = reference.pack_bits(reference.sign(x), segment)
    assert ours.dtype == np.uint32 and ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("lead, channels, segment", CASES)
def test_unpack_signs_matches_reference_and_inverts_pack(lead, channels, segment):
    rng = np.random.default_rng(channels * 1000 + (segment or 0) + 1)
    pm1 = np.where(rng.random(lead + (channels,)) < 0.5, 1, -1).astype(np.int8)
    words = reference.pack_bits(pm1, segment)
    ours = unpack_signs(words, channels, segment)
    assert ours.dtype == np.int8
    np.testing.assert_array_equal(ours, reference.unpack_bits(words, channels, segment))
    np.testing.assert_array_equal(unpack_signs(pack_signs(pm1, segment), channels, segment), pm1)


@pytest.mark.parametrize("lead, channels, segment", CASES)
def test_unpack_signs_ignores_pad_bits(lead, channels, segment):
    """Words with every bit set, pad bits included, unpack as the reference reads them."""
    words = reference.pack_bits(np.ones(lead + (channels,), np.int8), segment)
    full = np.full_like(words, 0xFFFFFFFF)
    np.testing.assert_array_equal(unpack_signs(full, channels, segment), np.ones(lead + (channels,), np.int8))


def test_pad_bits_stay_clear():
    """+1 everywhere: every bit of a segment set, none of its padding."""
    words = pack_signs(np.ones((2, 70)), 35)
    # Each 35-channel segment takes one 64-bit row: 32 bits, then 3 bits, then 0.
    np.testing.assert_array_equal(words, np.tile([0xFFFFFFFF, 0x7, 0xFFFFFFFF, 0x7], (2, 1)))


def test_bad_segments_and_lengths_raise():
    with pytest.raises(ValueError, match="segments"):
        pack_signs(np.ones((2, 10)), 3)
    with pytest.raises(ValueError, match="segments"):
        unpack_signs(np.zeros((2, 4), np.uint32), 10, 4)
    with pytest.raises(ValueError, match="words a row"):
        unpack_signs(np.zeros((2, 3), np.uint32), 10)
