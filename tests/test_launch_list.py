"""Recorded launch lists (espresso_cl/launch_list.py): a replay gives what running the plan
gives, on every profile; no call after the first builds a kernel; buffers stay the list's own."""

import threading

import numpy as np
import pytest

import espresso_cl as ec
from espresso_cl.intmath import size_bucket
from espresso_cl.launch_list import PADDED_ROWS, dry_run
from espresso_cl.ops import launch
from espresso_cl.reference.network import forward
from espresso_cl.tensor import Tensor

from test_model import check_against_reference, cnn, mlp, pixels


def on(runtime, model):
    model._runtime = runtime
    return model


@pytest.mark.parametrize("value, bucket", [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (64, 64), (65, 128), (1000, 1024)])
def test_size_bucket(value, bucket):
    assert size_bucket(value) == bucket


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_replays_match_the_reference_at_every_batch_size(profiled_runtime, rng, make):
    model = on(profiled_runtime, make()).initialize(seed=int(rng.integers(1 << 30)))
    x = pixels(rng, 9, model.input_shape)
    for batch in (1, 3, 1, 9, 3, 2, 9):  # each size twice or more: recorded, then replayed
        check_against_reference(model, x[:batch], "binary")
        ref = forward(model.layers, x[:batch])
        np.testing.assert_array_equal(model.predict_classes(x[:batch]), np.argmax(ref, axis=1))
    # Replays of another input at a recorded size: the input buffer is copied in each time.
    check_against_reference(model, x[::-1][:3].copy(), "binary")


def test_float_mode_replays_agree_with_binary_mode(runtime, rng):
    model = on(runtime, mlp()).initialize(seed=3)
    x = pixels(rng, 5, model.input_shape)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(x, mode="float"), model.predict(x))


def test_no_call_after_the_first_builds_a_kernel(runtime, rng):
    model = on(runtime, cnn()).initialize(seed=5)
    x = pixels(rng, 70, model.input_shape)
    model.predict(x[:1], batch_size=64)           # builds for every batch size up to 64
    model.predict_classes(x[:1], batch_size=64)
    builds = runtime.programs.builds
    for batch in (2, 3, 5, 7, 13, 31, 33, 47, 64, 70):
        model.predict(x[:batch], batch_size=64)
        model.predict_classes(x[:batch], batch_size=64)
    assert runtime.programs.builds == builds


def count_plain_launches(runtime, model, x, monkeypatch):
    """Launches of a run of the plan itself (every launch fetches its kernel from the runtime)."""
    fetched = []
    real = type(runtime).kernel
    monkeypatch.setattr(type(runtime), "kernel", lambda self, *a, **k: fetched.append(a) or real(self, *a, **k))
    compiled = model._compiled("binary")
    model._plain_run(compiled.plan, x, classes=False)
    monkeypatch.undo()
    return len(fetched)


def test_a_replay_enqueues_what_a_run_of_the_plan_does(runtime, rng, monkeypatch):
    model = on(runtime, cnn()).initialize(seed=7)
    x = pixels(rng, 5, model.input_shape)
    count = model.launch_count(5)
    assert count == count_plain_launches(runtime, model, x, monkeypatch)
    assert count >= len(model._compiled("binary").plan.steps)


