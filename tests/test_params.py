"""Tuning-profile choice: the AVX-512 profile only where the CPU and the device allow it."""

import pytest

from espresso_cl import cpu_features, params
from espresso_cl.params import AVX512_PROFILE, PARAMS_ENV_VAR, PROFILES, avx512_unsupported, params_for
from espresso_cl.runtime import _is_pocl, _kind


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
    for family in list(avx512.families) + ["pack", "pool"]:
        defines = avx512.defines(family)
        assert defines["ESPRESSO_AVX512"] == 1 and defines["WORD_BITS"] == 64
    assert "ESPRESSO_AVX512" not in PROFILES["cpu"].defines("bgemm")
    assert "ESPRESSO_AVX512" not in PROFILES["gpu"].defines("bgemm")


@pytest.fixture
def pocl_cpu(runtime):
    if _kind(runtime.device) != "cpu" or not _is_pocl(runtime.device):
        pytest.skip("needs the PoCL CPU device")
    return runtime.device


def test_avx512_profile_follows_the_cpu_features(monkeypatch, pocl_cpu):
    monkeypatch.delenv(PARAMS_ENV_VAR, raising=False)
    monkeypatch.setattr(cpu_features, "is_x86_64", lambda: True)
    monkeypatch.setattr(cpu_features, "missing_avx512", lambda: [])
    assert avx512_unsupported(pocl_cpu) == ""
    assert params_for(pocl_cpu).name == AVX512_PROFILE
    # An AVX2-only CPU (Zen 3): the portable profile, and a forced AVX-512 profile is refused.
    monkeypatch.setattr(cpu_features, "missing_avx512", lambda: ["AVX512F", "AVX512VPOPCNTDQ"])
    assert "AVX512VPOPCNTDQ" in avx512_unsupported(pocl_cpu)
    assert params_for(pocl_cpu).name == "cpu"
    monkeypatch.setenv(PARAMS_ENV_VAR, AVX512_PROFILE)
    with pytest.raises(ValueError, match="AVX512VPOPCNTDQ"):
        params_for(pocl_cpu)


def test_forced_cpu_profile_is_the_portable_path(monkeypatch, pocl_cpu):
    monkeypatch.setenv(PARAMS_ENV_VAR, "cpu")
    assert params_for(pocl_cpu) is params.PROFILES["cpu"]
