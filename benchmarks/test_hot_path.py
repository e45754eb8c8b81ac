"""Micro-benchmarks of the load generator's hot path (pytest-benchmark), run on purpose:

    .venv/bin/python -m pytest benchmarks/test_hot_path.py --benchmark-save=hot-path
    .venv/bin/python -m pytest benchmarks/test_hot_path.py --benchmark-compare --benchmark-compare-fail=median:25%

The second exits 1 when a step got more than 25% slower (median) than the last stored run of this
machine (benchmarks/conftest.py keeps runs per machine). What is timed:
- one streamed line through OpenAIProtocol.parse: a vLLM token chunk, a chat chunk, the usage line;
- _read over one request's stream of 128 token lines, one network block each (the per-token loop);
- summarize over 1,000 records of 128 tokens (the step after every repetition).
"""

import asyncio
import random

import pytest

from perfsuite.loadgen import RequestRecord, _read
from perfsuite.metrics import summarize
from perfsuite.protocols import TOKEN, OpenAIProtocol

TOKEN_LINE = (
    b'data: {"id":"cmpl-3f2a9c0e8b7d4e6f9a1b2c3d4e5f6a7b","object":"text_completion","created":1764681234,'
    b'"model":"tiny-llama-87c38eda3ab2","choices":[{"index":0,"text":" the","logprobs":null,'
    b'"finish_reason":null,"stop_reason":null}],"usage":null}'
)
CHAT_LINE = (
    b'data: {"id":"chatcmpl-3f2a9c0e8b7d4e6f","object":"chat.completion.chunk","created":1764681234,'
    b'"model":"tiny-llama-87c38eda3ab2","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,'
    b'"finish_reason":null}],"usage":null}'
)
USAGE_LINE = (
    b'data: {"id":"cmpl-3f2a9c0e8b7d4e6f9a1b2c3d4e5f6a7b","object":"text_completion","created":1764681234,'
    b'"model":"tiny-llama-87c38eda3ab2","choices":[],"usage":{"prompt_tokens":128,"total_tokens":256,'
    b'"completion_tokens":128,"prompt_tokens_details":null}}'
)
TOKENS = 128


def test_parse_a_vllm_token_line(benchmark):
    assert benchmark(OpenAIProtocol().parse, TOKEN_LINE) is TOKEN


def test_parse_a_vllm_chat_line(benchmark):
    assert benchmark(OpenAIProtocol("chat").parse, CHAT_LINE) is TOKEN


def test_parse_the_usage_line(benchmark):
    assert benchmark(OpenAIProtocol().parse, USAGE_LINE).output_tokens == TOKENS


class _Stream:
    """A response whose body arrives as one network block per line, as a paced server sends it."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.content = self
        self._blocks = blocks

    async def iter_any(self):
        for block in self._blocks:
            yield block


def test_read_one_stream_of_128_tokens(benchmark):
    blocks = [TOKEN_LINE + b"\n\n"] * TOKENS + [USAGE_LINE + b"\n\n", b"data: [DONE]\n\n"]
    protocol = OpenAIProtocol()
    loop = asyncio.new_event_loop()

    def read_one() -> RequestRecord:
        rec = RequestRecord(0.0, TOKENS, TOKENS)
        loop.run_until_complete(_read(_Stream(blocks), protocol, rec))
        return rec

    try:
        rec = benchmark(read_one)
    finally:
        loop.close()
    assert len(rec.chunk_times) == TOKENS and rec.output_tokens == TOKENS


@pytest.fixture(scope="module")
def records() -> list[RequestRecord]:
    rng = random.Random(0)
    out = []
    for i in range(1000):
        send = i * 0.01
        times = [send + 0.02 + k * 0.003 + rng.random() * 1e-3 for k in range(TOKENS)]
        rec = RequestRecord(send, TOKENS, TOKENS, first_token=times[0], end=times[-1], chunk_times=times)
        rec.prompt_tokens = rec.output_tokens = TOKENS
        out.append(rec)
    return out


def test_summarize_1000_records(benchmark, records):
    metrics = benchmark(summarize, records, 10.0)
    assert metrics["requests_ok"] == 1000 and metrics["itl_p50_ms"] > 0
