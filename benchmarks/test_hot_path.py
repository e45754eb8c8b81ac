"""Micro-benchmarks of the load generator's hot path (pytest-benchmark), run on purpose:

    .venv/bin/python -m pytest benchmarks/test_hot_path.py --benchmark-save=hot-path
    .venv/bin/python -m pytest benchmarks/test_hot_path.py --benchmark-compare --benchmark-compare-fail=median:25%

The second exits 1 when a step got more than 25% slower (median) than the last stored run of this
machine (benchmarks/conftest.py keeps runs per machine). What is timed:
- one streamed line through OpenAIProtocol.parse: a vLLM token chunk, a chat chunk, the usage line;
- one request's stream of 128 token events read by perfsuite.http1's connection, one HTTP chunk per
  network read (the per-token loop without the socket: de-chunking, line splitting, parse, timestamps);
- summarize over 1,000 records of 128 tokens (the step after every repetition).
"""

import asyncio
import random

import pytest

from perfsuite.http1 import _Connection
from perfsuite.loadgen import RequestRecord
from perfsuite.metrics import summarize
from perfsuite.protocols import TOKEN, OpenAIProtocol
from perfsuite.reading import StreamReading

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


class _Socket:
    """The transport under a connection that is never written to or closed here."""

    def close(self) -> None:
        raise AssertionError("the stream was read as malformed")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_read_one_chunked_stream_of_128_tokens(benchmark):
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    events = [TOKEN_LINE + b"\n\n"] * TOKENS + [USAGE_LINE + b"\n\n", b"data: [DONE]\n\n"]
    reads = [head, *map(_chunk, events), b"0\r\n\r\n"]  # one HTTP chunk per read, as from vLLM
    protocol = OpenAIProtocol()
    loop = asyncio.new_event_loop()

    async def read() -> RequestRecord:
        rec = RequestRecord(0.0, TOKENS, TOKENS)
        conn = _Connection()
        conn.connection_made(_Socket())
        done = conn.begin(StreamReading(protocol, rec))
        for data in reads:
            conn.data_received(data)
        assert done.done() and conn.reusable
        return rec

    try:
        rec = benchmark(lambda: loop.run_until_complete(read()))  # one loop step around the 131 reads
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
