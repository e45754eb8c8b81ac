"""The load generator: asyncio + aiohttp, one stream-reading loop for every protocol (perfsuite.protocols).

It sends requests by one of three arrival processes (closed loop of N concurrent users, Poisson
arrivals, constant rate), times every streamed chunk, and takes token counts from the server's
usage report, checking them against what was asked for. It also watches itself (ClientStats:
send lag, event-loop lag, achieved rate, CPU), and client_saturation says when a run measured the
client rather than the server.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np

from perfsuite.errors import UsageError
from perfsuite.protocols import TOKEN, EventKind, StreamProtocol
from perfsuite.workloads import RequestSpec

__all__ = [
    "Load",
    "Endpoint",
    "RequestRecord",
    "run_load",
    "LoadRun",
    "ClientStats",
    "ClientLimits",
    "client_saturation",
]


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
        if self.concurrency is not None and not (_is_int(self.concurrency) and self.concurrency >= 1):
            raise UsageError(f"Load.concurrency={self.concurrency!r}: must be an integer >= 1 (None: no cap)")
        if self.arrival == "closed" and self.concurrency is None:
            raise UsageError("Load.concurrency=None: a closed loop needs concurrency >= 1 (the number of users)")
        if self.arrival != "closed" and not _positive(self.rate):
            raise UsageError(f"Load.rate={self.rate!r}: Load(arrival={self.arrival!r}) needs a finite rate > 0 (req/s)")
        if self.requests is not None and not (_is_int(self.requests) and self.requests >= 0):
            raise UsageError(f"Load.requests={self.requests!r}: must be an integer >= 0 (or None with duration_s)")
        if not (_is_int(self.warmup_requests) and self.warmup_requests >= 0):
            raise UsageError(f"Load.warmup_requests={self.warmup_requests!r}: must be an integer >= 0 (0: no warm-up)")
        if self.duration_s is not None and not (_finite(self.duration_s) and self.duration_s >= 0):
            raise UsageError(f"Load.duration_s={self.duration_s!r}: must be a finite number of seconds >= 0 (or None)")
        if not _positive(self.request_timeout_s):
            raise UsageError(
                f"Load.request_timeout_s={self.request_timeout_s!r}: must be a finite number of seconds > 0 "
                "(how long one request may take before it counts as failed, e.g. 120)"
            )
        if not _is_int(self.seed):
            raise UsageError(f"Load.seed={self.seed!r}: must be an integer (it seeds prompts and arrivals)")
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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value) -> bool:
    return _finite(value) and value > 0


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
    scheduled: float | None = None  # when it was due: see ClientStats.send_lag_p50_ms
    first_token: float | None = None
    end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


TOP_SEND_LAGS = 8  # the largest send lags each ClientStats keeps: enough to count 1% of up to 800 requests
LOOP_PROBE_S = 0.01  # how often the event-loop monitor wakes; its overshoot is the loop's lag


@dataclass(frozen=True)
class ClientStats:
    """How well the load generator kept up during the measured phase (times in ms, rates in req/s).

    send lag: how late each measured request was sent against its schedule. Open loads: its arrival
    time (the Poisson or constant schedule). Closed loops: the moment its user had read the previous
    response to the end (the first request: the start of the phase), so the lag is the client's own
    turnaround; a client too slow to read its streams shows as event-loop lag instead.
    loop lag: how late a task sleeping LOOP_PROBE_S was woken (p99 and max), the client's backlog.
    scheduled_rate: the rate the schedule itself asked for (a finite Poisson run is not exactly
    target_rate); achieved_rate: requests sent / the span of their send times. None where undefined.
    cpu_percent: this process's CPU time over the phase's wall time, in % of one core.
    """

    requests: int
    target_rate: float | None
    scheduled_rate: float | None
    achieved_rate: float | None
    send_lag_p50_ms: float | None
    send_lag_p99_ms: float | None
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    cpu_percent: float
    send_lag_top_ms: tuple[float, ...] = ()  # the TOP_SEND_LAGS largest send lags, largest first

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadRun:
    """One measured phase: the records, its wall time in seconds, and how the client kept up."""

    records: list[RequestRecord]
    wall_s: float
    client: ClientStats


@dataclass(frozen=True)
class ClientLimits:
    """Where a client counts as saturated; run_load's numbers are then the client's, not the server's.

    Measured on the project's 2-core CI machine (tests/integration/test_client_saturation.py: hf-naive,
    constant 10 req/s, the client pinned to one core at nice 19): idle, send lag p99 1.3 ms, event-loop
    lag p99 4.3 ms (max 5.0); sharing that core with a spinning process, send lag p99 129 ms, loop lag
    p99 161 ms. 50 ms sits ten times above the idle client and well under the starved one. The rate
    is compared with the schedule's own (a finite Poisson run is rarely at load.rate); the 5% allows
    for the first and last sends' own lag in a short run.

    A lag is a timing error of the measurement, so it is also judged against what is measured: the lag
    limits are at least `latency_share` of the run's TTFT p50. A server whose front end shares the
    client's core (Ray Serve's proxy on the 2-core CPU default: loop lag p99 ~95 ms against a TTFT p50
    of ~1.3 s) distorts its multi-second latencies by a few percent, which is measured, not refused;
    the same lag against vLLM's 15 ms TTFT is refused.
    """

    send_lag_p99_ms: float = 50.0
    loop_lag_p99_ms: float = 50.0
    min_rate_ratio: float = 0.95  # open loads: achieved_rate / scheduled_rate
    latency_share: float = 0.10  # a lag up to this share of the run's TTFT p50 is accepted
    # Late sends beyond the limit that are tolerated: one request's hiccup (a 16-request sweep point's p99 is
    # its slowest send: one 282 ms pause, Ray Serve at 2 req/s, refused a run whose other sends were on time),
    # or 1% of the requests, whichever is more.
    late_share: float = 0.01


def _late_sends(client: ClientStats, limit_ms: float) -> int:
    """How many measured requests were sent more than `limit_ms` late (from the largest lags kept); with
    none kept, 2 when the p99 is over the limit (one request's hiccup alone does not count)."""
    over_p99 = client.send_lag_p99_ms is not None and client.send_lag_p99_ms > limit_ms
    late = sum(1 for x in client.send_lag_top_ms if x > limit_ms)
    if not client.send_lag_top_ms or (late == TOP_SEND_LAGS and over_p99):  # none kept, or more than kept
        return max(2, int(0.01 * client.requests) + 1) if over_p99 else late
    return late


def client_saturation(
    client: ClientStats, load: Load, limits: ClientLimits = ClientLimits(), latency_ms: float | None = None
) -> str | None:
    """None when the client kept up with `load`; else why its run measures the client, not the server.
    `latency_ms` (the run's TTFT p50) raises the lag limits to `limits.latency_share` of it."""
    scaled = limits.latency_share * latency_ms if latency_ms is not None and math.isfinite(latency_ms) else 0.0
    send_limit, loop_limit = max(limits.send_lag_p99_ms, scaled), max(limits.loop_lag_p99_ms, scaled)
    found = []
    late = _late_sends(client, send_limit)
    if late > max(1, int(limits.late_share * client.requests)):
        found.append(f"send lag p99 {client.send_lag_p99_ms:.1f} ms > {send_limit:.3g} ms ({late} requests late)")
    if client.loop_lag_p99_ms is not None and client.loop_lag_p99_ms > loop_limit:
        found.append(f"event-loop lag p99 {client.loop_lag_p99_ms:.1f} ms > {loop_limit:.3g} ms")
    if (
        load.arrival != "closed"
        and client.achieved_rate is not None
        and client.scheduled_rate is not None
        and client.achieved_rate < limits.min_rate_ratio * client.scheduled_rate
    ):
        found.append(
            f"achieved rate {client.achieved_rate:.2f} req/s < {limits.min_rate_ratio:.0%} "
            f"of the scheduled {client.scheduled_rate:.2f} req/s"
        )
    if not found:
        return None
    change = "fewer users" if load.arrival == "closed" else "a lower rate"
    return (
        f"the load generator could not keep up with load {load.label()} ({'; '.join(found)}, "
        f"client CPU {client.cpu_percent:.0f}% of a core): this run measures the client, not the server. "
        f"Use {change}, give the client a core of its own, or more load-generator workers once scale-out exists."
    )


async def _watch_loop(lags: list[float]) -> None:
    """Append how late each LOOP_PROBE_S sleep wakes, in seconds, until cancelled."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(LOOP_PROBE_S)
        lags.append(time.perf_counter() - t - LOOP_PROBE_S)


def _ms(values: list[float], pct: float) -> float | None:
    return float(np.percentile(values, pct)) * 1e3 if values else None


def _rate(times: list[float]) -> float | None:
    """Events per second over the span of `times` (n - 1 gaps); None for fewer than two or no span."""
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else None


def _client_stats(records: list[RequestRecord], load: Load, lags: list[float], cpu_s: float, wall_s: float):
    send_lags = [r.send - r.scheduled for r in records if r.scheduled is not None]
    open_load = load.arrival != "closed"
    return ClientStats(
        requests=len(records),
        target_rate=load.rate if open_load else None,
        scheduled_rate=_rate([r.scheduled for r in records if r.scheduled is not None]) if open_load else None,
        achieved_rate=_rate([r.send for r in records]),
        send_lag_p50_ms=_ms(send_lags, 50),
        send_lag_p99_ms=_ms(send_lags, 99),
        loop_lag_p99_ms=_ms(lags, 99),
        loop_lag_max_ms=max(lags) * 1e3 if lags else None,
        cpu_percent=100.0 * cpu_s / wall_s if wall_s > 0 else 0.0,
        send_lag_top_ms=tuple(round(x * 1e3, 3) for x in sorted(send_lags, reverse=True)[:TOP_SEND_LAGS]),
    )


async def _read(response: aiohttp.ClientResponse, protocol: StreamProtocol, rec: RequestRecord) -> None:
    """Read the stream into `rec`: the arrival time of every token event, the counts the server reports.

    Network blocks are split into lines by hand (cheaper than aiohttp's readline), and each event is
    timed at the arrival of the block that completed it. This loop is the client's CPU cost per token."""
    parse = protocol.parse
    chunk_times = rec.chunk_times
    pending = b""
    async for block in response.content.iter_any():
        now = time.perf_counter()
        *lines, pending = (pending + block).split(b"\n")
        for line in lines:
            event = parse(line)
            if event is None:
                continue
            if event is TOKEN:
                chunk_times.append(now)
                continue
            kind = event.kind
            if kind is EventKind.DONE:
                return
            if kind is EventKind.ERROR:
                raise RuntimeError(f"server error in stream: {event.message}")
            if kind is EventKind.TOKEN:
                chunk_times.append(now)
            if event.has_counts:
                rec.prompt_tokens = event.prompt_tokens
                rec.output_tokens = event.output_tokens


async def _send(
    session,
    endpoint: Endpoint,
    protocol: StreamProtocol,
    spec: RequestSpec,
    timeout_s: float,
    send: float,
    scheduled: float,
) -> RequestRecord:
    """Send one request and read its stream; `send` is when it arrived in the client (latency counts from it)."""
    rec = RequestRecord(send, spec.input_tokens, spec.output_tokens, scheduled)
    try:
        async with session.post(
            endpoint.base_url + protocol.path,
            json=protocol.payload(endpoint.model, spec),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if resp.status != 200:
                body = (await resp.text())[:300]
                raise RuntimeError(f"HTTP {resp.status}: {body}")
            await _read(resp, protocol, rec)
        # The request ends at its last token, as in vLLM's client (the usage event carries none).
        rec.end = rec.chunk_times[-1] if rec.chunk_times else time.perf_counter()
        if rec.output_tokens is None:
            raise RuntimeError("the stream ended without a token count (usage or details)")
        if not rec.chunk_times:
            raise RuntimeError("the stream carried no tokens")
        if not protocol.exact_lengths:
            if rec.prompt_tokens is None:
                rec.prompt_tokens = spec.input_tokens  # not reported (TGI's native stream): taken as sent
        elif rec.output_tokens != spec.output_tokens or rec.prompt_tokens != spec.input_tokens:
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
    if rec.chunk_times:
        rec.first_token = rec.chunk_times[0]
    return rec


def _arrival_gaps(load: Load, repetition: int):
    """Seconds between arrivals; Poisson gaps are drawn from (load.seed, repetition), fresh for each repetition."""
    rng = random.Random(f"perfsuite-arrivals:{load.seed}:{repetition}")
    while True:
        yield rng.expovariate(load.rate) if load.arrival == "poisson" else 1.0 / load.rate


async def _closed(
    session, endpoint, protocol, specs, load: Load, count: int | None, start: float, stop_at: float | None
):
    records: list[RequestRecord] = []
    it = iter(specs)
    issued = 0

    async def user():
        nonlocal issued
        due = start  # each user's first request is due at the start, the next when the last one is read
        while (count is None or issued < count) and (stop_at is None or time.perf_counter() < stop_at):
            spec = next(it, None)
            if spec is None:
                return
            issued += 1
            send = time.perf_counter()
            records.append(await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due))
            due = time.perf_counter()

    await asyncio.gather(*(user() for _ in range(load.concurrency)))
    return records


async def _open(
    session,
    endpoint,
    protocol,
    specs,
    load: Load,
    count: int | None,
    start: float,
    stop_at: float | None,
    repetition: int,
):
    gate = asyncio.Semaphore(load.concurrency) if load.concurrency else None
    tasks = []

    async def one(spec, send: float, due: float):
        if gate is None:
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due)
        async with gate:  # time queued here for a slot counts toward the request's latency
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due)

    next_at = start
    for spec, gap in zip(specs, _arrival_gaps(load, repetition)):
        if (count is not None and len(tasks) >= count) or (stop_at is not None and next_at >= stop_at):
            break
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(spec, time.perf_counter(), next_at)))
        next_at += gap
    return list(await asyncio.gather(*tasks))


