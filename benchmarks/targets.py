"""The CPU speed targets (issue 7), judged on a full-mode result document.

Each target names the machine kind it is set for: the AVX-512 VPOPCNTDQ kind (AMD Zen 4
here) or the AVX2-only kind (Zen 3). The kind comes from the CPU's features recorded in the
document. The targets are set for PoCL, so they are judged on the PoCL device. Every other
CPU device (Intel's runtime) is judged against the same targets, to show where it lands.
"""

from __future__ import annotations

# Per machine kind: XNOR GEMM (binary MAC/s, and speed-up over NumPy float32 of the same shape).
GEMM_GOALS = {"AVX512VPOPCNTDQ": (0.9e12, 9.0), "AVX2": (0.32e12, 4.0)}
GEMM_CASES = ("1024x1024x4096", "4096x4096x4096")
HEADLINE_GEMM = "1024x1024x4096"
GEMV_CASE, GEMV_GOAL = "1x4096x4096", 10.0
# Batch 1 must be 8x PyTorch and 8x float mode. The large batch must match the headline
# GEMM's speed-up over NumPy.
NETWORK_CASES = {"mlp": ("batch 1", "batch 256"), "cnn": ("batch 1", "batch 64")}
BATCH1_GOAL = 8.0
# A binary conv may lose at most 30% to the XNOR GEMM of the same M, N, K.
CONV_GOAL = 0.7


def machine_kind(summary: dict) -> str | None:
    features = summary["machine"]["cpu_features"]
    if features["numpy"].get("AVX512VPOPCNTDQ") or features["proc_cpuinfo"].get("avx512_vpopcntdq"):
        return "AVX512VPOPCNTDQ"
    if features["numpy"].get("AVX2") or features["proc_cpuinfo"].get("avx2"):
        return "AVX2"
    return None


def _result(summary: dict, family: str, name: str) -> dict | None:
    for r in summary["results"]:
        if r["family"] == family and r["name"] == name and r["check"]["passed"]:
            return r
    return None


def _binary_label(result: dict, device_key: str) -> str | None:
    for label, figures in result["contenders"].items():
        if figures["role"] == "binary" and figures["device"] == device_key and "median_s" in figures:
            return label
    return None


def _ratio(result: dict, label: str, role: str, device_key: str) -> float | None:
    """Speed-up of binary ``label`` over the contender of ``role`` (float mode: same device)."""
    for other, ratio in result["speedups"].get(label, {}).items():
        figures = result["contenders"][other]
        if figures["role"] == role and (role != "float" or figures["device"] == device_key):
            return ratio
    return None


def _row(target: str, device: str, figure: float | None, goal: float, unit: str) -> dict:
    unknown = figure is None or goal is None or goal != goal  # a NaN goal: its GEMM was not measured
    return {"target": target, "device": device, "figure": figure, "goal": goal, "unit": unit,
            "met": None if unknown else figure >= goal}


def evaluate(summary: dict) -> list[dict]:
    """One row per target and CPU device: the figure reached, the goal, and whether it was met."""
    if summary["mode"] != "full":
        return []
    kind = machine_kind(summary)
    rows = []
    for device in summary["devices"]:
        if device["kind"] != "cpu":
            continue
        key = device["key"]
        if kind in GEMM_GOALS:
            rate_goal, numpy_goal = GEMM_GOALS[kind]
            for name in GEMM_CASES:
                r = _result(summary, "gemm", name)
                label = r and _binary_label(r, key)
                rate = r["contenders"][label]["mac_per_s"] if label else None
                ratio = _ratio(r, label, "numpy", key) if label else None
                rows.append(_row(f"XNOR GEMM {name} ({kind} kind)", key, rate, rate_goal, "binary MAC/s"))
                rows.append(_row(f"XNOR GEMM {name} vs NumPy f32", key, ratio, numpy_goal, "x"))
        r = _result(summary, "gemm", GEMV_CASE)
        label = r and _binary_label(r, key)
        rows.append(_row(f"binary GEMV {GEMV_CASE} vs NumPy f32", key,
                         _ratio(r, label, "numpy", key) if label else None, GEMV_GOAL, "x"))
        headline = _result(summary, "gemm", HEADLINE_GEMM)
        headline_label = headline and _binary_label(headline, key)
        large_goal = _ratio(headline, headline_label, "numpy", key) if headline_label else None
        for family, (small, large) in NETWORK_CASES.items():
            for case, goal in ((small, BATCH1_GOAL), (large, large_goal)):
                r = _result(summary, family, case)
                label = r and _binary_label(r, key)
                for role, name in (("torch", "PyTorch f32"), ("float", "own float mode")):
                    figure = _ratio(r, label, role, key) if label else None
                    what = (f"{family.upper()} {case} vs {name}"
                            + ("" if case == small else f" (goal: the {HEADLINE_GEMM} GEMM's ratio to NumPy)"))
                    rows.append(_row(what, key, figure, goal, "x"))
        for row in summary.get("conv_layers", []):
            if row["device"] == key and row["layer"] != "conv1":  # conv1 is the bit-plane layer
                rows.append(_row(f"binary conv {row['layer']} batch {row['batch']} vs GEMM of the same M, N, K",
                                 key, row["ratio"], CONV_GOAL, "x"))
    return rows


def lines(summary: dict) -> list[str]:
    """The targets as text, one per row."""
    rows = evaluate(summary)
    if not rows:
        return ["targets are judged in full mode only (python -m benchmarks)"]
    kind = machine_kind(summary) or "unknown"
    out = [f"machine kind: {kind} (from the CPU features); the targets are set for PoCL"]
    for row in rows:
        figure, goal = row["figure"], row["goal"]
        if row["unit"] == "binary MAC/s":
            shown = "-" if figure is None else f"{figure / 1e12:.3g} T"
            wanted = f">= {goal / 1e12:.3g} T"
        else:
            shown = "-" if figure is None else f"{figure:.3g}x"
            wanted = "-" if goal is None else f">= {goal:.3g}x"
        verdict = "not measured" if row["met"] is None else ("met" if row["met"] else "NOT met")
        out.append(f"  {row['device']:14s} {row['target']}: {shown} (goal {wanted}): {verdict}")
    return out
