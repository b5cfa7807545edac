"""Checks of user-given arguments and header fields, with messages that name the argument.

Strict on purpose: ``2.5`` is not a size, ``"yes"`` is not a flag and ``True`` is not a number.
Python would convert each silently (``int(2.5) == 2``), and a model built from a converted
value is not the model the user described. NumPy scalars count as the Python type they hold.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

# Sizes reach kernels as int32 arguments.
MAX_SIZE = 2**31 - 1


def _described(value) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"


def integer(value, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int: an int or NumPy integer (not a bool) within the bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {_described(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{what} must be <= {maximum}, got {value}")
    return value


def size(value, what: str) -> int:
    """A positive size that fits a kernel's int32 argument."""
    return integer(value, what, 1, MAX_SIZE)


def size_pair(value, what: str) -> tuple:
    """A size k or a (height, width) pair, as a pair of sizes."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{what} must be a size or a (height, width) pair, got {_described(value)}")
        return tuple(size(v, what) for v in value)
    return (size(value, what),) * 2


def shape(value, what: str) -> tuple:
    """A non-empty list or tuple of sizes."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{what} must be a non-empty tuple of sizes, got {_described(value)}")
    return tuple(size(v, f"{what} entry") for v in value)


def boolean(value, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False, got {_described(value)}")
    return bool(value)


def real(value, what: str, minimum: float | None = None) -> float:
    """A finite real number (int or float, not a bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {_described(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def one_of(value, what: str, options: tuple) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{what} must be one of {options}, got {_described(value)}")
    return value


def name(value, what: str = "name") -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{what} must be a non-empty string or None, got {_described(value)}")
    return value
