"""The tuner (espresso_cl/tuner.py) and the tuning database (espresso_cl/tuning_db.py), as
tuning.profile_for applies it: keying, bad files, the overlay, bit-exact tuned kernels, and
the search's choice under an injected timer."""

import json
import warnings
from dataclasses import asdict

import numpy as np
import pytest

from espresso_cl import cli, ops, reference, registry, settings, tuner, tuning, tuning_db
from espresso_cl.runtime import Runtime
from espresso_cl.tensor import Tensor
from espresso_cl.tuner import AtMost, MultipleOf, Needs, Space
from kernel_cases import sign_pm1, to_bits


@pytest.fixture
def database(tmp_path, monkeypatch):
    """An empty user database in a temporary folder, no shipped entries (tests may write a
    shipped.json beside it), tuned entries switched on."""
    path = tmp_path / "tuning.json"
    monkeypatch.setenv(settings.TUNING_DB, str(path))
    monkeypatch.setattr(tuning_db, "SHIPPED", tmp_path / "shipped.json")
    monkeypatch.setenv(settings.TUNED, "on")
    monkeypatch.delenv(settings.PROFILE, raising=False)
    return path


def _hand_set(runtime):
    return tuning.profile_for(runtime.traits, tuned=False)


def _other_tiles(profile) -> dict:
    """bgemm and bconv tiles unlike the profile's, valid for its kernels."""
    bgemm = profile.bgemm.tiles
    tm = 6 if bgemm.tm != 6 else 12
    return {"bgemm": {"tiles": {"tm": tm, "tn": 8 if bgemm.tn != 8 else 16}},
            "bconv": {"tiles": {"tm": 2, "tn": 2}}}


def _entry(traits, profile, overrides, driver=None) -> dict:
    device = tuning_db.device_key(traits.identity)
    if driver is not None:
        device["driver"] = driver
    return {"device": device, "profile": profile.name, "overrides": overrides}


def test_database_round_trip(tmp_path, runtime):
    path = tmp_path / "sub" / "tuning.json"
    base = _hand_set(runtime)
    first = _entry(runtime.traits, base, _other_tiles(base))
    tuning_db.store(path, first)
    tuning_db.store(path, _entry(runtime.traits, base, {}, driver="another driver"))
    again = dict(first, overrides={"bgemm": {"kernel": base.bgemm.kernel}})
    tuning_db.store(path, again)  # replaces the entry of the same device and profile
    entries = tuning_db.read(path)
    assert len(entries) == 2 and again in entries and first not in entries
    assert sorted(p.name for p in path.parent.iterdir()) == ["tuning.json"]  # no temporary left


def test_an_entry_applies_to_its_device_driver_and_profile(database, runtime):
    base = _hand_set(runtime)
    overrides = _other_tiles(base)
    tuning_db.write(database, [_entry(runtime.traits, base, overrides, driver="0.0-another")])
    assert tuning.profile_for(runtime.traits) is base  # another driver: not applied
    tuning_db.write(database, [dict(_entry(runtime.traits, base, overrides), profile="not-" + base.name)])
    assert tuning.profile_for(runtime.traits) is base  # tuned from another profile: not applied
    tuning_db.write(database, [_entry(runtime.traits, base, overrides)])
    tuned = tuning.profile_for(runtime.traits)
    assert tuned.name == base.name + tuning.TUNED_SUFFIX
    assert tuned.bgemm.tiles.tm == overrides["bgemm"]["tiles"]["tm"] != base.bgemm.tiles.tm
    assert tuned.bconv.tiles.tn == 2 and tuned.fgemm == base.fgemm and tuned.word_bits == base.word_bits
    assert tuning.profile_for(runtime.traits) is tuned  # one object per entry (registry caches)


def test_the_users_entry_wins_over_the_shipped_one(database, runtime):
    base = _hand_set(runtime)
    shipped = {"bgemm": {"tiles": {"tm": 6}}}
    tuning_db.write(tuning_db.SHIPPED, [_entry(runtime.traits, base, shipped)])
    assert tuning.profile_for(runtime.traits).bgemm.tiles.tm == 6
    tuning_db.write(database, [_entry(runtime.traits, base, {"bgemm": {"tiles": {"tm": 24}}})])
    assert tuning.profile_for(runtime.traits).bgemm.tiles.tm == 24


