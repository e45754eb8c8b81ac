"""A repetition whose every request failed must show in the error rate (it was the median over
repetitions: one bad repetition of three read 0% and passed). Driven through `perfsuite load` against
a hand-written OpenAI stream on 127.0.0.1 that fails the second repetition's requests: the arithmetic
under test is perfsuite's own, not a framework's."""

import json

import pytest
from openai_stream import openai_stream

from perfsuite.cli import main
from perfsuite.model import build_model

REQUESTS = 4  # per repetition; the second repetition's are requests 5-8


@pytest.fixture
def flaky_server():
    """An OpenAI completions stream (128 prompt tokens) that answers HTTP 500 to the 5th to 8th requests; its URL."""
    with openai_stream(prompt_tokens=128, fail=lambda n: REQUESTS < n <= 2 * REQUESTS) as url:
        yield url


def test_one_failed_repetition_of_three_is_a_third_of_the_requests_and_fails_the_run(flaky_server, tmp_path):
    out = tmp_path / "load.json"
    argv = ["load", "--url", flaky_server, "--model", "m", "--tokenizer", str(build_model())]
    argv += ["--workload", "throughput", "--requests", str(REQUESTS), "--warmup", "0", "--repetitions", "3"]
    assert main([*argv, "--no-metrics", "--json", str(out)]) == 1
    m = json.loads(out.read_text())["measurements"][0]
    assert m["error_count"] == REQUESTS
    assert m["metrics"]["error_rate"] == pytest.approx(1 / 3)  # was the median: 0.0
    assert m["metrics"]["requests"] == 3 * REQUESTS and m["metrics"]["requests_ok"] == 2 * REQUESTS
    assert m["verdict"] == "errors" and m["failed"]
