"""The load generator: asyncio + aiohttp, streaming OpenAI-compatible completions.

It sends requests by one of three arrival processes (closed loop of N concurrent users, Poisson
arrivals, constant rate), times every streamed chunk, and takes token counts from the server's
usage report, checking them against what was asked for.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field

import aiohttp

from perfsuite.errors import UsageError
from perfsuite.workloads import RequestSpec

__all__ = ["Load", "Endpoint", "RequestRecord", "run_load", "OpenAIProtocol", "JSONLinesProtocol", "TGIProtocol"]


@dataclass(frozen=True)
class Load:
    """How requests arrive, and how many are counted.

    arrival: "closed" (concurrency users, each sends its next request when the last ends),
    "poisson" (exponential gaps at `rate` per second) or "constant" (one every 1/rate s).
    For open arrivals `concurrency` caps the requests in flight (None: no cap).
    Stop after `requests` measured requests, or after `duration_s` seconds of sending.
    """

    arrival: str = "closed"
    concurrency: int | None = 8
    rate: float | None = None
    requests: int | None = 64
    duration_s: float | None = None
    warmup_requests: int = 8
    seed: int = 0
    request_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.arrival not in ("closed", "poisson", "constant"):
            raise UsageError(f"Load.arrival={self.arrival!r}: use 'closed', 'poisson' or 'constant'")
        if self.arrival == "closed" and not (self.concurrency and self.concurrency > 0):
            raise UsageError("Load(arrival='closed') needs concurrency >= 1")
        if self.arrival != "closed" and not (self.rate and self.rate > 0):
            raise UsageError(f"Load(arrival={self.arrival!r}) needs rate > 0 (requests per second)")
        if not self.requests and not self.duration_s:
            raise UsageError("Load needs requests=N or duration_s=S to know when to stop")

    @classmethod
    def closed(cls, concurrency: int, **kw) -> Load:
        return cls(arrival="closed", concurrency=concurrency, **kw)

    @classmethod
    def poisson(cls, rate: float, **kw) -> Load:
        kw.setdefault("concurrency", None)
        return cls(arrival="poisson", rate=rate, **kw)

    @classmethod
    def constant(cls, rate: float, **kw) -> Load:
        kw.setdefault("concurrency", None)
        return cls(arrival="constant", rate=rate, **kw)

    def label(self) -> str:
        what = f"c{self.concurrency}" if self.arrival == "closed" else f"{self.arrival}{self.rate:g}/s"
        count = f"n{self.requests}" if self.requests else f"{self.duration_s:g}s"
        return f"{what}-{count}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Endpoint:
    """A running OpenAI-compatible server: where it is and the model name it serves."""

    base_url: str
    model: str


@dataclass
class RequestRecord:
    """What happened to one request. Times are time.perf_counter() seconds."""

    send: float
    expected_input: int
    expected_output: int
    first_token: float | None = None
    end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _lines(pending: bytes, block: bytes) -> tuple[list[bytes], bytes]:
    *lines, pending = (pending + block).split(b"\n")
    return lines, pending


def _prompt(api: str, spec: RequestSpec) -> dict:
    """The request's text as the api takes it: {"messages": [...]} for chat, else {"prompt": "..."}."""
    return {"messages": spec.messages} if api == "chat" else {"prompt": spec.prompt}


