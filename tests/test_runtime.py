"""The runtime (espresso_cl/runtime.py): one per device, holding the device's profile, quirks,
programs and buffers."""

import espresso_cl
from espresso_cl.device import quirks_of, select_device, traits_of
from espresso_cl.runtime import Runtime
from espresso_cl.tuning import profile_for


def test_get_runtime_is_shared_per_device(runtime):
    assert espresso_cl.get_runtime() is runtime
    assert runtime.device == select_device()


def test_a_runtime_reads_its_device_through_traits_and_quirks(runtime):
    rt = Runtime(runtime.device)
    assert rt.traits == traits_of(runtime.device) and rt.quirks == quirks_of(rt.traits)
    assert rt.profile is profile_for(rt.traits)
    assert rt.buffers.reuse == rt.quirks.reuse_buffers
    assert rt.buffers.huge_pages == rt.quirks.huge_pages
    assert rt.programs.quirks is rt.quirks
