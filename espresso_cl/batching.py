"""How many samples one run of a compiled model may take on its device.

Whatever ``batch_size`` a user asks for, a run must fit the device: no buffer above its
largest (``CL_DEVICE_MAX_MEM_ALLOC_SIZE``, 2 GiB on PoCL) and all of them within a share of
its global memory. A run's buffers (the input, the intermediates inside and between layers,
the output) each take ``a + b * n`` bytes for ``n`` samples, with ``a, b >= 0`` (or less, for
the ones an op splits into chunks itself), so each is at most ``n / 2`` times its size in a
run of 2 samples. One such run, measured once per compiled plan, therefore bounds every
larger one, with no per-op bookkeeping to fall out of date. It is measured after an unmeasured
first run, so that what a plan derives from its weights once is not counted per run.

Most runs are far from the limits, and need no measuring: :func:`clearly_fits` says so when
even :data:`HEADROOM` times the layers' values (4 bytes per value) fit.
"""

from __future__ import annotations

from dataclasses import dataclass

# The share of the device's global memory one run may take; the rest is for the weights,
# other models, and (for CPU devices, whose global memory is the host's) everything else.
MEMORY_SHARE = 0.5
PROBE_SAMPLES = 2
# How much larger than the values between layers an op's own buffers may be, for a run to
# count as clearly fitting (bit-plane patches of a 3x3 convolution: about 9 bytes per value).
HEADROOM = 64


@dataclass(frozen=True)
class Footprint:
    """Device bytes of a run of :data:`PROBE_SAMPLES` samples."""

    largest: int   # the largest buffer
    total: int     # every buffer taken, reuse within the run counted again (an upper bound)


def clearly_fits(rows: int, layers, traits) -> bool:
    """Whether ``rows`` samples fit the device with :data:`HEADROOM` to spare, judged from the
    layers' input and output sizes alone."""
    values = [layers[0].input_spec.size] + [layer.output_spec.size for layer in layers]
    per_value = rows * HEADROOM * 4
    return (per_value * max(values) <= traits.max_buffer_bytes
            and per_value * sum(values) <= traits.global_memory_bytes * MEMORY_SHARE)


def measure(pool, run_probe) -> Footprint:
    """The footprint of ``run_probe()`` (a run of :data:`PROBE_SAMPLES` samples) on ``pool``."""
    run_probe()
    with pool.recording() as sizes:
        run_probe()
    return Footprint(max(sizes, default=0), sum(sizes))


def rows_that_fit(footprint: Footprint, traits) -> int:
    """The most samples per run within the device's limits (at least 1: a run of one sample
    that does not fit fails with the allocation's own error, which names the sizes)."""
    budget = int(traits.global_memory_bytes * MEMORY_SHARE)
    rows = [PROBE_SAMPLES * limit // used for limit, used in
            ((traits.max_buffer_bytes, footprint.largest), (budget, footprint.total)) if used]
    return max(1, min(rows, default=1 << 31))
