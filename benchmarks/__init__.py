"""espresso_cl's benchmark suite: binary networks against float32 baselines, side by side.

``python -m benchmarks --quick`` (CI, small sizes) or ``python -m benchmarks`` (full sizes);
``python benchmarks/headline.py`` for the XNOR GEMM headline figure. See docs/benchmarks.md.
"""
