"""The kernel registry (espresso_cl/registry.py): every kernel described once, and the choice
of variant per profile and padding."""

import re

import pytest

from espresso_cl import registry
from espresso_cl.build import kernel_dir
from espresso_cl.tuning import PROFILES

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_KERNEL = re.compile(r"\b(?:__kernel|kernel)\b[^;{}]*?\bvoid\s+(\w+)\s*\(")


def defined_kernels() -> set:
    found = set()
    for path in kernel_dir().glob("*.cl"):
        source = _COMMENT.sub(" ", path.read_text())
        found.update(f"{path.name}:{name}" for name in _KERNEL.findall(source))
    return found


def test_every_kernel_is_named_by_exactly_one_variant():
    assert registry.launch_names() == defined_kernels()
    names = [f"{v.file}:{k}" for v in registry.VARIANTS for k in v.kernels]
    assert len(names) == len(set(names))


def test_x86_variants_are_the_files_guarded_for_avx512():
    for variant in registry.VARIANTS:
        source = (kernel_dir() / variant.file).read_text()
        # x86 machine code: the variant's kernels exist only inside an `#if XNOR_CPU_AVX512` branch.
        kernels = [guarded for line, guarded in _guarded_lines(source, "XNOR_CPU_AVX512")
                   if "__kernel" in line.split("/*")[0]]
        assert kernels and variant.x86_machine_code == all(kernels), variant.name
    assert registry.simulatable_kernels() == {
        name for name in defined_kernels()
        if not any(v.x86_machine_code and name.startswith(v.file + ":") for v in registry.VARIANTS)}


def test_tensor_core_variants_are_the_files_guarded_for_inline_ptx():
    for variant in registry.VARIANTS:
        source = (kernel_dir() / variant.file).read_text()
        assert variant.tensor_cores == (f"#if {registry.INLINE_PTX}" in source), variant.name
        # Inline assembly only inside the guard's branch.
        assert all(guarded for line, guarded in _guarded_lines(source, registry.INLINE_PTX)
                   if "asm" in line.split("/*")[0])


def _guarded_lines(source: str, guard: str):
    """(line, whether it is inside the ``#if <guard>`` branch) for each line of a .cl file."""
    stack = []  # per open #if: whether its current branch is the guard's
    for line in source.splitlines():
        directive = line.strip()
        if directive.startswith("#if"):
            stack.append(directive == f"#if {guard}")
        elif directive.startswith(("#else", "#elif")) and stack:
            stack[-1] = False
        elif directive.startswith("#endif") and stack:
            stack.pop()
        yield line, any(stack)


@pytest.mark.parametrize("profile, pad, expected", [
    ("cpu-avx512", "zero", "bconv2d_cpu"),
    ("cpu-avx512", "one", "bconv2d_im2col"),
    ("cpu", "zero", "bconv2d_im2col"),
    ("intel-cpu", "one", "bconv2d_im2col"),
    ("gpu", "zero", "bconv2d_igemm"),
    ("gpu", "one", "bconv2d_igemm"),
    ("generic", "one", "bconv2d_direct"),
])
def test_binary_conv_variant_follows_profile_and_padding(profile, pad, expected):
    assert registry.select("bconv2d", PROFILES[profile], pad).name == expected


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_fused_threshold_variants_exist_exactly_where_their_kernels_run(profile):
    p = PROFILES[profile]
    cpu_blocks = p.bgemm.kernel == "cpu_blocks"
    assert registry.select("bgemm", p).name == ("bgemm_cpu" if cpu_blocks else "bgemm_tiled")
    assert registry.select("bgemm_threshold", p).name == (
        "bgemm_cpu_threshold" if cpu_blocks else "bgemm_tiled_threshold")
    assert registry.select("bgemm_affine", p).name == ("bgemm_cpu_affine" if cpu_blocks else "bgemm_tiled_affine")
    direct = "direct" in p.bconv.prefer  # the fused direct conv where the direct conv runs
    blocks = "blocks" in p.bconv.prefer
    for pad in ("zero", "one"):
        # With a pool in the launch: the blocks or the direct kernel (the implicit GEMM's has none).
        assert registry.can_run("bconv2d_threshold", p, pad, pooled=True) == (direct or blocks)
        if direct or blocks:
            assert registry.select("bconv2d_threshold", p, pad, pooled=True).name == (
                "bconv2d_threshold_cpu" if blocks else "bconv2d_threshold_direct")
    assert registry.select("bitplane_conv2d_threshold", p).name == (
        "bitplane_threshold_avx512" if p.x86_machine_code else "bitplane_threshold_tiled")
    assert (registry.select("bitplane_conv2d", p).name == "bitplane_avx512") == p.x86_machine_code


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_gemv_runs_where_the_profile_tunes_one(profile):
    p = PROFILES[profile]
    assert registry.can_run("bgemv", p) == (p.bgemm.gemv is not None)
    assert (p.bgemm.gemv is not None) == (profile == "gpu")


def test_gpu_profile_fuses_the_threshold_into_its_implicit_gemm_conv():
    gpu = PROFILES["gpu"]
    for pad in ("zero", "one"):
        variant = registry.select("bconv2d_threshold", gpu, pad)
        assert variant.name == "bconv2d_igemm_threshold" and variant.fuses_threshold
        assert not variant.fuses_pool  # a pool after it: the direct kernel's fused form
        assert registry.select("bconv2d_threshold", gpu, pad, pooled=True).name == "bconv2d_threshold_direct"
    # Its groups pack whole words: only tiles of a multiple of 64 channels run it.
    assert gpu.bconv.tiles.wg_n * gpu.bconv.tiles.tn % 64 == 0
    assert registry.select("bconv2d_threshold", PROFILES["generic"]).name == "bconv2d_threshold_direct"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_file_gets_the_tiles_and_constants_it_needs(profile):
    p = PROFILES[profile]
    for variant in registry.VARIANTS:
        defines = registry.file_defines(variant.file, p)
        assert defines["WORD_BITS"] == p.word_bits
        if variant.tensor_cores:
            if variant.runs_with(p):
                assert {"MMA_WARPS_M", "MMA_WARPS_N", "MMA_MF", "MMA_NF"} <= set(defines), variant.name
            assert registry.INLINE_PTX not in defines  # only for NVIDIA devices
            assert registry.file_defines(variant.file, p, inline_ptx=True)[registry.INLINE_PTX] == 1
        elif variant.tuning(p) is not None:  # (bgemv has tuning data only where a GEMV kernel is)
            assert {"TM", "TN", "WG_M", "WG_N"} <= set(defines), variant.name
        if "bitplane" in variant.file:
            assert defines["PLANES"] == registry.BITPLANES
