"""The speed targets (issues 7 and 14), judged on a full-mode result document.

Each row names the issue that set it. Issue 7 set the CPU targets through PoCL; issue 14
raised some of them (GEMV 12x NumPy, the MLP at batch 1 10x, the large batches against 0.9 of
the GEMM's ratio), judged the batch-1 and large-batch ratios against the fastest float32
contender measured (own float mode, NumPy, PyTorch, ONNX Runtime), and added the launch
count, the first call at a new batch size and the GPU targets.

CPU targets are judged on every CPU device: they are set for PoCL, and another CPU runtime
(Intel's) is judged against the same goals to show where it lands. The CPU GEMM goals depend
on the machine kind, which comes from the CPU's features recorded in the document: the AVX-512
VPOPCNTDQ kind or the AVX2-only kind. GPU targets are judged on every GPU device in the
document.
"""

from __future__ import annotations

from .case import fastest_float

# -- CPU ----------------------------------------------------------------------------------------
# Per machine kind: XNOR GEMM (binary MAC/s, and speed-up over NumPy float32 of the same shape).
GEMM_GOALS = {"AVX512VPOPCNTDQ": (0.9e12, 9.0), "AVX2": (0.32e12, 4.0)}
GEMM_CASES = ("1024x1024x4096", "4096x4096x4096")
HEADLINE_GEMM = "1024x1024x4096"
GEMV_CASE, GEMV_GOAL = "1x4096x4096", 12.0
# The networks' batch-1 case and the large-batch case every run has; any other case at batch
# LARGE_BATCH or more is judged as a large batch too.
NETWORK_CASES = {"mlp": ("batch 1", "batch 256"), "cnn": ("batch 1", "batch 64")}
LARGE_BATCH = 64
# A large batch must reach this share of the headline GEMM's speed-up over NumPy, against
# PyTorch, against own float mode and against the fastest float contender.
LARGE_BATCH_SHARE = 0.9
# Batch 1: (goal, issue) against own float mode and against the fastest float contender.
# Issue 7 asked 8x PyTorch of both networks; issue 14 judges that against the fastest float
# contender and raises the MLP's goals to 10x.
BATCH1_GOALS = {"mlp": {"float": (10.0, "14"), "fastest": (10.0, "14")},
                "cnn": {"float": (8.0, "7, 14"), "fastest": (8.0, "7")}}
# A binary conv may lose at most 30% to the XNOR GEMM of the same M, N, K (CPU and GPU).
CONV_GOAL = 0.7
# -- every device ------------------------------------------------------------------------------
# The first call at a batch size not seen before, over a single call of that size once warm (both
# after the suite's pause).
FIRST_CALL_GOAL = 2.0
# -- GPU ----------------------------------------------------------------------------------------
GPU_FLOAT_GOAL = 5.0                      # MLP batch 256 and CNN batch 64 against own float mode
GPU_LARGE_CASES = {"mlp": "batch 256", "cnn": "batch 64"}
GPU_MLP_BATCH1_S = 0.3e-3                 # MLP batch 1 median under this
GPU_GEMV_GOAL = 2e12                      # binary MAC/s


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


def _binary_label(result: dict | None, device_key: str) -> str | None:
    if result is None:
        return None
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


class _Device:
    """The figures of one device in a result document, found by case."""

    def __init__(self, summary: dict, key: str):
        self.summary, self.key = summary, key

    def binary(self, family: str, name: str) -> tuple[dict | None, str | None]:
        r = _result(self.summary, family, name)
        return r, _binary_label(r, self.key)

    def ratio(self, family: str, name: str, role: str) -> float | None:
        r, label = self.binary(family, name)
        return _ratio(r, label, role, self.key) if label else None

    def fastest(self, family: str, name: str) -> tuple[float | None, str]:
        """Speed-up over the fastest float contender and which one it was."""
        r, label = self.binary(family, name)
        found = fastest_float(r, label) if label else None
        return (None, "") if found is None else (found[1], f"fastest: {found[0]}")

    def figure(self, family: str, name: str, key: str) -> float | None:
        r, label = self.binary(family, name)
        return r["contenders"][label][key] if label else None

    def extra(self, family: str, name: str, what: str) -> dict | None:
        """This device's ``launches`` or ``first_call`` figures of a case, where measured."""
        r = _result(self.summary, family, name)
        figures = r.get(what, {}).get(self.key) if r else None
        return figures if figures and "error" not in figures else None


