"""Fixtures the perf suite's tests share."""

import os

import pytest


@pytest.fixture
def ray_serve_shares_the_client_core(serving, perf_session) -> bool:
    """True for Ray Serve on the CPU profile with 2 usable cores or fewer: its proxy and Ray's own
    processes then run on the load generator's core, and the client's self-check refuses short,
    timing-sensitive loads (the tests that skip on it say what was measured)."""
    return serving.framework == "ray-serve" and perf_session.profile.kind == "cpu" and len(os.sched_getaffinity(0)) <= 2
