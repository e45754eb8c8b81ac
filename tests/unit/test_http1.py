"""perfsuite.http1's own HTTP/1.1 client against a loopback server that writes scripted bytes.

The framing cases a real server may produce (chunks split anywhere, chunk extensions, trailers,
Content-Length and until-close bodies, interim 100 responses, keep-alive reuse, a server that closes)
are checked byte for byte here; the load generator over real servers is tests/integration.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from perfsuite.errors import UsageError
from perfsuite.http1 import AiohttpTransport, Http1Transport, open_transport
from perfsuite.loadgen import RequestRecord
from perfsuite.protocols import OpenAIProtocol
from perfsuite.reading import StreamReading

TOKEN_EVENT = b'data: {"choices":[{"index":0,"text":"x"}]}\n\n'
USAGE_EVENT = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}\n\n'
STREAM = TOKEN_EVENT * 3 + USAGE_EVENT + b"data: [DONE]\n\n"
EVENTS = [event + b"\n\n" for event in STREAM.split(b"\n\n")[:-1]]  # one chunk per event, as vLLM writes
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunked(*parts: bytes, ext: bytes = b"", trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts)
    return body + b"0\r\n" + trailer + b"\r\n"


class Scripted:
    """A loopback server: each connection answers its n-th request with `answers[k]` (k counts every
    request of the server), written in pieces of `split` bytes (0: in one write), then closes when
    `close_after` says so. Records each request's head and body."""

    def __init__(self, answers: list[bytes], split: int = 0, close_after: bool = False) -> None:
        self.answers, self.split, self.close_after = answers, split, close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                sizes = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
                length = int(sizes[0].split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                step = self.split or len(answer)
                for i in range(0, len(answer), step):
                    writer.write(answer[i : i + step])
                    await writer.drain()
                    if self.split:
                        await asyncio.sleep(0.001)  # one read per piece
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


async def _stream(base: str, transport=None, timeout_s: float = 5.0) -> RequestRecord:
    rec = RequestRecord(0.0, 4, 3)
    reading = StreamReading(OpenAIProtocol(), rec)
    own = transport is None
    transport = transport or Http1Transport(base)
    try:
        await transport.stream(base + "/v1/completions", {"prompt": "p", "max_tokens": 3}, timeout_s, reading)
    finally:
        reading.finish()
        if own:
            await transport.close()
    return rec


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("split", [0, 1, 2, 3, 7, 64])
def test_a_chunked_stream_split_anywhere_reads_every_token_and_the_counts(split):
    async def go():
        async with Scripted([CHUNKED_HEAD + chunked(*EVENTS)], split=split) as base:
            return await _stream(base)

    rec = run(go())
    assert (len(rec.chunk_times), rec.prompt_tokens, rec.output_tokens) == (3, 4, 3)


def test_chunk_boundaries_inside_an_event_and_chunk_extensions_are_undone():
    # chunks cut events in odd places (as a proxy may), with `;ext` after the sizes and a trailer
    parts = [STREAM[i : i + 13] for i in range(0, len(STREAM), 13)]
    answer = CHUNKED_HEAD + chunked(*parts, ext=b";name=value", trailer=b"x-trailer: 1\r\n")

    async def go():
        async with Scripted([answer], split=5) as base:
            return await _stream(base)

    rec = run(go())
    assert (len(rec.chunk_times), rec.output_tokens) == (3, 3)


def test_events_in_one_read_share_its_arrival_time_and_reads_differ():
    async def go():
        async with Scripted([CHUNKED_HEAD + chunked(TOKEN_EVENT * 2)], split=0) as base:
            one_read = await _stream(base)
        async with Scripted([CHUNKED_HEAD + chunked(TOKEN_EVENT, TOKEN_EVENT, USAGE_EVENT)], split=40) as base:
            many_reads = await _stream(base)
        return one_read, many_reads

    one_read, many_reads = run(go())
    assert len(set(one_read.chunk_times)) == 1 and len(one_read.chunk_times) == 2
    assert many_reads.chunk_times[0] < many_reads.chunk_times[1]


def test_content_length_and_until_close_bodies_are_read_to_their_end():
    plain = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(STREAM), STREAM)
    old = b"HTTP/1.0 200 OK\r\n\r\n" + STREAM

    async def go():
        async with Scripted([plain], split=9) as base:
            a = await _stream(base)
        async with Scripted([old], split=9, close_after=True) as base:
            b = await _stream(base)
        return a, b

    for rec in run(go()):
        assert (len(rec.chunk_times), rec.output_tokens) == (3, 3)


