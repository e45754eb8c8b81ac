"""How the load generator's requests travel: an HTTP/1.1 streaming client of its own, or aiohttp.

Both transports do one thing: POST a JSON payload and hand every block of a 200 response's body to
a perfsuite.reading.StreamReading, with the time it arrived; any other status raises
RuntimeError("HTTP <status>: <body>").

- `Http1Transport` (plain http://, the default): keep-alive connections on asyncio's own Protocol.
  Each block is timed and read in the event loop's read callback itself: no task wakes per block,
  no StreamReader queue. Chunked framing is undone in place (a per-read scan, no copy of a whole
  chunk), and the connection is reused once the final chunk has arrived.
  Measured against aiohttp on the same loads (benchmarks/client_vs_vllm.py, benchmarks/RESULTS.md).
- `AiohttpTransport`: aiohttp's ClientSession, for https:// (TLS), proxies and anything else the
  short client does not speak; also `PERFSUITE_TRANSPORT=aiohttp`.

`open_transport(base_url, headers)` picks one. Headers (an Authorization header read from the
environment) go with every request and are never logged or recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from urllib.parse import urlsplit

import aiohttp

from perfsuite.errors import UsageError
from perfsuite.reading import StreamReading

__all__ = ["Http1Transport", "AiohttpTransport", "open_transport", "transport_name", "TRANSPORTS"]

TRANSPORTS = ("http1", "aiohttp")
MAX_HEAD = 64 * 1024  # a response head larger than this is refused
MAX_ERROR_BODY = 64 * 1024  # an error response's body kept for its message (the message keeps 300 chars)
_HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _TRAILER = range(5)


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time. The response is parsed as it arrives:
    its head, then its body (chunked, Content-Length or until close), fed to `reading` for a 200."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False  # the last response ended cleanly and the connection may carry the next
        self._keep_alive = False  # what the response's head allows (HTTP/1.1, no "Connection: close")
        self.lost = False
        self._done: asyncio.Future | None = None
        self._reading: StreamReading | None = None
        self._state = _HEAD
        self._buf = b""  # a part of the head, a chunk-size line or the trailer not yet complete
        self._left = 0  # the current chunk's (or the Content-Length body's) bytes still to come
        self._crlf = 0  # bytes of the CRLF after a chunk still to skip
        self.status = 0
        self._error_body = b""
        self.received = False  # any byte of this response arrived

    def connection_made(self, transport) -> None:
        self.transport = transport

    def begin(self, reading: StreamReading) -> asyncio.Future:
        self._done = asyncio.get_running_loop().create_future()
        self._reading, self._state, self._buf = reading, _HEAD, b""
        self._left = self._crlf = self.status = 0
        self._error_body, self.received, self.reusable, self._keep_alive = b"", False, False, False
        return self._done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        done = self._done
        if done is None or done.done():  # bytes nobody asked for: this connection is not reused
            self.reusable = False
            self.transport.close()
            return
        self.received = True
        try:
            if self._state == _HEAD:
                data = self._head(self._buf + data)
                if data is None or done.done():  # incomplete, or a body-less answer (Content-Length: 0)
                    return
            if self._state == _CHUNKED:
                self._chunks(now, data)
            elif self._state == _TRAILER:
                self._trailer(data)
            elif self._state == _LENGTH:
                piece = data[: self._left]
                self._left -= len(piece)
                self._body(now, piece)
                if not self._left:
                    self._finish(reusable=self._keep_alive and len(piece) == len(data))
            else:  # _UNTIL_CLOSE
                self._body(now, data)
        except Exception as exc:  # a server error in the stream, a malformed response
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.reusable = False
        if self._done is not None and not self._done.done():
            if self._state == _UNTIL_CLOSE:
                self._finish(reusable=False)
            else:
                self._fail(ConnectionError("the server closed the connection before the response ended"))

    # --- the response, as it arrives ---
    def _head(self, data: bytes) -> bytes | None:
        """Parse the head once it is complete; the bytes after it, or None while it is incomplete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                raise ConnectionError(f"the response head is over {MAX_HEAD} bytes")
            self._buf = data
            return None
        self._buf = b""
        lines = data[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            self.status = int(rest[:3])
        except ValueError:
            raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}") from None
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        rest_bytes = data[end + 4 :]
        if 100 <= self.status < 200:  # an interim response (100 Continue): the real head follows
            return self._head(rest_bytes)
        self._keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self._state = _CHUNKED
        elif "content-length" in fields:
            self._state, self._left = _LENGTH, int(fields["content-length"])
            if not self._left:
                self._finish(self._keep_alive and not rest_bytes)
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        return rest_bytes

    def _chunks(self, now: float, data: bytes) -> None:
        """Undo the chunked framing of one read; feed its payload as one block."""
        if self._buf:
            data, self._buf = self._buf + data, b""
        elif not self._left and not self._crlf:  # the common read: exactly one whole chunk
            eol = data.find(b"\r\n")
            if eol > 0 and data.endswith(b"\r\n"):
                size = int(data[:eol].partition(b";")[0], 16)
                if size and len(data) == eol + size + 4:
                    self._body(now, data[eol + 2 : -2])
                    return
        pieces = []
        i, n = 0, len(data)
        while i < n:
            if self._left:
                j = min(n, i + self._left)
                pieces.append(data[i:j])
                self._left -= j - i
                i = j
                if not self._left:
                    self._crlf = 2
            elif self._crlf:
                skip = min(self._crlf, n - i)
                self._crlf -= skip
                i += skip
            else:
                eol = data.find(b"\r\n", i)
                if eol < 0:
                    self._buf = data[i:]
                    break
                size = int(data[i:eol].partition(b";")[0], 16)
                i = eol + 2
                if not size:
                    self._state = _TRAILER
                    break
                self._left = size
        if pieces:
            self._body(now, pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if self._state == _TRAILER:
            self._trailer(data[i:])

    def _trailer(self, data: bytes) -> None:
        """After the last chunk: the end of the (rarely present) trailer ends the response."""
        data = self._buf + data
        if data.startswith(b"\r\n"):
            self._finish(reusable=self._keep_alive and len(data) == 2)
        elif b"\r\n\r\n" in data:
            self._finish(reusable=self._keep_alive and data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1)
        elif len(data) > MAX_HEAD:
            raise ConnectionError(f"the chunked trailer is over {MAX_HEAD} bytes")
        else:
            self._buf = data

    def _body(self, now: float, block: bytes) -> None:
        if self.status == 200:
            self._reading.feed(now, block)
        elif len(self._error_body) < MAX_ERROR_BODY:
            self._error_body += block

    def _finish(self, reusable: bool) -> None:
        self._state, self._buf = _HEAD, b""
        self.reusable = reusable and not self.lost
        if self.status != 200:
            text = self._error_body.decode("utf-8", errors="replace")[:300]
            self._done.set_exception(RuntimeError(f"HTTP {self.status}: {text}"))
        else:
            self._done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        if not self._done.done():
            self._done.set_exception(exc)
        if not self.lost:
            self.transport.close()


class Http1Transport:
    """Keep-alive HTTP/1.1 connections to one http:// server, as many as are in flight (no cap: the
    load decides what is in flight). A reused connection the server had closed (an idle timeout) is
    retried once on a new one when no byte of the answer came back."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"Http1Transport: {base_url!r} is not an http://host:port URL (use AiohttpTransport)")
        self._host, self._port = parts.hostname, parts.port or 80
        host = f"[{self._host}]" if ":" in self._host else self._host
        extra = "".join(f"{_header(k)}: {_header(v)}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {host}:{self._port}\r\nAccept: */*\r\nContent-Type: application/json\r\n{extra}"
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._paths: dict[str, bytes] = {}

    async def stream(self, url: str, payload: dict, timeout_s: float, reading: StreamReading) -> None:
        body = json.dumps(payload).encode()
        request = self._request_line(url) + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        async with asyncio.timeout(timeout_s):
            for attempt in (0, 1):
                conn, reused = await self._connection()
                done = conn.begin(reading)
                conn.transport.write(request)
                try:
                    await done
                except ConnectionError:
                    if reused and not conn.received and attempt == 0:
                        continue  # the server had closed this idle connection: once more, on a new one
                    raise
                finally:
                    self._release(conn)
                return

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost and not conn.transport.is_closing():
                return conn, True
            self._open.discard(conn)
        _, conn = await asyncio.get_running_loop().create_connection(_Connection, self._host, self._port)
        self._open.add(conn)
        return conn, False

    def _release(self, conn: _Connection) -> None:
        if conn.reusable:  # set only by a clean end of the response, cleared when the connection is lost
            self._idle.append(conn)
            return
        self._open.discard(conn)
        if not conn.lost:
            conn.transport.close()

    def _request_line(self, url: str) -> bytes:
        line = self._paths.get(url)
        if line is None:
            parts = urlsplit(url)
            if (parts.hostname, parts.port or 80) != (self._host, self._port):
                raise UsageError(f"Http1Transport for {self._host}:{self._port} was asked for {url!r}")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            line = self._paths[url] = f"POST {target} HTTP/1.1\r\n{self._head}".encode("latin-1")
        return line

    async def close(self) -> None:
        for conn in self._open:
            if not conn.lost:
                conn.transport.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks

    async def __aenter__(self) -> Http1Transport:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class AiohttpTransport:
    """aiohttp's ClientSession: TLS, proxies, everything; one task wake and queue hop per block."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers)

    async def stream(self, url: str, payload: dict, timeout_s: float, reading: StreamReading) -> None:
        async with self._session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:300]}")
            feed = reading.feed
            async for block in resp.content.iter_any():
                if feed(time.perf_counter(), block):
                    return

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def transport_name() -> str:
    """The transport asked for: PERFSUITE_TRANSPORT, else "http1" (https:// URLs always use aiohttp)."""
    kind = os.environ.get("PERFSUITE_TRANSPORT") or "http1"
    if kind not in TRANSPORTS:
        raise UsageError(f"PERFSUITE_TRANSPORT={kind!r}: must be one of {', '.join(TRANSPORTS)}")
    return kind


def open_transport(base_url: str, headers: dict[str, str] | None = None):
    """The transport for `base_url`: Http1Transport for http:// unless PERFSUITE_TRANSPORT says
    "aiohttp"; AiohttpTransport for anything else (https://)."""
    if transport_name() == "http1" and urlsplit(base_url).scheme == "http":
        return Http1Transport(base_url, headers)
    return AiohttpTransport(headers)


def _header(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise UsageError("a request header holds a line break: fix the header (its value is not shown)")
    return text