def test_models_keep_their_buffers_apart(runtime, rng):
    # Two models replayed in turn, with other work in between, each still gives its own answer:
    # no buffer of a recorded list went back to the pool while the list lived.
    a, b = on(runtime, mlp()).initialize(seed=1), on(runtime, cnn()).initialize(seed=2)
    xa, xb = pixels(rng, 4, a.input_shape), pixels(rng, 4, b.input_shape)
    want_a, want_b = forward(a.layers, xa), forward(b.layers, xb)
    for _ in range(3):
        check_against_reference(a, xa, "binary")
        check_against_reference(b, xb, "binary")
        Tensor.from_numpy(runtime, np.ones((1000,), np.float32), "float32")  # takes and frees pool buffers
    np.testing.assert_allclose(a.predict(xa), want_a, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(b.predict(xb), want_b, rtol=1e-5, atol=1e-4)


def test_the_most_recent_launch_lists_are_kept_and_the_rest_released(runtime, rng):
    model = on(runtime, mlp()).initialize(seed=4)
    sizes = range(PADDED_ROWS + 1, PADDED_ROWS + 8)
    x = pixels(rng, sizes[-1], model.input_shape)
    lists = []
    for batch in sizes:
        model.predict(x[:batch])
        lists.append(model._compiled("binary").launch_lists[(batch, False)])
    kept = model._compiled("binary").launch_lists
    assert list(kept) == [(batch, False) for batch in sizes[-len(kept):]]
    assert all(l.released for l in lists[:-len(kept)]) and not any(l.released for l in lists[-len(kept):])
    check_against_reference(model, x[:sizes[0]], "binary")  # evicted: recorded again


def test_a_new_small_batch_size_first_replays_its_buckets_list_padded(runtime, rng):
    # The first call at a size of up to PADDED_ROWS samples runs the list of its power-of-two
    # bucket, recorded while planning, on its samples and zeros after them (a padded replay);
    # the second call at that size records its own.
    model = on(runtime, cnn()).initialize(seed=11)
    x = pixels(rng, 8, model.input_shape)
    model.predict(x[:1])
    compiled = model._compiled("binary")
    assert {bucket for bucket, _ in compiled.padded_lists} == {1, 2, 4, 8, 16, 32, 64}
    for batch in (8, 5, 3, 7):
        check_against_reference(model, x[::-1][:batch].copy(), "binary")
        assert (batch, False) not in compiled.launch_lists
        check_against_reference(model, x[:batch], "binary")
        assert (batch, False) in compiled.launch_lists


def test_release_memory_drops_launch_lists_and_the_model_still_runs(runtime, rng):
    model = on(runtime, cnn()).initialize(seed=6)
    x = pixels(rng, 3, model.input_shape)
    model.predict(x)
    recorded = model._compiled("binary").find(3, classes=False)
    model.release_memory()
    assert recorded.released and not model._compiled("binary").launch_lists
    assert not model._compiled("binary").padded_lists
    check_against_reference(model, x, "binary")


def test_a_run_that_uploads_midway_is_not_replayed_but_still_right(runtime, rng):
    model = on(runtime, mlp()).initialize(seed=8)
    x = pixels(rng, 2, model.input_shape)
    plan = model._compiled("binary").plan

    def upload_midway(t):
        Tensor.from_numpy(runtime, np.zeros(4, np.float32), "float32")
        return t

    plan.steps.insert(1, ("uploads", upload_midway))
    for _ in range(2):
        check_against_reference(model, x, "binary")
    recorded = model._compiled("binary").launch_lists[(2, False)]
    assert not recorded.replayable and "uploads" in recorded.cannot_replay_because
    assert not model._compiled("binary").padded_lists  # none replayable either


def test_a_dry_run_allocates_and_enqueues_nothing(runtime, rng):
    model = on(runtime, cnn()).initialize(seed=9)
    plan = model._compiled("binary").plan
    before = set(launch.launched)
    with runtime.buffers.recording() as sizes:
        dry_run(runtime, model._forward(plan, classes=True), (4,) + model.input_shape, plan.input_kind)
    assert sizes == [] and launch.launched == before


def test_threads_replaying_one_model_get_their_own_answers(runtime, rng):
    model = on(runtime, mlp()).initialize(seed=10)
    inputs = [pixels(np.random.default_rng(i), 3, model.input_shape) for i in range(4)]
    wants = [model.predict(x) for x in inputs]
    errors = []

    def worker(i):
        try:
            for _ in range(30):
                np.testing.assert_array_equal(model.predict(inputs[i]), wants[i])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