def _row(target: str, device: str, figure: float | None, goal: float | None, unit: str, issue: str,
         compare: str = ">=", detail: str = "") -> dict:
    unknown = figure is None or goal is None or goal != goal  # a NaN goal: its GEMM was not measured
    met = None if unknown else {">=": figure >= goal, "<=": figure <= goal, "<": figure < goal}[compare]
    return {"target": target, "device": device, "figure": figure, "goal": goal, "unit": unit,
            "compare": compare, "issue": issue, "detail": detail, "met": met}


def _network_cases(summary: dict, family: str) -> list[str]:
    """The family's expected cases and any other case of it in the document ("batch N"), by batch."""
    names = set(NETWORK_CASES[family]) | {r["name"] for r in summary["results"] if r["family"] == family}
    return sorted(names, key=lambda name: int(name.split()[-1]))


def _large_cases(summary: dict, family: str) -> list[str]:
    large = NETWORK_CASES[family][1]
    return [large] + [r["name"] for r in summary["results"] if r["family"] == family and r["name"] != large
                      and r["params"].get("batch", 0) >= LARGE_BATCH]


def _gemm_rows(d: _Device, kind: str | None) -> list:
    rows = []
    if kind in GEMM_GOALS:
        rate_goal, numpy_goal = GEMM_GOALS[kind]
        for name in GEMM_CASES:
            rows.append(_row(f"XNOR GEMM {name} ({kind} kind)", d.key, d.figure("gemm", name, "mac_per_s"),
                             rate_goal, "binary MAC/s", "7"))
            rows.append(_row(f"XNOR GEMM {name} vs NumPy f32", d.key, d.ratio("gemm", name, "numpy"),
                             numpy_goal, "x", "7"))
    rows.append(_row(f"binary GEMV {GEMV_CASE} vs NumPy f32", d.key, d.ratio("gemm", GEMV_CASE, "numpy"),
                     GEMV_GOAL, "x", "14"))
    return rows


def _cpu_network_rows(summary: dict, d: _Device) -> list:
    rows = []
    headline = d.ratio("gemm", HEADLINE_GEMM, "numpy")
    large_goal = None if headline is None else LARGE_BATCH_SHARE * headline
    for family in NETWORK_CASES:
        small = NETWORK_CASES[family][0]
        goals = BATCH1_GOALS[family]
        goal, issue = goals["float"]
        rows.append(_row(f"{family.upper()} {small} vs own float mode", d.key, d.ratio(family, small, "float"),
                         goal, "x", issue))
        figure, which = d.fastest(family, small)
        goal, issue = goals["fastest"]
        rows.append(_row(f"{family.upper()} {small} vs the fastest float contender", d.key, figure, goal, "x",
                         issue, detail=which))
        share = f"(goal: {LARGE_BATCH_SHARE:g} of the {HEADLINE_GEMM} GEMM's ratio to NumPy)"
        for case in _large_cases(summary, family):
            for role, name in (("torch", "PyTorch f32"), ("float", "own float mode")):
                rows.append(_row(f"{family.upper()} {case} vs {name} {share}", d.key, d.ratio(family, case, role),
                                 large_goal, "x", "14"))
            figure, which = d.fastest(family, case)
            rows.append(_row(f"{family.upper()} {case} vs the fastest float contender {share}", d.key, figure,
                             large_goal, "x", "14", detail=which))
        for case in _network_cases(summary, family):
            launches = d.extra(family, case, "launches")
            rows.append(_row(f"{family.upper()} {case}: kernel launches per call (binary layers + 1)", d.key,
                             launches and launches["launches"],
                             launches and launches["binary_layers"] + 1, "launches", "14", "<="))
    return rows


