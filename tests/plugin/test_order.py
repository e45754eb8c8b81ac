"""The order the plugin runs perf tests in: a framework's serving tests together across modules, so
that each server starts once per run (the pool runs one server at a time)."""

import pytest

SERVING = """
import pytest

@pytest.mark.perf
def test_{name}(serving, perf):
    pass
"""


def test_a_frameworks_serving_tests_run_together_across_modules(pytester):
    pytester.makepyfile(
        test_a="def test_first():\n    pass\n" + SERVING.format(name="a"),
        test_b=SERVING.format(name="b") + "\ndef test_plain():\n    pass\n",
        test_c="def test_last():\n    pass\n",
    )
    result = pytester.runpytest("--collect-only", "-q", "--frameworks=vllm,hf-naive")
    assert result.ret == pytest.ExitCode.OK
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "test_a.py::test_first",  # the tests that ask for no framework: a group of their own, first here
        "test_b.py::test_plain",
        "test_c.py::test_last",
        "test_a.py::test_a[vllm]",
        "test_b.py::test_b[vllm]",
        "test_a.py::test_a[hf-naive]",
        "test_b.py::test_b[hf-naive]",
    ]
