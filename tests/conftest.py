"""Shared pytest configuration.

Tests marked ``slow`` (long statistical checks, end-to-end runs) or ``realdata`` (the real MNIST,
notMNIST and Fashion-MNIST sources) are skipped in the default run; they run when ``CI=true``
(as .ci/run sets it) or with ``--runslow``.
"""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
