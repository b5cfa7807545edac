"""The benchmark's target verdicts (benchmarks/targets.py), on made-up result documents."""

import pytest

from benchmarks import targets

POCL, INTEL, GPU = "pocl cpu 2:0", "intel cpu 1:0", "nvidia gpu 0:0"


def _features(avx512: bool) -> dict:
    return {"numpy": {"AVX2": True, "AVX512VPOPCNTDQ": avx512},
            "proc_cpuinfo": {"avx2": True, "avx512_vpopcntdq": avx512}}


def _result(family, name, binary_rate=0.0, ratios=None, passed=True, device=POCL, median_s=1.0, extra=None):
    """A case in which ``device``'s binary contender ran at ``binary_rate`` (``median_s`` a call)
    with ``ratios`` (by role) over the baselines. Other devices' float modes and ONNX Runtime on
    the GPU are there too, faster than everything, and must count only on their own device."""
    ratios = ratios or {}
    contenders = {"binary": {"role": "binary", "device": device, "median_s": median_s, "mac_per_s": binary_rate},
                  "float pocl": {"role": "float", "device": POCL, "median_s": 1.0},
                  "float intel": {"role": "float", "device": INTEL, "median_s": 1.0},
                  "float gpu": {"role": "float", "device": GPU, "median_s": 1.0},
                  "NumPy float32": {"role": "numpy", "device": None, "median_s": 1.0},
                  "PyTorch float32": {"role": "torch", "device": None, "median_s": 1.0},
                  "ONNX Runtime float32": {"role": "onnxruntime", "device": None, "median_s": 1.0},
                  "ONNX Runtime CUDA float32": {"role": "onnxruntime-cuda", "device": GPU, "median_s": 1.0}}
    own_float = {POCL: "float pocl", INTEL: "float intel", GPU: "float gpu"}[device]
    speedups = {"binary": {"float pocl": 0.01, "float intel": 0.01, "float gpu": 0.01,
                           own_float: ratios.get("float", 100.0),
                           "NumPy float32": ratios.get("numpy", 100.0),
                           "PyTorch float32": ratios.get("torch", 100.0),
                           "ONNX Runtime float32": ratios.get("onnxruntime", 100.0),
                           "ONNX Runtime CUDA float32": ratios.get("onnxruntime-cuda", 0.01)}}
    batch = int(name.split()[-1]) if name.startswith("batch") else None
    result = {"family": family, "name": name, "params": {"batch": batch} if batch else {},
              "contenders": contenders, "speedups": speedups, "check": {"passed": passed, "detail": ""}}
    result.update(extra or {})
    return result


def _summary(avx512=True, mode="full", results=(), devices=((POCL, "cpu"),), conv_layers=()):
    return {"mode": mode, "machine": {"cpu_features": _features(avx512)},
            "devices": [{"key": key, "kind": kind} for key, kind in devices],
            "results": list(results), "conv_layers": list(conv_layers)}


def _verdicts(summary, device=POCL):
    return {row["target"]: row for row in targets.evaluate(summary) if row["device"] == device}


def _met(rows, start):
    """The verdicts of the rows whose target starts with ``start``, in order."""
    return [row["met"] for name, row in rows.items() if name.startswith(start)]


def test_quick_mode_judges_nothing():
    assert targets.evaluate(_summary(mode="quick", results=[_result("gemm", "1024x1024x4096", 1e12)])) == []


@pytest.mark.parametrize("avx512, rate, met", [(True, 1.0e12, True), (True, 0.5e12, False),
                                                (False, 0.5e12, True), (False, 0.3e12, False)])
def test_gemm_goal_depends_on_the_machine_kind(avx512, rate, met):
    rows = _verdicts(_summary(avx512, results=[_result("gemm", "1024x1024x4096", rate, {"numpy": 10.0})]))
    kind = "AVX512VPOPCNTDQ" if avx512 else "AVX2"
    assert rows[f"XNOR GEMM 1024x1024x4096 ({kind} kind)"]["met"] is met
    assert rows["XNOR GEMM 1024x1024x4096 vs NumPy f32"]["met"] is True


@pytest.mark.parametrize("ratio, met", [(12.5, True), (11.0, False)])
def test_gemv_goal_is_issue_14s_12x(ratio, met):
    rows = _verdicts(_summary(results=[_result("gemm", "1x4096x4096", 1e11, {"numpy": ratio})]))
    row = rows["binary GEMV 1x4096x4096 vs NumPy f32"]
    assert (row["goal"], row["issue"], row["met"]) == (12.0, "14", met)


