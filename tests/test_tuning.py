"""Tuning profiles (espresso_cl/tuning.py): the AVX-512 profile only where the CPU and the device allow it."""

from dataclasses import replace

import pytest

from espresso_cl import cpu_features, settings, tuning
from espresso_cl.device import all_devices, traits_of
from espresso_cl.runtime import Runtime
from espresso_cl.tuning import AVX512_PROFILE, INTEL_CPU_PROFILE, PROFILES, profile_for


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


# --- the profile a runtime gets -----------------------------------------------------------

def test_bad_params_value_names_the_profiles(monkeypatch, runtime):
    monkeypatch.setenv(settings.PROFILE, "turbo")
    with pytest.raises(ValueError) as caught:
        Runtime(runtime.device)
    assert "turbo" in str(caught.value)
    for name in PROFILES:
        assert name in str(caught.value)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_params_value_forces_a_profile(monkeypatch, runtime, name):
    why = PROFILES[name].cannot_run_on(runtime.traits)
    if why:
        pytest.skip(f"{name}: {why}")
    monkeypatch.setenv(settings.PROFILE, name.upper())
    assert Runtime(runtime.device).profile is PROFILES[name]


def test_explicit_profile_wins(runtime):
    assert Runtime(runtime.device, profile=PROFILES["generic"]).profile is PROFILES["generic"]


def test_intel_cpu_device_gets_its_profile(monkeypatch, runtime):
    intel = [dev for _, _, dev in all_devices()
             if traits_of(dev).implementation == "intel-cpu"]
    if not intel:
        pytest.skip("Intel's CPU runtime is not registered")
    monkeypatch.delenv(settings.PROFILE, raising=False)
    assert Runtime(intel[0]).profile is PROFILES[INTEL_CPU_PROFILE]
