"""The suite's own layout: tests/ has no __init__.py files, so pytest imports every test module by its
basename, and two modules with one basename stop collection (it happened twice, found only by CI)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