async def run_load(
    endpoint: Endpoint,
    protocol: StreamProtocol,
    specs: list[RequestSpec],
    load: Load,
    headers: dict[str, str] | None = None,
    *,
    repetition: int = 0,
) -> LoadRun:
    """Warm up, then send the measured requests, watching the client itself (ClientStats).

    `repetition` seeds the Poisson gaps together with load.seed, so that each repetition draws its own.
    `specs` must hold at least warmup_requests + requests items (in duration mode it is cycled).
    `headers` (e.g. an Authorization header read from the environment) go with every request and
    are never recorded.
    """
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        if load.warmup_requests:
            warm = specs[: load.warmup_requests]
            conc = min(load.concurrency or load.warmup_requests, load.warmup_requests)
            warm_load = Load.closed(
                conc, requests=len(warm), warmup_requests=0, request_timeout_s=load.request_timeout_s
            )
            await _closed(session, endpoint, protocol, warm, warm_load, len(warm), time.perf_counter(), None)
        measured = specs[load.warmup_requests :]
        if load.duration_s:
            measured = _cycle(measured)
        lags: list[float] = []
        monitor = asyncio.create_task(_watch_loop(lags))
        cpu0 = time.process_time()
        start = time.perf_counter()
        stop_at = start + load.duration_s if load.duration_s else None
        try:
            if load.arrival == "closed":
                records = await _closed(session, endpoint, protocol, measured, load, load.requests, start, stop_at)
            else:
                records = await _open(
                    session, endpoint, protocol, measured, load, load.requests, start, stop_at, repetition
                )
        finally:
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
    return LoadRun(records, wall, _client_stats(records, load, lags, cpu, wall))


def _cycle(items):
    while True:
        yield from items
