"""kernels/bgemm_mma.cl (the 1-bit tensor-core GEMM) and its probe (ops/tensor_cores.py).

Without an NVIDIA device the kernel runs its OpenCL C form of mma.sync (same fragments, same
staging, same epilogue), compared bit for bit with the reference; the probe's decisions are
tested by standing in for the device's answer. tests/test_gpu_compile.py checks that the PTX
form assembles to BMMA instructions.
"""

from dataclasses import replace

import numpy as np
import pyopencl as cl
import pytest

from espresso_cl import ops, reference, registry
from espresso_cl.build import KernelBuildError
from espresso_cl.device import QUIRKS
from espresso_cl.ops import launch, tensor_cores
from espresso_cl.tuning import PROFILES
from kernel_cases import gemm_ids, sign_pm1, to_bits

# Ragged edges of the 128 x 128 work-group tiles and of the 16-word (512-bit) K stages: batch 1,
# K inside the first word, rows of KW % 4 == 2 words (word-by-word loads: K = 1070 -> 34) and
# of KW % 4 == 0 (128-bit loads), exact tiles, and M, N one past a tile (the larger of those
# take a minute each under Oclgrind, which runs the small ones).
_SLOW = pytest.mark.no_oclgrind
MMA_SHAPES = [
    (1, 1, 1),
    (1, 9, 65),
    (3, 5, 1100),
    (7, 65, 129),
    (16, 8, 256),
    (129, 9, 65),
    (9, 129, 130),
    (128, 128, 512),
    pytest.param(129, 33, 1070, marks=_SLOW),
    pytest.param(33, 129, 2035, marks=_SLOW),
]


def _ids(shapes):
    return gemm_ids([s.values if hasattr(s, "values") else s for s in shapes])


@pytest.fixture
def mma_runtime(profiled_runtime, monkeypatch):
    """The session's runtime of a profile with tensor-core tiles, its probe not yet run."""
    if profiled_runtime.profile.bgemm.mma is None:
        pytest.skip(f"profile {profiled_runtime.profile.name} has no tensor-core tiles")
    monkeypatch.setattr(profiled_runtime, "tensor_cores", None)
    return profiled_runtime


