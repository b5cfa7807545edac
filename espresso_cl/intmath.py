"""Integer rounding used for sizes and grids (plain arithmetic, no NumPy or OpenCL)."""


def ceil_div(value: int, divisor: int) -> int:
    """The smallest integer >= value / divisor (for positive divisors)."""
    return -(-value // divisor)


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` >= value."""
    return ceil_div(value, multiple) * multiple


def size_bucket(value: int) -> int:
    """The smallest power of two >= value (value >= 1).

    Launchers choose a block shape from the bucket of a problem's rows, not the rows
    themselves, so that the programs a model can need are those of a few buckets, all built
    when the model is planned (:mod:`espresso_cl.launch_list`), never on the call that first
    meets a batch size.
    """
    return 1 << max(0, int(value) - 1).bit_length()
