"""Repository-level pytest configuration. The perfsuite plugin itself is registered by its entry point
(pyproject.toml, group pytest11); this file only tunes the suite's own tests."""

import os

from hypothesis import settings

# Shared CI machines are slow and noisy: no per-example deadline, and a fixed seed in CI.
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=200)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

collect_ignore = ["benchmarks"]