def test_missing_or_failed_cases_are_not_measured_rather_than_met():
    rows = _verdicts(_summary(results=[_result("gemm", "4096x4096x4096", 5e12, {"numpy": 50.0}, passed=False)]))
    assert rows["XNOR GEMM 4096x4096x4096 (AVX512VPOPCNTDQ kind)"]["met"] is None
    assert rows["binary GEMV 1x4096x4096 vs NumPy f32"]["met"] is None
    assert all(row["met"] is None for name, row in rows.items() if name.startswith(("MLP", "CNN")))


@pytest.mark.parametrize("onnx_ratio, met", [(11.0, True), (9.0, False)])
def test_mlp_batch_1_is_judged_against_the_fastest_float_contender(onnx_ratio, met):
    # PyTorch alone (15x) would pass; ONNX Runtime is the fastest float contender here.
    results = [_result("mlp", "batch 1", ratios={"torch": 15.0, "float": 12.0, "numpy": 20.0,
                                                 "onnxruntime": onnx_ratio})]
    rows = _verdicts(_summary(results=results))
    row = rows["MLP batch 1 vs the fastest float contender"]
    assert (row["goal"], row["met"], row["figure"]) == (10.0, met, onnx_ratio)
    assert "ONNX Runtime float32" in row["detail"]
    assert rows["MLP batch 1 vs own float mode"]["met"] is True


def test_float_contenders_of_other_devices_do_not_count():
    # The Intel and GPU float modes and ONNX Runtime on CUDA are 100x faster than PoCL's binary
    # mode in these documents: they are neither PoCL's own float mode nor a host baseline.
    results = [_result("mlp", "batch 1", ratios={"float": 9.0})]
    rows = _verdicts(_summary(results=results))
    assert rows["MLP batch 1 vs own float mode"]["figure"] == 9.0
    assert rows["MLP batch 1 vs own float mode"]["met"] is False
    fastest = rows["MLP batch 1 vs the fastest float contender"]
    assert fastest["figure"] == 9.0 and "float pocl" in fastest["detail"]


def test_cnn_batch_1_goals():
    rows = _verdicts(_summary(results=[_result("cnn", "batch 1", ratios={"float": 8.5, "torch": 7.9})]))
    assert rows["CNN batch 1 vs own float mode"]["met"] is True
    assert rows["CNN batch 1 vs the fastest float contender"]["met"] is False


def test_large_batches_need_0_9_of_the_gemm_ratio_against_each_baseline():
    results = [_result("gemm", "1024x1024x4096", 1e12, {"numpy": 12.0}),
               _result("mlp", "batch 256", ratios={"torch": 11.0, "float": 10.0, "numpy": 30.0, "onnxruntime": 20.0}),
               _result("mlp", "batch 128", ratios={"torch": 11.0, "float": 11.0, "numpy": 11.0, "onnxruntime": 11.0}),
               _result("cnn", "batch 16", ratios={"torch": 1.0, "float": 1.0})]
    rows = _verdicts(_summary(results=results))
    large = [row for name, row in rows.items() if name.startswith("MLP batch 256 vs")]
    assert [row["goal"] for row in large] == pytest.approx([10.8] * 3)
    assert [row["met"] for row in large] == [True, False, False]  # PyTorch, own float, fastest
    # Any other case at batch 64 or more is a large batch too; batch 16 is neither small nor large.
    assert _met(rows, "MLP batch 128 vs") == [True, True, True]
    assert not [name for name in rows if name.startswith("CNN batch 16 vs")]


def test_large_batch_without_its_gemm_is_not_measured():
    rows = _verdicts(_summary(results=[_result("mlp", "batch 256", ratios={"torch": 50.0, "float": 50.0})]))
    assert _met(rows, "MLP batch 256 vs") == [None, None, None]


def test_launches_are_at_most_one_per_binary_layer_plus_one():
    def launches(count):
        return {"launches": {POCL: {"launches": count, "binary_layers": 4}}}
    results = [_result("mlp", "batch 1", extra=launches(5)), _result("mlp", "batch 256", extra=launches(6)),
               _result("mlp", "batch 16", extra={"launches": {POCL: {"error": "AttributeError: ..."}}})]
    rows = _verdicts(_summary(results=results))
    assert rows["MLP batch 1: kernel launches per call (binary layers + 1)"]["met"] is True
    assert rows["MLP batch 256: kernel launches per call (binary layers + 1)"]["met"] is False
    assert rows["MLP batch 16: kernel launches per call (binary layers + 1)"]["met"] is None
    assert rows["CNN batch 1: kernel launches per call (binary layers + 1)"]["met"] is None  # not in the document