def test_forced_profile_and_switch_off_win_over_entries(database, monkeypatch, runtime):
    base = _hand_set(runtime)
    tuning_db.write(database, [_entry(runtime.traits, base, _other_tiles(base))])
    monkeypatch.setenv(settings.PROFILE, base.name)
    assert tuning.profile_for(runtime.traits) is base
    monkeypatch.delenv(settings.PROFILE)
    monkeypatch.setenv(settings.TUNED, "off")
    assert tuning.profile_for(runtime.traits) is base


@pytest.mark.parametrize("content", ["{not json", json.dumps({"entries": []}),
                                     json.dumps({"format": tuning_db.FORMAT, "version": 1, "entries": [{"x": 1}]}),
                                     json.dumps({"format": tuning_db.FORMAT, "version": 99, "entries": []})],
                         ids=["not-json", "foreign", "bad-entry", "future-version"])
def test_a_bad_database_warns_once_and_is_ignored(database, runtime, content):
    database.write_text(content)
    with pytest.warns(RuntimeWarning, match="tuning database ignored"):
        assert tuning.profile_for(runtime.traits) is _hand_set(runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tuning.profile_for(runtime.traits) is _hand_set(runtime)  # read once per file version


def test_an_entry_naming_unknown_fields_warns_and_is_ignored(database, runtime):
    base = _hand_set(runtime)
    tuning_db.write(database, [_entry(runtime.traits, base, {"bgemm": {"tiles": {"tq": 3}}})])
    with pytest.warns(RuntimeWarning, match="tq"):
        assert tuning.profile_for(runtime.traits) is base
    with pytest.raises(ValueError, match="tn"):
        tuning.with_overrides(base, {"bgemm": {"tiles": {"tn": "wide"}}})
    with pytest.raises(ValueError, match="no tuning family"):
        tuning.with_overrides(base, {"softmax": {}})


def test_storing_over_a_bad_file_keeps_it(tmp_path, runtime):
    path = tmp_path / "tuning.json"
    path.write_text("garbage")
    with pytest.warns(RuntimeWarning, match="kept as"):
        tuning_db.store(path, _entry(runtime.traits, _hand_set(runtime), {}))
    assert (tmp_path / "tuning.json.bad").read_text() == "garbage"
    assert len(tuning_db.read(path)) == 1


@pytest.mark.parametrize("m, n, k", [(1, 33, 129), (7, 65, 65), (3, 5, 1100)])
def test_a_tuned_profile_computes_the_same_bits(runtime, rng, m, n, k):
    base = _hand_set(runtime)
    tuned = Runtime(runtime.device, profile=tuning.with_overrides(base, _other_tiles(base)))
    a, b = sign_pm1(rng, (m, k)), sign_pm1(rng, (n, k))
    got = ops.bgemm(to_bits(tuned, a), to_bits(tuned, b)).numpy()
    np.testing.assert_array_equal(got, reference.xnor_gemm(a, b))
    x, w = sign_pm1(rng, (m % 3 + 1, 6, 5, 37)), sign_pm1(rng, (n % 7 + 1, 3, 3, 37))
    got = ops.bconv2d(to_bits(tuned, x), to_bits(tuned, w), 1, "same").numpy()
    np.testing.assert_array_equal(got, reference.conv2d(x, w, 1, "same", 0))


def test_constraints_are_data():
    facts = {"limit": 8, "rows": 3, "x86": False}
    space = Space({"a": (1, 2, 3, 6), "b": (1, 4)}, (MultipleOf("a", "rows"), AtMost((("a", "b"), (2,)), "limit")))
    assert sorted((c["a"], c["b"]) for c in tuner.candidates([space], facts)) == [(3, 1), (6, 1)]
    assert tuner.candidates([Space({"a": (1,)}, (Needs("x86"),))], facts) == []
    assert tuner.nested({"tiles.tm": 4, "kv": 8}) == {"tiles": {"tm": 4}, "kv": 8}


def _fake_timer(seconds_by_tm):
    def timer(runtime, call):
        call()  # the output must still be computed by the candidate under test
        return seconds_by_tm.get(runtime.profile.bgemm.tiles.tm, 1.0)
    return timer


def _bgemm_space(base):
    # Rows per block: 6 and 24 are whole register tiles of every CPU micro-kernel (2 or 3
    # rows), and the tiled kernel takes any.
    return (Space({"tiles.tm": (6, 24)}),)


@pytest.mark.no_oclgrind  # the search's logic: test_bgemm.py checks its kernels there
def test_the_search_picks_the_faster_candidate(runtime):
    base = _hand_set(runtime)
    result = tuner.tune_family(Runtime(runtime.device, profile=base), "bgemm", base, [tuner.gemm_shape(5, 37, 100)],
                               _bgemm_space(base), budget_s=60, max_candidates=8,
                               timer=_fake_timer({6: 0.25, 24: 0.5}), log=lambda line: None)
    assert result.rejected == []
    assert result.tuned is not None and result.tuned["tiles"]["tm"] == 6
    assert result.gain == pytest.approx(1 / 0.25 if base.bgemm.tiles.tm not in (6, 24) else 2.0)
    entry = tuner.entry(runtime.traits, base, [result])
    assert entry["overrides"] == {"bgemm": result.tuned}
    assert tuning.with_overrides(base, json.loads(json.dumps(entry["overrides"]))).bgemm == \
        tuning.with_overrides(base, {"bgemm": {"tiles": {"tm": 6}}}).bgemm
    assert "bgemm" in tuner.table([result])


@pytest.mark.no_oclgrind  # the search's logic: test_bgemm.py checks its kernels there
def test_a_mismatching_or_failing_candidate_is_rejected(runtime):
    base = _hand_set(runtime)
    right = tuner.gemm_shape(5, 37, 100)

    def run(rt, arrays):
        a, b = to_bits(rt, arrays[0]), to_bits(rt, arrays[1])
        tm = rt.profile.bgemm.tiles.tm
        if tm == 24:
            return lambda: ops.bgemm(a, a)  # fast and wrong
        if tm == 18:
            raise RuntimeError("cannot build")
        return lambda: ops.bgemm(a, b)
    shape = tuner.Shape("5x37x100", right.macs, right.arrays, run)
    if base.bgemm.tiles.tm in (6, 18, 24):
        pytest.skip(f"profile {base.name}'s rows per block are one of the candidates")
    result = tuner.tune_family(Runtime(runtime.device, profile=base), "bgemm", base, [shape],
                               (Space({"tiles.tm": (6, 18, 24)}),), budget_s=60, max_candidates=8,
                               timer=_fake_timer({24: 0.1, 6: 0.5}), log=lambda line: None)
    assert result.tuned["tiles"]["tm"] == 6
    why = {values["tiles.tm"]: text for values, text in result.rejected}
    assert set(why) == {18, 24} and "differs" in why[24] and "cannot build" in why[18]


def test_a_family_with_nothing_faster_keeps_its_values(runtime):
    base = _hand_set(runtime)
    result = tuner.tune_family(Runtime(runtime.device, profile=base), "bgemm", base, [tuner.gemm_shape(3, 9, 64)],
                               _bgemm_space(base), budget_s=60, max_candidates=8,
                               timer=_fake_timer({base.bgemm.tiles.tm: 0.5}), log=lambda line: None)
    assert result.tuned is None and result.gain == 1.0
    assert tuner.entry(runtime.traits, base, [result]) is None
    assert result.hand_set == asdict(base.bgemm)


@pytest.mark.no_oclgrind  # times real kernels on a GEMM of 256 x 256 x 1024
def test_tune_command_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(settings.PROFILE, raising=False)
    out = tmp_path / "db.json"
    assert cli.main(["tune", "--quick", "--families", "bgemm", "--budget", "2", "--quiet", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| family | shape | hand-set" in printed and "256x256x1024" in printed
    assert out.exists() == ("written to" in printed)
    if out.exists():
        assert tuning_db.read(out)[0]["profile"] in tuning.PROFILES


def test_tune_refuses_an_unknown_family(capsys):
    with pytest.raises(SystemExit):
        cli.main(["tune", "--families", "bgemm,softmax"])
    assert "families are" in capsys.readouterr().err


def test_shipped_entries_name_real_fields():
    for entry in tuning_db.read(tuning_db.SHIPPED):
        profile = tuning.with_overrides(tuning.PROFILES[entry["profile"]], entry["overrides"])
        assert set(entry["overrides"]) <= set(tuning.FAMILIES) and profile.name.endswith(tuning.TUNED_SUFFIX)


def _shipped_profile(runtime):
    """The hand-set profile with this device's shipped entry laid over it (skip if none)."""
    base = _hand_set(runtime)
    for entry in tuning_db.read(tuning_db.SHIPPED):
        if entry["device"] == tuning_db.device_key(runtime.traits.identity) and entry["profile"] == base.name:
            return tuning.with_overrides(base, entry["overrides"])
    pytest.skip(f"no shipped tuning entry for {runtime.traits.describe()} ({base.name})")


# Awkward shapes: batch 1 and odd, channels that fill no word, 'same' and 'valid', stride 2.
@pytest.mark.parametrize("n, h, w, c, oc, stride, padding",
                         [(1, 5, 7, 3, 5, "1", "same"), (3, 9, 6, 37, 33, "2", "valid"), (2, 8, 8, 64, 70, "1", "same")])
def test_this_devices_shipped_entry_is_bit_exact(runtime, rng, n, h, w, c, oc, stride, padding):
    tuned = Runtime(runtime.device, profile=_shipped_profile(runtime))
    stride = int(stride)
    a, b = sign_pm1(rng, (n * h, w * c + 1)), sign_pm1(rng, (oc, w * c + 1))
    np.testing.assert_array_equal(ops.bgemm(to_bits(tuned, a), to_bits(tuned, b)).numpy(), reference.xnor_gemm(a, b))
    x, f = sign_pm1(rng, (n, h, w, c)), sign_pm1(rng, (oc, 3, 3, c))
    np.testing.assert_array_equal(ops.bconv2d(to_bits(tuned, x), to_bits(tuned, f), stride, padding).numpy(),
                                  reference.conv2d(x, f, stride, padding, 0))
    pixels = rng.integers(0, 256, (n, h, w, c)).astype(np.uint8)
    got = ops.bitplane_conv2d(Tensor.from_numpy(tuned, pixels, "uint8"), to_bits(tuned, f), stride, padding)
    np.testing.assert_array_equal(got.numpy(), reference.conv2d(pixels, f, stride, padding, 0))
    # Float paths on small integers: exact whatever the summation order.
    xf, ff = rng.integers(-2, 3, (n, h, w, c)).astype(np.float32), rng.integers(-2, 3, (oc, 3, 3, c)).astype(np.float32)
    got = ops.fconv2d(Tensor.from_numpy(tuned, xf, "float32"), Tensor.from_numpy(tuned, ff, "float32"), stride, padding)
    np.testing.assert_array_equal(got.numpy(), reference.conv2d(xf, ff, stride, padding, 0))
    af, bf = a.astype(np.float32), b.astype(np.float32)
    got = ops.fgemm(Tensor.from_numpy(tuned, af, "float32"), Tensor.from_numpy(tuned, bf, "float32"))
    np.testing.assert_array_equal(got.numpy(), reference.gemm_float(af, bf))


@pytest.mark.parametrize("n, h, w, oc", [(1, 6, 5, 37), (3, 9, 7, 64)])
def test_this_devices_shipped_entry_is_bit_exact_fused(runtime, rng, n, h, w, oc):
    """The fused batch-norm + sign kernels share their family's tiles."""
    tuned = Runtime(runtime.device, profile=_shipped_profile(runtime))
    thresh = rng.integers(-20, 20, oc).astype(np.int32)
    flip = rng.integers(0, 2, oc).astype(np.int32)
    t_thresh, t_flip = Tensor.from_numpy(tuned, thresh, "int32"), Tensor.from_numpy(tuned, flip, "int32")
    f = sign_pm1(rng, (oc, 3, 3, 3))
    if registry.can_run("bitplane_conv2d_threshold", tuned.profile):
        pixels = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
        got = ops.bitplane_conv2d_threshold(Tensor.from_numpy(tuned, pixels, "uint8"), to_bits(tuned, f),
                                            t_thresh, t_flip, 1, "same")
        expected = reference.threshold_sign(reference.conv2d(pixels, f, 1, "same", 0), thresh, flip)
        np.testing.assert_array_equal(got.numpy(), reference.pack_bits(expected))
    if registry.can_run("bgemm_threshold", tuned.profile):
        a, b = sign_pm1(rng, (n * h, 100)), sign_pm1(rng, (oc, 100))
        got = ops.bgemm_threshold(to_bits(tuned, a), to_bits(tuned, b), t_thresh, t_flip)
        expected = reference.threshold_sign(reference.xnor_gemm(a, b), thresh, flip)
        np.testing.assert_array_equal(got.numpy(), reference.pack_bits(expected))