class OpenAIProtocol:
    """Streaming /v1/completions or /v1/chat/completions, vLLM's extensions for exact lengths."""

    def __init__(self, api: str = "completions") -> None:
        self.api = api
        self.path = "/v1/chat/completions" if api == "chat" else "/v1/completions"

    def payload(self, model: str, spec: RequestSpec) -> dict:
        body = {
            "model": model,
            "max_tokens": spec.output_tokens,
            "min_tokens": spec.output_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return body | _prompt(self.api, spec)

    async def consume(self, response: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        """Read the SSE stream into `rec`: the arrival time of every event with choices (its text may be
        empty, e.g. for special tokens; vLLM's own client counts it too), token counts from the usage event.

        Network blocks are split into lines by hand (cheaper than aiohttp's readline), and each event is
        timed at the arrival of the block that completed it."""
        pending = b""
        async for block in response.content.iter_any():
            now = time.perf_counter()
            lines, pending = _lines(pending, block)
            for line in lines:
                if not line.startswith(b"data:"):
                    continue  # blank separators and ": ping" comments
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise RuntimeError(f"server error in stream: {event['error']}")
                if event.get("choices"):
                    if rec.first_token is None:
                        rec.first_token = now
                    rec.chunk_times.append(now)
                usage = event.get("usage")
                if usage:
                    rec.prompt_tokens = usage.get("prompt_tokens")
                    rec.output_tokens = usage.get("completion_tokens")


class JSONLinesProtocol:
    """perfsuite's TorchServe handler: POST /predictions/NAME, a chunked response of JSON lines,
    {"text"} per token, then {"usage": {...}}; {"error"} on failure (torchserve_handler.py)."""

    def __init__(self, path: str, api: str = "completions") -> None:
        self.api = api
        self.path = path

    def payload(self, model: str, spec: RequestSpec) -> dict:
        body = {"max_tokens": spec.output_tokens}
        return body | _prompt(self.api, spec)

    async def consume(self, response: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        pending = b""
        async for block in response.content.iter_any():
            now = time.perf_counter()
            lines, pending = _lines(pending, block)
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise RuntimeError(f"server error in stream: {event['error']}")
                if "text" in event:
                    if rec.first_token is None:
                        rec.first_token = now
                    rec.chunk_times.append(now)
                if "usage" in event:
                    rec.prompt_tokens = event["usage"].get("prompt_tokens")
                    rec.output_tokens = event["usage"].get("completion_tokens")


class TGIProtocol:
    """TGI's native POST /generate_stream: SSE `data:{...}` events with no space and no [DONE], one
    per token; the last carries `details.generated_tokens`; errors arrive in-stream as {error, error_type}.

    TGI has no ignore_eos and reports no prompt length in a stream, so the output length is what
    `details` says (a request may end early at EOS) and the input length is not checked."""

    path = "/generate_stream"
    exact_lengths = False

    def __init__(self, api: str = "completions") -> None:
        if api != "completions":
            raise UsageError("TGI's /generate_stream takes a prompt; for chat workloads use its OpenAI route")
        self.api = api

    def payload(self, model: str, spec: RequestSpec) -> dict:
        params = {"max_new_tokens": spec.output_tokens, "details": True, "do_sample": False}
        return {"inputs": spec.prompt, "parameters": params}

    async def consume(self, response: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        pending = b""
        async for block in response.content.iter_any():
            now = time.perf_counter()
            lines, pending = _lines(pending, block)
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise RuntimeError(f"server error in stream ({event.get('error_type')}): {event['error']}")
                if event.get("token") is not None:
                    if rec.first_token is None:
                        rec.first_token = now
                    rec.chunk_times.append(now)
                details = event.get("details")
                if details:
                    rec.output_tokens = details.get("generated_tokens")
                    rec.prompt_tokens = rec.expected_input  # not reported: taken as sent


async def _send(session, endpoint: Endpoint, protocol, spec: RequestSpec, timeout_s: float) -> RequestRecord:
    rec = RequestRecord(send=time.perf_counter(), expected_input=spec.input_tokens, expected_output=spec.output_tokens)
    try:
        async with session.post(
            endpoint.base_url + protocol.path,
            json=protocol.payload(endpoint.model, spec),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if resp.status != 200:
                body = (await resp.text())[:300]
                raise RuntimeError(f"HTTP {resp.status}: {body}")
            await protocol.consume(resp, rec)
        # The request ends at its last token, as in vLLM's client (the usage event carries none).
        rec.end = rec.chunk_times[-1] if rec.chunk_times else time.perf_counter()
        if rec.output_tokens is None:
            raise RuntimeError("the stream ended without a token count (usage or details)")
        if rec.first_token is None:
            raise RuntimeError("the stream carried no tokens")
        exact = getattr(protocol, "exact_lengths", True)
        if exact and (rec.output_tokens != spec.output_tokens or rec.prompt_tokens != spec.input_tokens):
            raise RuntimeError(
                f"token counts differ: asked {spec.input_tokens} in / {spec.output_tokens} out, "
                f"server counted {rec.prompt_tokens} in / {rec.output_tokens} out"
            )
    except asyncio.TimeoutError:
        rec.end = time.perf_counter()
        rec.error = f"timeout after {timeout_s:g}s"
    except Exception as exc:  # one failed request is a measurement, not a crash
        rec.end = time.perf_counter()
        rec.error = f"{type(exc).__name__}: {exc}"[:500]
    return rec


def _arrival_gaps(load: Load, rng: random.Random):
    while True:
        yield rng.expovariate(load.rate) if load.arrival == "poisson" else 1.0 / load.rate


async def _closed(session, endpoint, protocol, specs, load: Load, count: int | None, stop_at: float | None):
    records: list[RequestRecord] = []
    it = iter(specs)
    issued = 0

    async def user():
        nonlocal issued
        while (count is None or issued < count) and (stop_at is None or time.perf_counter() < stop_at):
            spec = next(it, None)
            if spec is None:
                return
            issued += 1
            records.append(await _send(session, endpoint, protocol, spec, load.request_timeout_s))

    await asyncio.gather(*(user() for _ in range(load.concurrency)))
    return records


async def _open(session, endpoint, protocol, specs, load: Load, count: int | None, stop_at: float | None):
    rng = random.Random(load.seed)
    gate = asyncio.Semaphore(load.concurrency) if load.concurrency else None
    tasks = []

    async def one(spec):
        if gate is None:
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s)
        async with gate:
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s)

    next_at = time.perf_counter()
    for spec, gap in zip(specs, _arrival_gaps(load, rng)):
        if (count is not None and len(tasks) >= count) or (stop_at is not None and next_at >= stop_at):
            break
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(spec)))
        next_at += gap
    return list(await asyncio.gather(*tasks))


async def run_load(
    endpoint: Endpoint, protocol, specs: list[RequestSpec], load: Load, headers: dict[str, str] | None = None
):
    """Warm up, then send the measured requests. Returns (records, wall seconds of the measured phase).

    `specs` must hold at least warmup_requests + requests items (in duration mode it is cycled).
    `headers` (e.g. an Authorization header read from the environment) go with every request and
    are never recorded.
    """
    run = _closed if load.arrival == "closed" else _open
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        if load.warmup_requests:
            warm = specs[: load.warmup_requests]
            conc = min(load.concurrency or load.warmup_requests, load.warmup_requests)
            warm_load = Load.closed(
                conc, requests=len(warm), warmup_requests=0, request_timeout_s=load.request_timeout_s
            )
            await _closed(session, endpoint, protocol, warm, warm_load, len(warm), None)
        measured = specs[load.warmup_requests :]
        if load.duration_s:
            measured = _cycle(measured)
        start = time.perf_counter()
        stop_at = start + load.duration_s if load.duration_s else None
        records = await run(session, endpoint, protocol, measured, load, load.requests, stop_at)
        wall = time.perf_counter() - start
    return records, wall


def _cycle(items):
    while True:
        yield from items
