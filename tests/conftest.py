"""Test-session setup: a shared JAX compilation cache, and the `slow` marker for tests that compile the whole
supernet training step (minutes on a 2-core CPU), which run when HWNAS_SLOW_TESTS=1."""

import os

import pytest

from nas.jax_cache import enable_compilation_cache

SLOW_ENV = "HWNAS_SLOW_TESTS"

enable_compilation_cache()


def pytest_configure(config):
    config.addinivalue_line("markers", f"slow: compiles the whole supernet training step; runs with {SLOW_ENV}=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SLOW_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"compiles the whole supernet training step (minutes on 2 cores); "
                                   f"run with {SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
