"""Integer rounding used for sizes and grids (plain arithmetic, no NumPy or OpenCL)."""


def ceil_div(value: int, divisor: int) -> int:
    """The smallest integer >= value / divisor (for positive divisors)."""
    return -(-value // divisor)


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` >= value."""
    return ceil_div(value, multiple) * multiple