def test_first_call_at_a_new_batch_size_is_at_most_twice_the_warm_time():
    def first(ratio, batch):
        return {"first_call": {POCL: {"batch": batch, "first_s": ratio * 1e-3, "warm_single_s": 1e-3,
                                      "ratio": ratio}}}
    results = [_result("mlp", "batch 1", extra=first(1.9, 2)), _result("cnn", "batch 64", extra=first(30.0, 65))]
    rows = _verdicts(_summary(results=results))
    assert rows["MLP after batch 1: first call at a new batch size (2) / a warm single call"]["met"] is True
    assert rows["CNN after batch 64: first call at a new batch size (65) / a warm single call"]["met"] is False


def test_gpu_rows():
    gpu = {"device": GPU}
    results = [_result("mlp", "batch 256", ratios={"float": 6.0}, **gpu),
               _result("cnn", "batch 64", ratios={"float": 4.0}, **gpu),
               _result("mlp", "batch 1", median_s=0.35e-3, **gpu),
               _result("gemm", "1x4096x4096", 2.5e12, **gpu)]
    summary = _summary(results=results, devices=((POCL, "cpu"), (GPU, "gpu")),
                       conv_layers=[{"device": GPU, "layer": "conv3", "batch": 1, "ratio": 0.5},
                                    {"device": GPU, "layer": "conv4", "batch": 64, "ratio": 0.9}])
    rows = _verdicts(summary, GPU)
    assert rows["MLP batch 256 vs own float mode (GPU)"]["met"] is True
    assert rows["CNN batch 64 vs own float mode (GPU)"]["met"] is False
    assert rows["MLP batch 1 median time (GPU)"]["met"] is False
    assert rows["binary GEMV 1x4096x4096 (GPU)"]["met"] is True
    assert _met(rows, "binary conv") == [False, True]
    # The CPU targets are not judged on the GPU, and the GPU's figures are not the CPU's.
    assert not [name for name in rows if "kind" in name or "fastest" in name]
    assert _verdicts(summary)["MLP batch 256 vs own float mode (goal: 0.9 of the 1024x1024x4096 GEMM's "
                              "ratio to NumPy)"]["met"] is None


@pytest.mark.parametrize("median_s, met", [(0.29e-3, True), (0.3e-3, False)])
def test_gpu_mlp_batch_1_must_be_under_0_3_ms(median_s, met):
    summary = _summary(results=[_result("mlp", "batch 1", median_s=median_s, device=GPU)], devices=((GPU, "gpu"),))
    assert _verdicts(summary, GPU)["MLP batch 1 median time (GPU)"]["met"] is met


def test_conv_layers_are_judged_against_the_gemm_except_the_bit_plane_layer():
    summary = _summary(conv_layers=[{"device": POCL, "layer": "conv1", "batch": 1, "ratio": 0.1},
                                    {"device": POCL, "layer": "conv2", "batch": 1, "ratio": 0.75},
                                    {"device": POCL, "layer": "conv5", "batch": 64, "ratio": 0.6}])
    rows = _verdicts(summary)
    assert not any("conv1" in name for name in rows)
    assert rows["binary conv conv2 batch 1 vs GEMM of the same M, N, K"]["met"] is True
    assert rows["binary conv conv5 batch 64 vs GEMM of the same M, N, K"]["met"] is False


def test_every_cpu_device_is_judged():
    result = _result("gemm", "1024x1024x4096", 1e12, {"numpy": 10.0})
    result["contenders"]["binary intel"] = {"role": "binary", "device": INTEL, "median_s": 1.0, "mac_per_s": 0.3e12}
    result["speedups"]["binary intel"] = {"NumPy float32": 3.0}
    summary = _summary(results=[result], devices=((POCL, "cpu"), (INTEL, "cpu")))
    name = "XNOR GEMM 1024x1024x4096 vs NumPy f32"
    assert _verdicts(summary)[name]["met"] is True
    assert _verdicts(summary, INTEL)[name]["met"] is False


def test_lines_show_each_verdict_and_direction():
    results = [_result("gemm", "1024x1024x4096", 1e12, {"numpy": 12.0}),
               _result("mlp", "batch 1", ratios={"float": 12.0, "onnxruntime": 9.0},
                       extra={"launches": {POCL: {"launches": 9, "binary_layers": 4}}})]
    text = "\n".join(targets.lines(_summary(results=results)))
    assert "MLP batch 1: kernel launches per call (binary layers + 1): 9 (goal <= 5): NOT met" in text
    assert "MLP batch 1 vs own float mode: 12x (goal >= 10x): met" in text
    assert "(goal >= 10x; fastest: ONNX Runtime float32): NOT met" in text
    assert "not measured" in text
