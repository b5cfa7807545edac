"""The benchmark's target verdicts (benchmarks/targets.py), on made-up result documents."""

import pytest

from benchmarks import targets

POCL, INTEL = "pocl cpu 2:0", "intel cpu 1:0"


def _features(avx512: bool) -> dict:
    return {"numpy": {"AVX2": True, "AVX512VPOPCNTDQ": avx512},
            "proc_cpuinfo": {"avx2": True, "avx512_vpopcntdq": avx512}}


def _result(family, name, binary_rate, ratios, passed=True):
    """A case in which the PoCL binary contender ran at ``binary_rate`` with ``ratios`` over baselines."""
    contenders = {"binary pocl": {"role": "binary", "device": POCL, "median_s": 1.0, "mac_per_s": binary_rate},
                  "float pocl": {"role": "float", "device": POCL, "median_s": 1.0},
                  "float intel": {"role": "float", "device": INTEL, "median_s": 1.0},
                  "NumPy float32": {"role": "numpy", "device": None, "median_s": 1.0},
                  "PyTorch float32": {"role": "torch", "device": None, "median_s": 1.0}}
    speedups = {"binary pocl": {"float pocl": ratios.get("float", 1.0), "float intel": 1000.0,
                                "NumPy float32": ratios.get("numpy", 1.0),
                                "PyTorch float32": ratios.get("torch", 1.0)}}
    return {"family": family, "name": name, "contenders": contenders, "speedups": speedups,
            "check": {"passed": passed, "detail": ""}}


def _summary(avx512=True, mode="full", results=()):
    return {"mode": mode, "machine": {"cpu_features": _features(avx512)},
            "devices": [{"key": POCL, "kind": "cpu"}, {"key": "nvidia gpu 0:0", "kind": "gpu"}],
            "results": list(results)}


def _verdicts(summary):
    return {row["target"]: row for row in targets.evaluate(summary)}


def test_quick_mode_judges_nothing():
    assert targets.evaluate(_summary(mode="quick", results=[_result("gemm", "1024x1024x4096", 1e12, {})])) == []


@pytest.mark.parametrize("avx512, rate, met", [(True, 1.0e12, True), (True, 0.5e12, False),
                                                (False, 0.5e12, True), (False, 0.3e12, False)])
def test_gemm_goal_depends_on_the_machine_kind(avx512, rate, met):
    rows = _verdicts(_summary(avx512, results=[_result("gemm", "1024x1024x4096", rate, {"numpy": 10.0})]))
    kind = "AVX512VPOPCNTDQ" if avx512 else "AVX2"
    assert rows[f"XNOR GEMM 1024x1024x4096 ({kind} kind)"]["met"] is met
    assert rows["XNOR GEMM 1024x1024x4096 vs NumPy f32"]["met"] is True


def test_missing_or_failed_cases_are_not_measured_rather_than_met():
    rows = _verdicts(_summary(results=[_result("gemm", "4096x4096x4096", 5e12, {"numpy": 50.0}, passed=False)]))
    assert rows["XNOR GEMM 4096x4096x4096 (AVX512VPOPCNTDQ kind)"]["met"] is None
    assert rows["binary GEMV 1x4096x4096 vs NumPy f32"]["met"] is None


def test_networks_use_own_device_float_mode_and_the_gemm_ratio_at_large_batch():
    results = [_result("gemm", "1024x1024x4096", 1e12, {"numpy": 12.0}),
               _result("mlp", "batch 1", 0, {"torch": 9.0, "float": 7.0}),
               _result("mlp", "batch 256", 0, {"torch": 11.0, "float": 13.0})]
    rows = _verdicts(_summary(results=results))
    assert rows["MLP batch 1 vs PyTorch f32"]["met"] is True
    # The float contender of another device (1000x) must not count as this device's float mode.
    assert rows["MLP batch 1 vs own float mode"]["met"] is False
    large = [row for name, row in rows.items() if name.startswith("MLP batch 256")]
    assert {row["goal"] for row in large} == {12.0}
    assert [row["met"] for row in large] == [False, True]


def test_only_cpu_devices_are_judged():
    rows = targets.evaluate(_summary(results=[_result("gemm", "1024x1024x4096", 1e12, {"numpy": 10.0})]))
    assert rows and {row["device"] for row in rows} == {POCL}


def test_conv_layers_are_judged_against_the_gemm_except_the_bit_plane_layer():
    summary = _summary()
    summary["conv_layers"] = [{"device": POCL, "layer": "conv1", "batch": 1, "ratio": 0.1},
                              {"device": POCL, "layer": "conv2", "batch": 1, "ratio": 0.75},
                              {"device": POCL, "layer": "conv5", "batch": 64, "ratio": 0.6}]
    rows = _verdicts(summary)
    assert not any("conv1" in name for name in rows)
    assert rows["binary conv conv2 batch 1 vs GEMM of the same M, N, K"]["met"] is True
    assert rows["binary conv conv5 batch 64 vs GEMM of the same M, N, K"]["met"] is False


def test_large_batch_without_its_gemm_is_not_measured():
    rows = _verdicts(_summary(results=[_result("mlp", "batch 256", 0, {"torch": 50.0, "float": 50.0})]))
    assert [row["met"] for name, row in rows.items() if name.startswith("MLP batch 256")] == [None, None]