@pytest.mark.parametrize("m, n, k", MMA_SHAPES, ids=_ids(MMA_SHAPES))
def test_bgemm_mma_matches_reference(mma_runtime, rng, m, n, k):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = tensor_cores.bgemm_mma(to_bits(mma_runtime, a), to_bits(mma_runtime, b))
    assert out.kind == "int32" and out.shape == (m, n)
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_mma_all_ones_and_opposites(mma_runtime):
    # Every bit set (the AND counts everything) against every bit clear (it counts nothing):
    # the epilogue's row popcounts carry the whole result.
    k = 64 * 9 - 5
    a = np.stack([np.ones(k, np.int8), -np.ones(k, np.int8)] * 3)
    b = np.stack([np.ones(k, np.int8) * (1 if j % 3 else -1) for j in range(11)])
    out = tensor_cores.bgemm_mma(to_bits(mma_runtime, a), to_bits(mma_runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_mma_segmented_rows(mma_runtime, rng):
    # Rows of 3 segments of 40 channels, each padded to whole 64-bit words on its own.
    a, b = sign_pm1(rng, (5, 120)), sign_pm1(rng, (9, 120))
    out = tensor_cores.bgemm_mma(to_bits(mma_runtime, a, 40), to_bits(mma_runtime, b, 40))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_bgemm_mma_counts_rewritten_rows_again(mma_runtime, rng):
    # The im2col convolution writes new window rows into the same tensor between products:
    # the rows' popcounts of A must not be kept from the first product.
    a1, a2, b = sign_pm1(rng, (9, 200)), sign_pm1(rng, (9, 200)), sign_pm1(rng, (5, 200))
    ta, tb = to_bits(mma_runtime, a1), to_bits(mma_runtime, b)
    np.testing.assert_array_equal(tensor_cores.bgemm_mma(ta, tb).numpy(), reference.xnor_gemm(a1, b))
    cl.enqueue_copy(mma_runtime.queue, ta.buffer, reference.pack_bits(a2))
    np.testing.assert_array_equal(tensor_cores.bgemm_mma(ta, tb).numpy(), reference.xnor_gemm(a2, b))


def test_registry_takes_tensor_cores_only_where_told_and_the_profile_has_tiles():
    for profile in PROFILES.values():
        assert not registry.select("bgemm", profile).tensor_cores
        assert registry.select("bgemm", profile, tensor_cores=True).tensor_cores == (profile.bgemm.mma is not None)
    assert registry.select("bgemm", PROFILES["gpu"], tensor_cores=True).name == "bgemm_mma"


def test_only_nvidia_takes_inline_ptx():
    assert [name for name, quirks in QUIRKS.items() if quirks.inline_ptx] == ["nvidia"]


def _as_nvidia(monkeypatch, runtime):
    """Let the probe run on this device: its quirks say inline PTX, but the kernel still builds
    its OpenCL C form (the PTX define is left out), so the check runs for real, on one small
    ragged shape (the probe's own shapes are the kernel tests' above; under Oclgrind they took
    minutes)."""
    monkeypatch.setattr(runtime, "quirks", replace(runtime.quirks, inline_ptx=True))
    monkeypatch.setattr(tensor_cores, "_defines", lambda rt, variant, kw: dict(variant.defines(rt.profile), MMA_VEC_LOADS=int(kw % 4 == 0)))
    monkeypatch.setattr(tensor_cores, "PROBE_SHAPES", ((19, 11, 130),))


def _check_bgemm(runtime, rng, m=21, n=13, k=300):
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    out = ops.bgemm(to_bits(runtime, a), to_bits(runtime, b))
    np.testing.assert_array_equal(out.numpy(), reference.xnor_gemm(a, b))


def test_probe_on_this_device(mma_runtime, rng):
    # On NVIDIA's OpenCL the real probe: the PTX builds and equals the popcount kernel.
    if not mma_runtime.quirks.inline_ptx:
        pytest.skip(f"{mma_runtime.traits.name} takes no inline PTX (the probe is not attempted)")
    assert ops.gemm.tensor_cores_usable(mma_runtime) is True
    _check_bgemm(mma_runtime, rng, 300, 260, 4000)


def test_probe_is_not_attempted_without_inline_ptx(mma_runtime, rng, monkeypatch):
    # PoCL, Intel's CPU runtime, Oclgrind: no probe, no tensor-core kernel, no PTX built.
    if mma_runtime.quirks.inline_ptx:
        pytest.skip(f"{mma_runtime.traits.name} takes inline PTX")
    def never(*args):
        raise AssertionError("the tensor-core kernel ran on a device without inline PTX")
    monkeypatch.setattr(tensor_cores, "bgemm_mma", never)
    monkeypatch.setattr(tensor_cores, "self_check", never)
    sources = []
    real_build = mma_runtime.programs._build
    monkeypatch.setattr(mma_runtime.programs, "_build", lambda name, src: sources.append(src) or real_build(name, src))
    _check_bgemm(mma_runtime, rng)
    assert mma_runtime.tensor_cores is False
    assert not any("bgemm_mma" in src or registry.INLINE_PTX + " 1" in src for src in sources)


def test_probe_passes_and_the_gemm_runs_on_the_tensor_core_kernel(mma_runtime, rng, monkeypatch):
    _as_nvidia(monkeypatch, mma_runtime)
    calls = []
    real = tensor_cores.bgemm_mma
    monkeypatch.setattr(tensor_cores, "bgemm_mma", lambda a, b: calls.append(a.shape) or real(a, b))
    _check_bgemm(mma_runtime, rng)
    assert mma_runtime.tensor_cores is True
    assert len(calls) == len(tensor_cores.PROBE_SHAPES) + 1  # the probe's, then the GEMM's
    assert "bgemm_mma.cl:bgemm_mma" in launch.launched


@pytest.mark.parametrize("failure", ["build", "mismatch"])
def test_failed_probe_falls_back_to_popcount_with_one_warning(mma_runtime, rng, monkeypatch, failure):
    _as_nvidia(monkeypatch, mma_runtime)
    calls = []
    real = tensor_cores.bgemm_mma

    def broken(a, b):
        calls.append(a.shape)
        if failure == "build":
            raise KernelBuildError("building kernels/bgemm_mma.cl: ptxas fatal: unknown instruction")
        out = real(a, b).numpy()
        out[-1, -1] += 2  # one output off by one flipped sign
        return type(a).from_numpy(a.runtime, out, "int32")

    monkeypatch.setattr(tensor_cores, "bgemm_mma", broken)
    with pytest.warns(tensor_cores.TensorCoreWarning,
                      match="build" if failure == "build" else "1 of .* outputs differ") as caught:
        _check_bgemm(mma_runtime, rng)
        _check_bgemm(mma_runtime, rng, 5, 3, 70)
    assert len(caught) == 1
    assert mma_runtime.tensor_cores is False
    assert len(calls) == 1  # the probe stopped at its first failure, and the GEMMs ran without it


@_SLOW  # a model's planning: hundreds of simulated launches
def test_a_probe_met_while_planning_a_model_still_runs_for_real(mma_runtime, rng, monkeypatch):
    # A model's first call plans in dry runs (nothing enqueued): the probe that the first GEMM
    # starts there must still compare real results, and pass.
    import warnings

    import espresso_cl as ec
    from espresso_cl.reference.network import forward

    _as_nvidia(monkeypatch, mma_runtime)
    layers = [ec.BinaryDense(40), ec.BatchNorm(), ec.Sign(), ec.BinaryDense(130)]
    model = ec.Sequential(layers, input_shape=(70,), runtime=mma_runtime).initialize(seed=3)
    x = rng.standard_normal((5, 70)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tensor_cores.TensorCoreWarning)
        out = model.predict(x)
    assert mma_runtime.tensor_cores is True
    np.testing.assert_array_equal(out, forward(model.layers, x).astype(np.int32))
