"""The benchmark run: modes, the devices and baselines under test, and the result document."""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict, dataclass, replace

from . import conv_layers, gemm, networks, system, targets
from .case import Case, run_case
from .timing import Settings, progress

FAMILIES = ("gemm", "mlp", "cnn", "conv")
# The per-layer conv table: (layers, batches) per mode.
CONV_LAYERS = {"full": (conv_layers.FULL, (1, 64)), "quick": (conv_layers.QUICK, (1, 8))}
SCHEMA = "espresso_cl.benchmarks/1"


@dataclass(frozen=True)
class Mode:
    name: str
    settings: Settings
    note: str


MODES = {
    "quick": Mode("quick", Settings(repeats=3, min_repeats=2, budget_s=2.0, max_call_s=10.0, min_sample_s=0.005,
                                    settle_s=0.05),
                  "quick mode: small shapes and networks scaled down (MLP hidden 1024; CNN widths 32/64/128, "
                  "dense 256) for CI; not the paper's sizes and not for quoting"),
    # OpenBLAS's threads still held the cores 0.1 s after a NumPy call (a 3 ms kernel measured
    # 5.9 ms then, 3.0 ms after 0.3 s): full mode waits 0.3 s before each sample.
    "full": Mode("full", Settings(repeats=7, min_repeats=3, budget_s=30.0, max_call_s=60.0, min_sample_s=0.05,
                                   settle_s=0.3),
                 "full mode: BinaryNet's MLP and CNN at their real sizes, GEMMs up to 4096^3"),
}


class Suite:
    """One run: machine description, devices and baselines, and the result of every case."""

    def __init__(self, mode: Mode, repeats: int | None = None):
        settings = mode.settings
        if repeats is not None:
            if repeats < 1:
                raise ValueError(f"--repeats must be >= 1, got {repeats}")
            settings = replace(settings, repeats=repeats, min_repeats=min(settings.min_repeats, repeats))
        self.mode, self.settings = mode, settings
        self.started = time.time()
        self.machine = system.machine_info()
        self.torch, self.torch_missing = system.load_torch()
        onnx, onnxruntime, self.onnxruntime_missing = system.load_onnxruntime()
        self.onnx_modules = (onnx, onnxruntime) if onnxruntime is not None else None
        self.devices = system.devices_under_test()
        self.history: dict = {}
        self.results: list = []
        self.conv_layers: list = []
        self.conv_failures: list = []
        self._announce()

    def _announce(self) -> None:
        progress(f"espresso_cl benchmarks, {self.mode.note}")
        progress(f"CPU: {self.machine['cpu_model']}, {self.machine['cores']} usable core(s)")
        for device in self.devices:
            progress(f"device {device.key}: {device.runtime.describe()}")
        numpy_info = system.numpy_info()
        progress(f"NumPy {numpy_info['version']}: {numpy_info['blas']}, threads {numpy_info['threads']}")
        if self.torch is None:
            progress(self.torch_missing)
        else:
            progress(f"PyTorch {self.torch.__version__}: {self.torch.get_num_threads()} threads")
        ort = self._onnxruntime_info()
        progress(f"ONNX Runtime {ort['version']}: providers {', '.join(ort['providers'])}"
                 if "version" in ort else self.onnxruntime_missing)

    def _onnxruntime_info(self) -> dict:
        return (system.onnxruntime_info(self.onnx_modules[1]) if self.onnx_modules is not None
                else {"missing": self.onnxruntime_missing})

    def run(self, case: Case) -> dict:
        record = run_case(case, self.settings, {d.key: d for d in self.devices}, self.history)
        self.results.append(record)
        return record

    def run_conv_layers(self) -> None:
        """Each binary conv of the CIFAR-10 CNN next to the XNOR GEMM of the same M, N, K."""
        layers, batches = CONV_LAYERS[self.mode.name]
        for device in self.devices:
            progress(f"conv layers on {device.key}")
            try:
                rows = conv_layers.conv_layer_rows(device.runtime, batches, layers, self.settings.repeats,
                                                   self.settings.min_sample_s)
            except AssertionError as exc:  # a conv that differs from the NumPy reference
                self.conv_failures.append(f"{device.key}: {exc}")
                continue
            self.conv_layers += [dict(row, device=device.key) for row in rows]

    def run_families(self, families) -> None:
        for family in families:
            if family == "conv":
                self.run_conv_layers()
                continue
            made = (gemm.cases(self.mode.name, self.devices, self.torch) if family == "gemm"
                    else networks.cases(family, self.mode.name, self.devices, self.torch, self.onnx_modules))
            for case in made:
                self.run(case)

    @property
    def all_passed(self) -> bool:
        return all(r["check"]["passed"] for r in self.results) and not self.conv_failures

    def notes(self) -> list:
        notes = [self.mode.note]
        coretype = os.environ.get("OPENBLAS_CORETYPE")
        if coretype:
            notes.append(f"OPENBLAS_CORETYPE={coretype} is set: it overrides OpenBLAS's kernel choice "
                         f"and can slow the NumPy baseline")
        load = self.machine["load_average_at_start"]
        if load and load[0] > 0.5 * self.machine["cores"]:
            notes.append(f"the machine was busy when the run started (1-minute load average {load[0]:.1f} "
                         f"on {self.machine['cores']} cores): timings are noisy, re-run on a quiet machine")
        if self.torch is None:
            notes.append(self.torch_missing)
        if self.onnx_modules is None:
            notes.append(self.onnxruntime_missing)
        if not self.devices:
            notes.append("no OpenCL device under test")
        return notes

    def summary(self) -> dict:
        """Everything as one JSON-ready document."""
        machine = dict(self.machine)
        if hasattr(os, "getloadavg"):
            machine["load_average_at_end"] = list(os.getloadavg())
        document = {
            "schema": SCHEMA,
            "mode": self.mode.name,
            "started_utc": datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).isoformat(),
            "elapsed_s": time.time() - self.started,
            "settings": asdict(self.settings),
            "machine": machine,
            "devices": [d.describe() for d in self.devices],
            "baselines": {"numpy": system.numpy_info(),
                          "torch": system.torch_info(self.torch) or {"missing": self.torch_missing},
                          "onnxruntime": self._onnxruntime_info()},
            "notes": self.notes(),
            "all_checks_passed": self.all_passed,
            "results": self.results,
            "conv_layers": self.conv_layers,
            "conv_failures": self.conv_failures,
        }
        document["targets"] = targets.evaluate(document)
        return document
