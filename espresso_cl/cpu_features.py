"""The host CPU's instruction-set features, as NumPy detected them at import.

The tuning profile "cpu-avx512" (``params.py``) compiles AVX-512 code into the PoCL kernels;
an x86-64 CPU without these features would die on an illegal instruction, so the profile is
chosen (and tested) only where :func:`missing_avx512` is empty.
"""

from __future__ import annotations

import platform

# The AVX-512 subsets kernels/xnor_cpu.h uses: vpopcntq (VPOPCNTDQ) on 512-bit vectors (F),
# masked loads (F), and the BW / VL subsets the target attribute names.
AVX512_XNOR = ("AVX512F", "AVX512BW", "AVX512VL", "AVX512VPOPCNTDQ")


def cpu_features() -> dict[str, bool]:
    """NumPy's runtime CPU feature table (name -> present); empty if NumPy has none."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # NumPy 2
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # NumPy 1
        except ImportError:
            return {}
    return dict(__cpu_features__)


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def missing_avx512() -> list[str]:
    """The features of :data:`AVX512_XNOR` this machine lacks (all of them off x86-64)."""
    if not is_x86_64():
        return list(AVX512_XNOR)
    features = cpu_features()
    return [name for name in AVX512_XNOR if not features.get(name, False)]


def has_avx512_xnor() -> bool:
    """True where kernels/xnor_cpu.h's AVX-512 micro-kernels can run."""
    return not missing_avx512()
