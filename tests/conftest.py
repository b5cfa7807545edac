"""Shared fixtures: every test runs on the device ``ESPRESSO_DEVICE`` names (default auto)."""

import zlib

import numpy as np
import pytest

import espresso_cl


@pytest.fixture(scope="session")
def runtime():
    return espresso_cl.get_runtime()


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs, so a failure reproduces.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
