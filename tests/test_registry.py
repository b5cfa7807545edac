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
        assert variant.x86_machine_code == ("#if XNOR_CPU_AVX512" in source), variant.name
    assert registry.simulatable_kernels() == {
        name for name in defined_kernels()
        if not any(v.x86_machine_code and name.startswith(v.file + ":") for v in registry.VARIANTS)}


@pytest.mark.parametrize("profile, pad, expected", [
    ("cpu-avx512", "zero", "bconv2d_avx512"),
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
    assert registry.can_run("bgemm_threshold", p) == cpu_blocks
    assert registry.can_run("bitplane_conv2d_threshold", p) == p.x86_machine_code
    assert (registry.select("bitplane_conv2d", p).name == "bitplane_avx512") == p.x86_machine_code
    if not cpu_blocks:
        with pytest.raises(ValueError, match="no kernel variant"):
            registry.select("bgemm_threshold", p)


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
    # Its groups pack whole words: only tiles of a multiple of 64 channels run it.
    assert gpu.bconv.tiles.wg_n * gpu.bconv.tiles.tn % 64 == 0
    assert not registry.can_run("bconv2d_threshold", PROFILES["generic"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_file_gets_the_tiles_and_constants_it_needs(profile):
    p = PROFILES[profile]
    for variant in registry.VARIANTS:
        defines = registry.file_defines(variant.file, p)
        assert defines["WORD_BITS"] == p.word_bits
        # (bgemv has tuning data only on profiles with a GEMV kernel.)
        if variant.tuning(p) is not None:
            assert {"TM", "TN", "WG_M", "WG_N"} <= set(defines), variant.name
        if "bitplane" in variant.file:
            assert defines["PLANES"] == registry.BITPLANES
