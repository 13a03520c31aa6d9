"""Shared pytest configuration.

Tests marked ``slow`` (long statistical checks, end-to-end runs) or ``realdata`` (the real MNIST,
notMNIST and Fashion-MNIST sources) are skipped in the default run; they run when ``CI=true``
(as .ci/run sets it) or with ``--runslow``.
"""

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow / realdata")


def _run_all(config) -> bool:
    return config.getoption("--runslow") or os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config, items):
    if _run_all(config):
        return
    skip = pytest.mark.skip(reason="slow/realdata: runs in CI (CI=true) or with --runslow")
    for item in items:
        if "slow" in item.keywords or "realdata" in item.keywords:
            item.add_marker(skip)
