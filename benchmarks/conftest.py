"""pytest configuration for the micro-benchmarks in benchmarks/ (run on purpose: the repository's
conftest leaves this folder out of the suite).

pytest-benchmark stores its runs by OS and Python only; a stored run from another CPU would gate this
one against another machine's speed. Unless --benchmark-storage is given, runs are stored in
benchmarks/data/hot-path/<this machine's baseline folder name> (perfsuite.fingerprint.machine_slug),
so `--benchmark-compare` only ever reads a run from a machine like this one.
"""

from pathlib import Path

import pytest

from perfsuite.fingerprint import machine_slug, this_machine

DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default


def hot_path_storage() -> Path:
    return Path(__file__).parent / "data" / "hot-path" / machine_slug(this_machine(), "cpu")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's (trylast) opens the storage
def pytest_configure(config):
    if getattr(config.option, "benchmark_storage", None) == DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{hot_path_storage()}"
