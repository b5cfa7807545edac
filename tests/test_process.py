"""Processes and threads (issue 12): a child forked after OpenCL was used gets a clear error
at once instead of hanging forever; a child forked before, or a spawned one, runs models; four
threads share one model. Each scenario runs in a fresh interpreter (this one has used OpenCL)
with a time limit, so a regression fails instead of hanging the suite."""

import multiprocessing as mp
import os  # noqa: F401  (used by the scripts, which import * from here)
import subprocess
import sys
import textwrap
import threading
from functools import partial  # noqa: F401  (likewise)
from pathlib import Path

import numpy as np
import pytest

from espresso_cl import io

TIME_LIMIT = 120
REPO = Path(__file__).resolve().parent.parent


# -- run in the fresh interpreter (module level: a spawned child imports them from here) --------
def outcome(run):
    try:
        return ("ok", run())
    except Exception as exc:  # the child reports what it raised
        return (type(exc).__name__, str(exc))


def _report(run, queue):
    queue.put(outcome(run))


def in_child(method: str, run):
    """``run()``'s outcome in a child process started by ``method``, or ("timeout",)."""
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_report, args=(run, queue))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        return ("timeout",)
    return queue.get(timeout=10)


def pixels():
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)


def predict(model, x):
    return model.predict(x)


def predict_loaded(x):
    return io.load(io.shipped_model("mnist_cnn")).predict(x)


def run_script(body: str) -> str:
    script = "from tests.test_process import *\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIME_LIMIT, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.no_oclgrind
def test_a_child_forked_after_opencl_use_fails_fast_and_clearly():
    # Issue 12: m.predict in a forked child (and a fresh model there) never returned.
    out = run_script("""
        x = pixels()
        model = io.load(io.shipped_model("mnist_cnn"))
        model.predict(x)
        for run in (partial(predict, model, x), partial(predict_loaded, x)):
            result = in_child("fork", run)
            assert result[0] == "ForkedProcessError", result
            assert "spawn" in result[1] and str(os.getpid()) in result[1], result
        # A raw fork whose child exits normally (finalizers run) ends too.
        pid = os.fork()
        if pid == 0:
            sys.exit(0 if outcome(lambda: model.predict(x))[0] == "ForkedProcessError" else 3)
        assert os.waitpid(pid, 0)[1] == 0
        print("refused")
    """)
    assert "refused" in out


@pytest.mark.no_oclgrind
def test_a_child_forked_before_opencl_use_and_a_spawned_child_run_models():
    out = run_script("""
        x = pixels()
        model = io.load(io.shipped_model("mnist_cnn"))  # loading touches no OpenCL
        forked = in_child("fork", partial(predict, model, x))
        assert forked[0] == "ok", forked
        expected = model.predict(x)
        np.testing.assert_array_equal(forked[1], expected)
        # A spawned child takes the model itself (pickled: layers and parameters)...
        spawned = in_child("spawn", partial(predict, model, x))
        assert spawned[0] == "ok", spawned
        np.testing.assert_array_equal(spawned[1], expected)
        # ... or loads its own.
        fresh = in_child("spawn", partial(predict_loaded, x))
        assert fresh[0] == "ok", fresh
        np.testing.assert_array_equal(fresh[1], expected)
        print("ran")
    """)
    assert "ran" in out


def test_four_threads_share_one_model():
    model = io.load(io.shipped_model("mnist_cnn"))
    rng = np.random.default_rng(4)
    batches = [rng.integers(0, 256, (int(n), 28, 28, 1), dtype=np.uint8) for n in rng.integers(1, 40, 24)]
    expected = [model.predict(b) for b in batches]
    results, errors = {}, []

    def work(thread: int):
        try:
            for i in range(thread, len(batches), 4):
                results[i] = model.predict(batches[i])
        except Exception as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT)
    assert not errors and not any(t.is_alive() for t in threads), errors
    mismatches = [i for i in range(len(batches)) if not np.array_equal(results[i], expected[i])]
    assert mismatches == []
