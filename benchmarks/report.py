"""Turning a result document (:meth:`benchmarks.suite.Suite.summary`) into a table, JSON and a chart."""

from __future__ import annotations

import json
from pathlib import Path

from . import targets
from .case import REFERENCE, fastest_float
from .timing import ROLES

FAMILY_TITLES = {"gemm": "XNOR GEMM (C = A . B^T over +-1 matrices; M x N x K)",
                 "mlp": "BinaryNet MNIST MLP (784 uint8 pixels -> hidden x3 -> 10)",
                 "cnn": "BinaryNet CIFAR-10 CNN (32x32x3 uint8, random input)"}
ROLE_NAMES = {"float": "float (same device)", "numpy": "NumPy f32", "torch": "PyTorch f32",
              "onnxruntime": "ONNX Runtime f32", "onnxruntime-cuda": "ONNX Runtime CUDA f32"}


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_bytes(count: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


def _rate(result: dict, figures: dict) -> str:
    if result["items"]:
        lo, hi = figures["images_per_s_iqr"]
        return f"{figures['images_per_s']:.4g} img/s [{lo:.3g}-{hi:.3g}]"
    lo, hi = figures["mac_per_s_iqr"]
    return f"{figures['mac_per_s'] / 1e9:.4g} G/s [{lo / 1e9:.3g}-{hi / 1e9:.3g}]"


def table(rows: list, header: tuple) -> str:
    """Left-aligned text columns under a header and a rule."""
    rows = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _peak(result: dict, label: str) -> str:
    fraction = result.get("peak_fraction", {}).get(label)
    if not fraction:
        return "-"
    return f"{fraction['of_high_peak'] * 100:.3g}-{fraction['of_low_peak'] * 100:.3g}%"


def detail_table(results: list) -> str:
    """Every contender of every case: median time, spread, repeats, throughput."""
    rows = []
    for result in results:
        first = True
        for label, f in result["contenders"].items():
            name = result["name"] if first else ""
            first = False
            if "median_s" in f:
                spread = f"{fmt_time(f['q1_s'])}-{fmt_time(f['q3_s'])}"
                extremes = f"{fmt_time(f['min_s'])}-{fmt_time(f['max_s'])}"
                runs = f"{f['repeats']}x{f['calls_per_sample']}"
                rows.append((name, label, fmt_time(f["median_s"]), spread, extremes, runs, _rate(result, f)))
            else:
                why = f.get("error") or f.get("skipped") or "not timed (check failed)"
                rows.append((name, label, "-", "-", "-", "-", why))
        if not result["check"]["passed"]:
            rows.append(("", "CHECK FAILED", "", "", "", "", result["check"]["detail"]))
    unit = "images/s" if results and results[0]["items"] else "G MAC/s (binary MACs for binary)"
    return table(rows, ("case", "contender", "median", "IQR", "min-max", "n x calls", f"{unit} [IQR]"))


def baseline_ratios(result: dict, label: str) -> dict:
    """role -> speed-up of binary contender ``label`` over that baseline; a baseline on a
    device (float mode, ONNX Runtime on CUDA) counts only on the binary contender's own device."""
    device = result["contenders"][label]["device"]
    ratios = {}
    for other, ratio in result["speedups"][label].items():
        figures = result["contenders"][other]
        if figures["role"] == "binary" or figures["device"] not in (None, device):
            continue
        ratios[figures["role"]] = ratio
    return ratios


def _baseline_roles(results: list) -> list:
    """The baselines' roles any binary contender of ``results`` was compared with, in ROLES order."""
    present = {role for r in results for label in r.get("speedups", {}) for role in baseline_ratios(r, label)}
    return [role for role in ROLES if role in present]


def speedup_rows(results: list, roles: list) -> list:
    """One row per (case, binary contender): throughput, ratio to each baseline of ``roles``
    and to the fastest float baseline, % of peak."""
    rows = []
    for result in results:
        if not result["check"]["passed"]:
            rows.append((result["family"], result["name"], "-", "CHECK FAILED") + ("",) * (len(roles) + 2))
            continue
        for label in result.get("speedups", {}):
            ratios = {role: f"{ratio:.3g}x" for role, ratio in baseline_ratios(result, label).items()}
            fastest = fastest_float(result, label)
            f = result["contenders"][label]
            rate = (f"{f['images_per_s']:.4g} img/s" if result["items"] else f"{f['mac_per_s'] / 1e9:.4g} G/s")
            rows.append((result["family"], result["name"], f["device"], rate)
                        + tuple(ratios.get(role, "-") for role in roles)
                        + (f"{fastest[1]:.3g}x ({fastest[0]})" if fastest else "-", _peak(result, label)))
    return rows


def speedup_table(results: list) -> str:
    roles = _baseline_roles(results)
    return table(speedup_rows(results, roles),
                 ("workload", "case", "device", "binary") + tuple(f"vs {ROLE_NAMES[role]}" for role in roles)
                 + ("vs fastest float", "% of peak"))


def launch_rows(results: list) -> list:
    """Per network case and device: launches per binary-mode call next to the binary layers,
    and the first call at a new batch size next to the warm time of that size."""
    rows = []
    for r in results:
        for device, first in r.get("first_call", {}).items():
            launches = r.get("launches", {}).get(device, {})
            counted = (f"{launches['launches']} ({launches['binary_layers']} binary layers)"
                       if "launches" in launches else launches.get("error", "-"))
            timed = ((f"{first['batch']}", fmt_time(first["first_s"]), fmt_time(first["warm_single_s"]) if "warm_single_s" in first else "-",
                      f"{first['ratio']:.3g}x", fmt_time(first["warm_median_s"]))
                     if "ratio" in first else (f"{first['batch']}", first["error"], "", "", ""))
            rows.append((r["family"], r["name"], device, counted) + timed)
    return rows


def launch_table(results: list) -> str:
    return table(launch_rows(results), ("workload", "case", "device", "launches per call", "new batch",
                                        "first call", "then a warm single call",
                                        "first / warm single", "warm in a loop"))


def conv_table(rows: list) -> str:
    return table([(r["device"], r["layer"], r["batch"], f"{r['M']}x{r['N']}x{r['K']}", f"{r['conv_ms']:.3g} ms",
                   f"{r['conv_gmacs']:.4g}", f"{r['gemm_gmacs']:.4g}", f"{r['ratio']:.2f}") for r in rows],
                 ("device", "layer", "batch", "M x N x K", "conv", "conv G bMAC/s", "GEMM G bMAC/s",
                  "conv / GEMM"))


def memory_table(results: list) -> str:
    rows, seen = [], set()
    for r in results:
        m = r["memory"]
        if r["family"] == "gemm":
            packed, full = m["operands_packed_bytes"], m["operands_float32_bytes"]
            rows.append((f"gemm {r['name']}", "A and B", fmt_bytes(packed), fmt_bytes(full), f"{full / packed:.3g}x"))
        elif r["family"] not in seen:
            seen.add(r["family"])
            for what, key in (("parameters", "params"), ("layer inputs / image", "layer_inputs_per_image"),
                              ("largest layer input", "largest_layer_input")):
                packed = m[f"{key}_stored_bytes"] if key == "params" else m[f"{key}_binary_bytes"]
                full = m[f"{key}_float32_bytes"]
                rows.append((r["family"], what, fmt_bytes(packed), fmt_bytes(full), f"{full / packed:.3g}x"))
    return table(rows, ("workload", "what", "binary (packed)", "float32", "smaller by"))


def header(summary: dict) -> str:
    m = summary["machine"]
    lines = [f"espresso_cl benchmarks ({summary['mode']} mode), {summary['started_utc']}, "
             f"commit {m['git_commit'] or 'unknown'}, {summary['elapsed_s']:.0f} s",
             f"CPU: {m['cpu_model']}, {m['cores']} usable core(s); popcount features "
             + ", ".join(k for k, v in m["cpu_features"]["numpy"].items() if v)]
    for d in summary["devices"]:
        peak = d["binary_peak_mac_per_s"]
        peak_text = (f"binary peak {peak[0] / 1e12:.3g}-{peak[1] / 1e12:.3g} T MAC/s ({d['peak_source']})"
                     if peak else d["peak_source"])
        lines.append(f"device {d['key']}: {d['description']}; {d['compute_units']} compute units; "
                     f"tuning '{d['tuning_profile']}'; {peak_text}")
    n = summary["baselines"]["numpy"]
    lines.append(f"NumPy {n['version']}: BLAS {n['blas']}, {n['threads']} thread(s) ({n['source']})")
    t = summary["baselines"]["torch"]
    lines.append(f"PyTorch {t['version']}: {t['threads']} thread(s); {t['blas']}" if "version" in t
                 else t["missing"])
    o = summary["baselines"].get("onnxruntime", {"missing": "ONNX Runtime: not recorded"})
    lines.append(f"ONNX Runtime {o['version']}: {o['intra_op_threads']} intra-op thread(s), {o['execution_mode']} "
                 f"execution; providers {', '.join(o['providers'])}" if "version" in o else o["missing"])
    env = m["environment"]
    lines.append("environment: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "no thread or device overrides"))
    s = summary["settings"]
    lines.append(f"timing: warm-up call (also the checked output), then up to {s['repeats']} interleaved rounds "
                 f"(at least {s['min_repeats']}, fewer for slow calls: {s['budget_s']:g} s budget per contender "
                 f"and case); fast calls looped to {s['min_sample_s'] * 1e3:g} ms per sample, {s['settle_s'] * 1e3:g} ms "
                 f"pause before each; calls predicted over {s['max_call_s']:g} s skipped")
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def print_report(summary: dict, file=None) -> None:
    print(header(summary), file=file)
    for family in ("gemm", "mlp", "cnn"):
        results = [r for r in summary["results"] if r["family"] == family]
        if not results:
            continue
        print(f"\n== {FAMILY_TITLES[family]} ==", file=file)
        print(detail_table(results), file=file)
    if summary.get("conv_layers") or summary.get("conv_failures"):
        print("\n== Binary conv2d per layer of the CIFAR-10 CNN vs XNOR GEMM of the same M, N, K "
              "(best of the rounds; conv1 reads uint8 by bit planes) ==", file=file)
        print(conv_table(summary["conv_layers"]), file=file)
        for failure in summary.get("conv_failures", []):
            print(f"CHECK FAILED: {failure}", file=file)
    if summary["results"]:
        print("\n== espresso_cl binary mode: throughput and speed-up (ratio of median times) ==", file=file)
        print(speedup_table(summary["results"]), file=file)
        if any(r.get("first_call") for r in summary["results"]):
            print("\n== Kernel launches per binary-mode call, and the first call at a batch size not seen before "
                  "(then single calls of that size, warm, after the same pause) ==", file=file)
            print(launch_table(summary["results"]), file=file)
        print("\n== Memory: binary (packed bits; uint8 pixels into the first layer) vs float32 ==", file=file)
        print(memory_table(summary["results"]), file=file)
        print("\n== Targets (issue 7: CPU speed through PoCL; issue 14: whole networks at kernel speed, GPU) ==",
              file=file)
        print("\n".join(targets.lines(summary)), file=file)
        print("\nchecks: " + ("all passed" if summary["all_checks_passed"] else "SOME FAILED"), file=file)
        for r in summary["results"]:
            print(f"  {r['family']} {r['name']}: {'ok' if r['check']['passed'] else 'FAILED'}: "
                  f"{r['check']['detail']}", file=file)


def gemm_lines(summary: dict) -> list:
    """One line per GEMM case and device: binary G binary-MAC/s next to NumPy float32 matmul."""
    lines = []
    for r in summary["results"]:
        if r["family"] != "gemm" or not r["check"]["passed"]:
            continue
        numpy_figures = r["contenders"][REFERENCE]
        for label, ratios in r.get("speedups", {}).items():
            f = r["contenders"][label]
            lines.append(f"XNOR GEMM M={r['params']['M']} N={r['params']['N']} K={r['params']['K']}: "
                         f"espresso_cl {label} {f['mac_per_s'] / 1e9:.4g} G binary-MAC/s | NumPy float32 matmul "
                         f"{numpy_figures['mac_per_s'] / 1e9:.4g} G MAC/s | binary/NumPy "
                         f"{ratios[REFERENCE]:.3g}x (same run, checked exact)")
    return lines


def write_json(summary: dict, path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=2) + "\n")


def write_chart(summary: dict, path: str) -> str:
    """A PNG bar chart of binary mode's speed-up over each baseline; returns what was done."""
    try:
        import matplotlib
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"
    matplotlib.use("Agg")  # files only; no display on CI
    import matplotlib.pyplot as plt

    groups, series = [], {}
    for r in summary["results"]:
        if not r["check"]["passed"]:
            continue
        groups.append(f"{r['family']}\n{r['name']}")
        for label in r.get("speedups", {}):
            device = r["contenders"][label]["device"]
            for role, ratio in sorted(baseline_ratios(r, label).items(), key=lambda item: ROLES.index(item[0])):
                series.setdefault(f"{device}: vs {ROLE_NAMES[role]}", {})[groups[-1]] = ratio
    if not groups:
        return "chart skipped: no checked results"
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(groups) + 3), 5))
    for i, (key, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [values.get(g, float("nan")) for g in groups], width, label=key)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel("speed-up of espresso_cl binary mode (x)")
    ax.set_title(f"espresso_cl binary vs float32 baselines ({summary['mode']} mode)\n"
                 f"{summary['machine']['cpu_model']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return f"chart written to {target}"
