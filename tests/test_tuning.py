"""Tuning profiles (espresso_cl/tuning.py): the AVX-512 profile only where the CPU and the device allow it."""

from dataclasses import replace

import pytest

from espresso_cl import cpu_features, settings, tuning
from espresso_cl.tuning import AVX512_PROFILE, PROFILES, profile_for


def test_cpu_features_name_the_avx512_subsets():
    features = cpu_features.cpu_features()
    assert isinstance(features, dict)
    missing = cpu_features.missing_avx512()
    assert set(missing) <= set(cpu_features.AVX512_XNOR)
    assert cpu_features.has_avx512_xnor() == (not missing)
    if features and cpu_features.is_x86_64():
        assert missing == [name for name in cpu_features.AVX512_XNOR if not features.get(name)]


def test_common_defines_reach_every_family():
    avx512 = PROFILES[AVX512_PROFILE]
    for tuned in (None, avx512.bgemm.tiles, avx512.fgemm, avx512.bconv.tiles, avx512.fconv, avx512.bitplane.tiles):
        defines = avx512.defines(tuned)
        assert defines["ESPRESSO_AVX512"] == 1 and defines["WORD_BITS"] == 64
    assert "ESPRESSO_AVX512" not in PROFILES["cpu"].defines(PROFILES["cpu"].bgemm.tiles)
    assert "ESPRESSO_AVX512" not in PROFILES["gpu"].defines(PROFILES["gpu"].bgemm.tiles)


def test_a_profile_with_machine_code_falls_back_to_portable_code():
    for profile in PROFILES.values():
        assert (profile.fallback is not None) == profile.x86_machine_code, profile.name
        if profile.fallback is not None:
            assert not PROFILES[profile.fallback].x86_machine_code


@pytest.fixture
def pocl_cpu(runtime):
    if runtime.traits.kind != "cpu" or runtime.traits.implementation != "pocl":
        pytest.skip("needs the PoCL CPU device")
    return runtime.traits


def test_avx512_profile_follows_the_cpu_features(monkeypatch, pocl_cpu):
    monkeypatch.delenv(settings.PROFILE, raising=False)
    with_avx512 = replace(pocl_cpu, cpu_features=frozenset(cpu_features.AVX512_XNOR))
    assert PROFILES[AVX512_PROFILE].cannot_run_on(with_avx512) == ""
    assert profile_for(with_avx512).name == AVX512_PROFILE
    # An AVX2-only CPU (Zen 3): the portable profile, and a forced AVX-512 profile is refused.
    avx2_only = replace(pocl_cpu, cpu_features=frozenset({"AVX2", "AVX512BW", "AVX512VL"}))
    assert "AVX512VPOPCNTDQ" in PROFILES[AVX512_PROFILE].cannot_run_on(avx2_only)
    assert profile_for(avx2_only).name == "cpu"
    monkeypatch.setenv(settings.PROFILE, AVX512_PROFILE)
    with pytest.raises(ValueError, match="AVX512VPOPCNTDQ"):
        profile_for(avx2_only)


def test_forced_cpu_profile_is_the_portable_path(monkeypatch, pocl_cpu):
    monkeypatch.setenv(settings.PROFILE, "cpu")
    assert profile_for(pocl_cpu) is tuning.PROFILES["cpu"]
