"""A streaming server that costs almost nothing per token, so that the client is what a load measures
(benchmarks/client_capacity.py; its unit test: tests/unit/test_client_capacity_server.py).

It answers POST /v1/completions with vLLM's stream for `"stream": true, "stream_options":
{"include_usage": true}`: HTTP/1.1 chunked, one SSE event per chunk, one `data: {...}` event per
token (choices[0].text, the JSON vLLM 0.32 writes, field for field), a final usage event with
prompt_tokens and completion_tokens, then `data: [DONE]`. The counts satisfy perfsuite's exact-length
check without a tokenizer: completion_tokens is the request's max_tokens, prompt_tokens the number
the prompt starts with (the benchmark writes "<input tokens>:" first). GET /health answers 200.

How it differs from vLLM (what the client sees):
- the bodies are built once per (prompt tokens, max_tokens) and reused: every request gets the same
  id, `created` and text (vLLM: its own id, the model's tokens);
- --mode body: the whole response in one write (on loopback, one or a few TCP segments): the client
  reads many tokens per read, fewer reads per token than against any real server;
- --mode events: one write (one send(), TCP_NODELAY) per event, back to back: segments as vLLM's
  server writes them, but with no time between them, so a busy client still finds several in one read;
- --mode paced: one event per stream every --itl-ms (a decode step): every active stream gets its next
  token on each tick, as from a continuous-batching engine, the first one tick after the request
  arrived; a client that keeps up reads one token per read, as against vLLM on a GPU.

Standard library only (uvloop when importable: it comes with vLLM's uvicorn[standard]); binds
127.0.0.1. Run: python benchmarks/_stream_server.py --port 8000 [--mode body|events|paced] [--itl-ms 5]
[--cpu 0]. SIGTERM or SIGINT stops it. Several processes can serve one port (SO_REUSEPORT): the
kernel spreads the connections among them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
import uuid

MODES = ("body", "events", "paced")
MODEL = "capacity"
WORDS = (" the", " of", " and", " a", " to", " in", " is", " it", " that", " was")
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
END = b"0\r\n\r\n"
MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk, as uvicorn writes each SSE event vLLM yields."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def events(prompt_tokens: int, completion_tokens: int) -> list[bytes]:
    """The stream's events, each one HTTP chunk: `completion_tokens` token events, usage, [DONE]."""
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    out = []
    for i in range(completion_tokens):
        last = i == completion_tokens - 1
        choice = {
            "index": 0,
            "text": WORDS[i % len(WORDS)],
            "logprobs": None,
            "finish_reason": "length" if last else None,
            "stop_reason": None,
            "prompt_token_ids": None,
            "token_ids": None,
        }
        event = {"id": rid, "object": "text_completion", "created": created, "model": MODEL, "choices": [choice]}
        out.append(_chunk(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"))
    usage = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }
    final = {"id": rid, "object": "text_completion", "created": created, "model": MODEL, "choices": [], "usage": usage}
    out.append(_chunk(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n"))
    out.append(_chunk(b"data: [DONE]\n\n"))
    return out


class _Bodies:
    """Responses built once per (prompt tokens, max_tokens): a whole body, or its events."""

    def __init__(self) -> None:
        self._events: dict[tuple[int, int], list[bytes]] = {}
        self._bodies: dict[tuple[int, int], bytes] = {}

    def events(self, key: tuple[int, int]) -> list[bytes]:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = events(*key)
        return ev

    def body(self, key: tuple[int, int]) -> bytes:
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = HEAD + b"".join(self.events(key)) + END
        return body


def _error(status: str, message: str) -> bytes:
    body = json.dumps({"error": {"message": message}}).encode()
    return f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


def prompt(input_tokens: int) -> str:
    """A prompt this server counts as `input_tokens` tokens: the number, ':', then that many words."""
    return f"{input_tokens}:" + " tok" * input_tokens


def request_counts(body: bytes) -> tuple[int, int]:
    """(prompt tokens, max_tokens) of a completions request: the number before the prompt's first ':'."""
    req = json.loads(body)
    head, sep, _ = req["prompt"].partition(":")
    if not sep or not head.isdigit():
        raise ValueError('the prompt must start with its token count and ":" (e.g. "128: ...")')
    n_out = req["max_tokens"]
    if not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {n_out!r}")
    return int(head), n_out


class Ticker:
    """The paced mode's decode step: every `itl_s`, each active stream gets its next event."""

    def __init__(self, itl_s: float) -> None:
        self.itl_s = itl_s
        self.streams: list[list] = []  # [transport, events, next index]
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def add(self, transport: asyncio.Transport, evs: list[bytes]) -> None:
        self.streams.append([transport, evs, 0])
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._next = loop.time() + self.itl_s
            self._handle = loop.call_at(self._next, self._tick)

    def _tick(self) -> None:
        alive = []
        for s in self.streams:
            transport, evs, i = s
            if transport.is_closing():
                continue
            transport.write(HEAD + evs[0] if i == 0 else evs[i])
            i += 1
            if i < len(evs) - 2:  # the usage event and [DONE] follow the last token at once
                s[2] = i
                alive.append(s)
            else:
                transport.write(b"".join(evs[i:]) + END)
        self.streams = alive
        if alive:
            loop = asyncio.get_running_loop()
            self._next = max(self._next + self.itl_s, loop.time())  # no catch-up burst after a late tick
            self._handle = loop.call_at(self._next, self._tick)
        else:
            self._handle = None


class StreamProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 requests one after another (keep-alive), parsed by hand."""

    def __init__(self, mode: str, bodies: _Bodies, ticker: Ticker | None) -> None:
        self.mode, self.bodies, self.ticker = mode, bodies, ticker
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER:
                    self._close(_error("431 Request Header Fields Too Large", "header too large"))
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length > MAX_BODY:
                self._close(_error("413 Payload Too Large", "body too large"))
                return
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            self._answer(head[0], body)

    def _answer(self, request_line: str, body: bytes) -> None:
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0]
        if method == "GET" and path == "/health":
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return
        if method != "POST" or path != "/v1/completions":
            self.transport.write(_error("404 Not Found", f"no route {method} {path}"))
            return
        try:
            key = request_counts(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.transport.write(_error("400 Bad Request", str(exc)))
            return
        if self.mode == "body":
            self.transport.write(self.bodies.body(key))
        elif self.mode == "events":
            write = self.transport.write
            evs = self.bodies.events(key)
            write(HEAD + evs[0])
            for ev in evs[1:-2]:
                write(ev)
            write(b"".join(evs[-2:]) + END)
        else:
            self.ticker.add(self.transport, self.bodies.events(key))

    def _close(self, response: bytes) -> None:
        self.transport.write(response)
        self.transport.close()


async def serve(port: int, mode: str, itl_ms: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bodies, ticker = _Bodies(), Ticker(itl_ms / 1000.0) if mode == "paced" else None
    server = await loop.create_server(
        lambda: StreamProtocol(mode, bodies, ticker),
        "127.0.0.1",
        port,
        backlog=4096,
        reuse_address=True,
        reuse_port=True,  # several processes may serve one port (one per core), the kernel spreads connections
    )
    print(f"stream server on 127.0.0.1:{port} mode={mode} loop={type(loop).__module__}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=MODES, default="body")
    ap.add_argument("--itl-ms", type=float, default=5.0, help="paced mode: milliseconds between a stream's tokens")
    ap.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    args = ap.parse_args(argv)
    if args.itl_ms <= 0:
        ap.error("--itl-ms must be > 0")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.mode, args.itl_ms))
    else:
        uvloop.run(serve(args.port, args.mode, args.itl_ms))


if __name__ == "__main__":
    main()