def test_an_interim_100_response_is_skipped():
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED_HEAD + chunked(STREAM)

    async def go():
        async with Scripted([answer]) as base:
            return await _stream(base)

    assert run(go()).output_tokens == 3


def test_an_error_status_raises_with_the_status_and_the_body_and_the_connection_is_reused():
    body = json.dumps({"error": "model not found"}).encode()
    error = b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    async def go():
        async with Scripted([error, CHUNKED_HEAD + chunked(STREAM)]) as server_base:
            transport = Http1Transport(server_base)
            try:
                with pytest.raises(RuntimeError, match=r"HTTP 404: .*model not found"):
                    await _stream(server_base, transport)
                ok = await _stream(server_base, transport)
            finally:
                await transport.close()
        return ok

    assert run(go()).output_tokens == 3


def test_keep_alive_reuses_one_connection_and_sends_the_request_as_asked():
    server = Scripted([CHUNKED_HEAD + chunked(STREAM)])

    async def go():
        async with server as base:
            transport = Http1Transport(base + "/", headers={"Authorization": "Bearer s3cret"})
            try:
                for _ in range(3):
                    await _stream(base, transport)
            finally:
                await transport.close()

    run(go())
    assert server.connections == 1 and len(server.requests) == 3
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer s3cret" in head and json.loads(body) == {"prompt": "p", "max_tokens": 3}


def test_an_idle_connection_the_server_closed_is_retried_on_a_new_one():
    server = Scripted([CHUNKED_HEAD + chunked(STREAM)], close_after=True)  # closes after every answer

    async def go():
        async with server as base:
            transport = Http1Transport(base)
            try:
                first = await _stream(base, transport)
                await asyncio.sleep(0.05)  # the close arrives while the connection is idle
                second = await _stream(base, transport)
            finally:
                await transport.close()
        return first, second

    assert [r.output_tokens for r in run(go())] == [3, 3]
    assert server.connections == 2


def test_a_server_that_closes_mid_stream_fails_the_request_naming_it():
    cut = CHUNKED_HEAD + chunked(STREAM)[:60]

    async def go():
        async with Scripted([cut], close_after=True) as base:
            return await _stream(base)

    with pytest.raises(ConnectionError, match="closed the connection before the response ended"):
        run(go())


def test_a_stalled_server_times_out_within_the_deadline():
    stalled = CHUNKED_HEAD + chunked(TOKEN_EVENT)[:-5]  # never ends

    async def go():
        async with Scripted([stalled]) as base:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await _stream(base, timeout_s=0.3)
            return loop.time() - t0

    assert run(go()) < 2.0


def test_a_malformed_response_is_a_connection_error():
    async def go():
        async with Scripted([b"SSH-2.0-OpenSSH\r\n\r\n"]) as base:
            return await _stream(base)

    with pytest.raises(ConnectionError, match="not an HTTP response"):
        run(go())


def test_a_header_with_a_line_break_is_refused_without_showing_it():
    with pytest.raises(UsageError, match="line break") as err:
        Http1Transport("http://127.0.0.1:1", headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    assert "Bearer" not in str(err.value)


def test_https_and_the_environment_choose_aiohttp(monkeypatch):
    async def go():
        transports = [open_transport("https://example.invalid"), open_transport("http://127.0.0.1:1")]
        monkeypatch.setenv("PERFSUITE_TRANSPORT", "aiohttp")
        transports.append(open_transport("http://127.0.0.1:1"))
        for t in transports:
            await t.close()
        return [type(t) for t in transports]

    assert run(go()) == [AiohttpTransport, Http1Transport, AiohttpTransport]
    monkeypatch.setenv("PERFSUITE_TRANSPORT", "curl")
    with pytest.raises(UsageError, match="PERFSUITE_TRANSPORT='curl'"):
        open_transport("http://127.0.0.1:1")