def _conv_rows(summary: dict, d: _Device, gpu: bool) -> list:
    # Issue 7 set the CPU goal at every batch; issue 14 at batch 1, and on the GPU.
    return [_row(f"binary conv {row['layer']} batch {row['batch']} vs GEMM of the same M, N, K", d.key,
                 row["ratio"], CONV_GOAL, "x", "14" if gpu else ("7, 14" if row["batch"] == 1 else "7"))
            for row in summary.get("conv_layers", [])
            if row["device"] == d.key and row["layer"] != "conv1"]  # conv1 is the bit-plane layer


def _first_call_rows(summary: dict, d: _Device) -> list:
    rows = []
    for family in NETWORK_CASES:
        for case in _network_cases(summary, family):
            first = d.extra(family, case, "first_call")
            rows.append(_row(f"{family.upper()} after {case}: first call at a new batch size"
                             + (f" ({first['batch']})" if first else "") + " / a warm single call",
                             d.key, first and first["ratio"], FIRST_CALL_GOAL, "x", "14", "<="))
    return rows


def _gpu_rows(summary: dict, d: _Device) -> list:
    rows = [_row(f"{family.upper()} {case} vs own float mode (GPU)", d.key, d.ratio(family, case, "float"),
                 GPU_FLOAT_GOAL, "x", "14") for family, case in GPU_LARGE_CASES.items()]
    rows.append(_row("MLP batch 1 median time (GPU)", d.key, d.figure("mlp", "batch 1", "median_s"),
                     GPU_MLP_BATCH1_S, "s", "14", "<"))
    rows.append(_row(f"binary GEMV {GEMV_CASE} (GPU)", d.key, d.figure("gemm", GEMV_CASE, "mac_per_s"),
                     GPU_GEMV_GOAL, "binary MAC/s", "14"))
    return rows


def evaluate(summary: dict) -> list[dict]:
    """One row per target and device: the figure reached, the goal, and whether it was met
    (None where the figure or its goal was not measured)."""
    if summary["mode"] != "full":
        return []
    kind = machine_kind(summary)
    rows = []
    for device in summary["devices"]:
        d = _Device(summary, device["key"])
        if device["kind"] == "cpu":
            rows += (_gemm_rows(d, kind) + _cpu_network_rows(summary, d) + _conv_rows(summary, d, gpu=False)
                     + _first_call_rows(summary, d))
        elif device["kind"] == "gpu":
            rows += _gpu_rows(summary, d) + _conv_rows(summary, d, gpu=True) + _first_call_rows(summary, d)
    return rows


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "binary MAC/s":
        return f"{value / 1e12:.3g} T"
    if unit == "s":
        return f"{value * 1e3:.3g} ms"
    if unit == "launches":
        return f"{value:.0f}"
    return f"{value:.3g}x"


def lines(summary: dict) -> list[str]:
    """The targets as text, one per row."""
    rows = evaluate(summary)
    if not rows:
        return ["targets are judged in full mode only (python -m benchmarks)"]
    kind = machine_kind(summary) or "unknown"
    out = [f"CPU machine kind: {kind} (from the CPU features); the CPU targets are set for PoCL"]
    for row in rows:
        verdict = "not measured" if row["met"] is None else ("met" if row["met"] else "NOT met")
        detail = f"; {row['detail']}" if row["detail"] else ""
        out.append(f"  {row['device']:14s} [issue {row['issue']}] {row['target']}: {_shown(row['figure'], row['unit'])} "
                   f"(goal {row['compare']} {_shown(row['goal'], row['unit'])}{detail}): {verdict}")
    return out
