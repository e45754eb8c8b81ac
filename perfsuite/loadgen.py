"""The load generator: asyncio, one stream-reading loop for every protocol (perfsuite.protocols).

It sends requests by one of three arrival processes (closed loop of N concurrent users, Poisson
arrivals, constant rate), times every streamed chunk, and takes token counts from the server's
usage report, checking them against what was asked for. It also watches itself (ClientStats:
send lag, event-loop lag, achieved rate, CPU), and client_saturation says when a run measured the
client rather than the server.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from perfsuite.errors import UsageError
from perfsuite.http1 import open_transport
from perfsuite.partition import Share, partition
from perfsuite.protocols import EventKind, StreamProtocol
from perfsuite.reading import StreamReading
from perfsuite.sessions import SessionPlan
from perfsuite.stages import Stage, check_stages, total_seconds, users_at
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


ARRIVALS = ("closed", "poisson", "constant", "trace", "staged", "sessions")


@dataclass(frozen=True)
class Load:
    """How requests arrive, and how many are counted.

    arrival: "closed" (concurrency users, each sends its next request when the last ends),
    "poisson" (exponential gaps at `rate` per second), "constant" (one every 1/rate s) or "trace"
    (each request at its own time, RequestSpec.at_s, divided by `speedup`: a trace workload's replay)
    or "staged" (`stages`: rates or users over time, perfsuite.stages; Load.staged), or "sessions"
    (`concurrency` users each hold a multi-turn conversation, `think_time_s` between turns, until
    `sessions` conversations are done; perfsuite.sessions, Load.sessions).
    For open arrivals `concurrency` caps the requests in flight (None: no cap).
    Stop after `requests` measured requests, or after `duration_s` seconds of sending (a trace: at its
    end, when neither is given). `workers` > 1 sends it from that many processes (perfsuite.workers;
    perfsuite.partition says how it is split); what the server sees is the same load.
    """

    arrival: str = "closed"
    concurrency: int | None = 8
    rate: float | None = None
    requests: int | None = 64
    duration_s: float | None = None
    warmup_requests: int = 8
    seed: int = 0
    request_timeout_s: float = 120.0
    speedup: float = 1.0  # trace replay: how many times faster than recorded
    stages: tuple[Stage, ...] = ()  # a staged load's stages, in order
    sessions: int | None = None  # multi-turn sessions: how many conversations are measured
    think_time_s: float = 0.0  # multi-turn sessions: a user's pause between an answer and its next message
    workers: int = 1  # load-generator processes (perfsuite.workers); the load is split among them

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise UsageError(f"Load.arrival={self.arrival!r}: use one of {', '.join(ARRIVALS)}")
        if (self.arrival == "sessions") != (self.sessions is not None):
            raise UsageError("Load.sessions: a sessions load has a number of sessions and only it does (Load.sessions)")
        if self.sessions is not None and not (_is_int(self.sessions) and self.sessions >= 1):
            raise UsageError(f"Load.sessions={self.sessions!r}: must be an integer >= 1 (conversations to measure)")
        if not (_finite(self.think_time_s) and self.think_time_s >= 0):
            raise UsageError(f"Load.think_time_s={self.think_time_s!r}: must be a finite number of seconds >= 0")
        if (self.arrival == "staged") != bool(self.stages):
            raise UsageError("Load.stages: a staged load has stages and only a staged load does (Load.staged)")
        if self.stages:
            check_stages(self.stages)
        if not _positive(self.speedup):
            raise UsageError(f"Load.speedup={self.speedup!r}: must be a finite number > 0 (2: twice as fast)")
        if self.concurrency is not None and not (_is_int(self.concurrency) and self.concurrency >= 1):
            raise UsageError(f"Load.concurrency={self.concurrency!r}: must be an integer >= 1 (None: no cap)")
        if self.arrival in ("closed", "sessions") and self.concurrency is None:
            raise UsageError("Load.concurrency=None: a closed loop needs concurrency >= 1 (the number of users)")
        if self.arrival in ("poisson", "constant") and not _positive(self.rate):
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
        if not (_is_int(self.workers) and self.workers >= 1):
            raise UsageError(f"Load.workers={self.workers!r}: must be an integer >= 1 (load-generator processes)")
        if self.arrival == "sessions" and self.workers > 1:
            raise UsageError(
                f"Load.sessions_of(...) with workers={self.workers}: a conversation's turns are built from the "
                "server's answers with the model's tokenizer, in one process; run sessions with workers=1"
            )
        if not _is_int(self.seed):
            raise UsageError(f"Load.seed={self.seed!r}: must be an integer (it seeds prompts and arrivals)")
        if not self.requests and not self.duration_s and self.arrival not in ("trace", "staged", "sessions"):
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

    @classmethod
    def replay(cls, speedup: float = 1.0, **kw) -> Load:
        """A trace workload's requests at their recorded times / `speedup`; the whole trace unless
        `requests` or `duration_s` caps it. No warm-up unless asked (it would take the trace's first requests)."""
        kw.setdefault("concurrency", None)
        kw.setdefault("requests", None)
        kw.setdefault("warmup_requests", 0)
        return cls(arrival="trace", speedup=speedup, **kw)

    @classmethod
    def staged(cls, *stages: Stage, **kw) -> Load:
        """Stages of rates (open arrivals, Poisson, no cap on requests in flight unless `concurrency`) or
        of users (a closed loop); the load lasts as long as its stages, unless `requests` ends it sooner."""
        kind = check_stages(stages)
        if kind == "concurrency":
            kw.setdefault("concurrency", max(s.concurrency for s in stages))
        else:
            kw.setdefault("concurrency", None)
        kw.setdefault("requests", None)
        return cls(arrival="staged", stages=tuple(stages), **kw)

    @classmethod
    def sessions_of(cls, users: int, sessions: int, think_time_s: float = 0.0, **kw) -> Load:
        """`users` concurrent users, each holding one multi-turn conversation at a time (every turn
        carries the history, with the server's own answers) until `sessions` conversations are done."""
        kw.setdefault("requests", None)
        kw.setdefault("warmup_requests", 0)
        return cls(arrival="sessions", concurrency=users, sessions=sessions, think_time_s=think_time_s, **kw)

    @property
    def closed_loop(self) -> bool:
        """Users that send their next request when the last one ends (a closed loop, staged or not)."""
        if self.arrival == "staged":
            return self.stages[0].concurrency is not None
        return self.arrival in ("closed", "sessions")

    def phase_seconds(self) -> float | None:
        """How long the measured phase sends: duration_s, else a staged load's stages, else None."""
        return self.duration_s or (total_seconds(self.stages) if self.stages else None)

    def label(self) -> str:
        if self.arrival == "sessions":
            return f"sessions-u{self.concurrency}-s{self.sessions}-think{self.think_time_s:g}s"
        if self.arrival == "staged":
            unit = "users" if self.closed_loop else "rate"
            return f"staged-{unit}-{len(self.stages)}x-{total_seconds(self.stages):g}s"
        if self.arrival == "closed":
            what = f"c{self.concurrency}"
        elif self.arrival == "trace":
            what = f"trace-x{self.speedup:g}"
        else:
            what = f"{self.arrival}{self.rate:g}/s"
        count = f"-n{self.requests}" if self.requests else f"-{self.duration_s:g}s" if self.duration_s else ""
        return what + count

    @classmethod
    def from_dict(cls, d: dict) -> Load:
        """The load to_dict() described (a staged load's stages included)."""
        d = dict(d)
        d["stages"] = tuple(Stage(**s) for s in d.get("stages") or ())
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.arrival != "trace":
            del d["speedup"]  # only a replay has one (and baselines of other loads stay comparable)
        if self.stages:
            d["stages"] = [s.to_dict() for s in self.stages]
        else:
            del d["stages"]
        if self.arrival != "sessions":
            del d["sessions"], d["think_time_s"]
        if self.workers == 1:
            del d["workers"]  # the one-process default (and baselines from before workers stay comparable)
        return d


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
    # Reasoning models: the first chunk of answer text (after any thinking; None: the stream never left
    # its reasoning), how many chunks were thinking, and the server's count of reasoning tokens if given.
    first_answer: float | None = None
    reasoning_chunks: int = 0
    reasoning_tokens: int | None = None
    # Multi-turn sessions: the turn's index (0: the first), the prompt tokens the server found in its
    # prefix cache (its usage report), and how many of the prompt's tokens were the earlier turns'.
    turn: int | None = None
    cached_tokens: int | None = None
    history_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reasoned(self) -> bool:
        """Whether the model thought before (or instead of) answering."""
        return self.reasoning_chunks > 0 or bool(self.reasoning_tokens)

    @property
    def reasoning_output_tokens(self) -> int:
        """Output tokens spent thinking: the server's count (usage.completion_tokens_details.reasoning_tokens)
        when it gives one, else the streamed reasoning chunks (vLLM streams one token per chunk; its usage
        reports only the total completion_tokens). A reported 0 against streamed reasoning chunks is taken
        as a server that does not count (the chunks are used). Never more than output_tokens."""
        reported = self.reasoning_tokens
        count = reported if reported is not None and (reported or not self.reasoning_chunks) else self.reasoning_chunks
        return min(count, self.output_tokens or 0)

    @property
    def answer_output_tokens(self) -> int:
        """Output tokens of the answer: output_tokens - reasoning_output_tokens, so the two add up to the
        server's completion_tokens (the chunk count's rounding, e.g. the end-of-thinking token, lands here)."""
        return (self.output_tokens or 0) - self.reasoning_output_tokens


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
    # With several load-generator workers (perfsuite.workers): each one's own stats, pid, host, clock
    # offset and start; the fields above are then the whole load's (loop lag: the worst worker's).
    workers: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadRun:
    """One measured phase: the records, its wall time in seconds, and how the client kept up."""

    records: list[RequestRecord]
    wall_s: float
    client: ClientStats
    started: float = 0.0  # time.perf_counter() at the phase's start (the records' times are on that clock)
    started_wall: float = 0.0  # time.time() at the same moment


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
    client: ClientStats,
    load: Load,
    limits: ClientLimits = ClientLimits(),
    latency_ms: float | None = None,
    cycle_ms: float | None = None,
) -> str | None:
    """None when the client kept up with `load`; else why its run measures the client, not the server.
    `latency_ms` (the run's TTFT p50) raises the lag limits to `limits.latency_share` of it.

    `cycle_ms` (the run's end-to-end latency p50) matters for closed loops: there no latency counts a
    send lag (each starts at its send); the lag only delays the user's next request, lowering the
    offered load by lag / (request + think time + lag). So a closed loop's send lag is also accepted up to
    `limits.latency_share` of that cycle: 100 ms late against a 2 s request lowers that user's load by
    under 5%, and distorts none of its latencies."""
    scaled = _share(limits.latency_share, latency_ms)
    send_limit, loop_limit = max(limits.send_lag_p99_ms, scaled), max(limits.loop_lag_p99_ms, scaled)
    if load.closed_loop and cycle_ms is not None:
        send_limit = max(send_limit, _share(limits.latency_share, cycle_ms + 1e3 * load.think_time_s))
    found = []
    late = _late_sends(client, send_limit)
    if late > max(1, int(limits.late_share * client.requests)):
        found.append(f"send lag p99 {client.send_lag_p99_ms:.1f} ms > {send_limit:.3g} ms ({late} requests late)")
    if client.loop_lag_p99_ms is not None and client.loop_lag_p99_ms > loop_limit:
        found.append(f"event-loop lag p99 {client.loop_lag_p99_ms:.1f} ms > {loop_limit:.3g} ms")
    if (
        not load.closed_loop
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
    change = "fewer users" if load.closed_loop else "a lower rate"
    return (
        f"the load generator could not keep up with load {load.label()} ({'; '.join(found)}, "
        f"client CPU {client.cpu_percent:.0f}% of a core): this run measures the client, not the server. "
        f"Use {change}, give the client a core of its own, or more load-generator workers once scale-out exists."
    )


def _share(share: float, ms: float | None) -> float:
    return share * ms if ms is not None and math.isfinite(ms) else 0.0


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
    open_load = not load.closed_loop
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
    reading = StreamReading(protocol, rec)
    try:
        try:
            await session.stream(
                endpoint.base_url + protocol.path, protocol.payload(endpoint.model, spec), timeout_s, reading
            )
        finally:
            reading.finish()
        # The request ends at its last token, as in vLLM's client (the usage event carries none).
        rec.end = rec.chunk_times[-1] if rec.chunk_times else time.perf_counter()
        if rec.output_tokens is None:
            raise RuntimeError("the stream ended without a token count (usage or details)")
        if not rec.chunk_times:
            raise RuntimeError("the stream carried no tokens")
        if not protocol.exact_lengths:
            if rec.prompt_tokens is None:
                rec.prompt_tokens = spec.input_tokens  # not reported (TGI's native stream): taken as sent
        elif (spec.exact_output and rec.output_tokens != spec.output_tokens) or rec.prompt_tokens != spec.input_tokens:
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


async def _closed(session, endpoint, protocol, share: Share, load: Load, start: float, stop_at: float | None):
    """The share's users, each sending its next request when the last one is read, from the share's
    requests (cycled when a duration ends the load) until `share.requests` are sent or `stop_at`."""
    records: list[RequestRecord] = []
    it = itertools.cycle(share.specs) if share.cycle else iter(share.specs)
    count = share.requests
    issued = 0

    async def user(k: int):
        nonlocal issued
        due = start  # each user's first request is due at the start, the next when the last one is read
        while (count is None or issued < count) and (stop_at is None or time.perf_counter() < stop_at):
            if load.stages:  # a staged load: user k sends only while the stage has more than k users
                wait = _until_active(load.stages, k, time.perf_counter() - start)
                if wait is None:
                    return
                if wait > 0:
                    await asyncio.sleep(wait)
                    due = time.perf_counter()
                    continue
            spec = next(it, None)
            if spec is None:
                return
            issued += 1
            send = time.perf_counter()
            records.append(await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due))
            due = time.perf_counter()

    await asyncio.gather(*(user(k) for k in share.users))
    return records


USER_WAKE_S = 0.01  # how finely a staged closed loop finds the moment a waiting user becomes active


def _until_active(stages, k: int, t: float) -> float | None:
    """Seconds until user `k` is active (0: now), or None when it is not active again before the end."""
    end = total_seconds(stages)
    wait = 0.0
    while t + wait < end:
        if users_at(stages, t + wait) > k:
            return wait
        wait += USER_WAKE_S
    return None


class _Transcript:
    """A protocol for one request that also keeps its answer text and cached prompt tokens (sessions
    send the answer back as the history); the plain path does not pay for it."""

    def __init__(self, protocol: StreamProtocol) -> None:
        self.protocol = protocol
        self.path, self.api, self.exact_lengths = protocol.path, protocol.api, protocol.exact_lengths
        self.text: list[str] = []
        self.cached_tokens: int | None = None

    def payload(self, model: str, spec: RequestSpec) -> dict:
        return self.protocol.payload(model, spec)

    def parse(self, line: bytes):
        event = self.protocol.parse(line)
        if event is not None and event.kind is EventKind.TOKEN and event.answer:
            self.text.append(self.protocol.answer_text(line))
        if event is not None and event.has_counts:
            self.cached_tokens = self.protocol.cached_tokens(line)
        return event


async def _sessions(session, endpoint, protocol, plan, load: Load, start: float, stop_at: float | None):
    """Users each hold one conversation at a time (perfsuite.sessions.SessionPlan's scripts): every
    turn sends the history, with the answers the server returned, then waits load.think_time_s. A
    failed turn ends its conversation (the next turn would have no answer to carry)."""
    records: list[RequestRecord] = []
    scripts = iter(plan.scripts)
    begun = 0

    async def user():
        nonlocal begun
        due = start
        while begun < load.sessions and (stop_at is None or time.perf_counter() < stop_at):
            script = next(scripts, None)
            if script is None:
                return
            begun += 1
            history: list[dict] = []
            history_tokens = 0
            for turn, (text, n_out) in enumerate(zip(script.user_texts, script.output_tokens)):
                # The next message is built (its history tokenized) while the user thinks: it is due
                # think_time_s after the last answer, and only what is left of that time is slept.
                messages = [*history, {"role": "user", "content": text}]
                spec = RequestSpec(text, plan.count_prompt(messages), n_out, messages)
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                transcript = _Transcript(protocol)
                send = time.perf_counter()
                rec = await _send(session, endpoint, transcript, spec, load.request_timeout_s, send, due)
                rec.turn, rec.cached_tokens, rec.history_tokens = turn, transcript.cached_tokens, history_tokens
                records.append(rec)
                due = time.perf_counter() + load.think_time_s
                if not rec.ok:
                    break
                history = [*messages, {"role": "assistant", "content": "".join(transcript.text)}]
                history_tokens = rec.prompt_tokens + rec.output_tokens

    await asyncio.gather(*(user() for _ in range(load.concurrency)))
    return records


async def _open(session, endpoint, protocol, share: Share, load: Load, start: float):
    """The share's arrivals, each sent when due (an absolute schedule: a late send does not delay the
    ones after it), at most share.concurrency in flight."""
    gate = asyncio.Semaphore(share.concurrency) if share.concurrency else None
    tasks = []

    async def one(spec, send: float, due: float):
        if gate is None:
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due)
        async with gate:  # time queued here for a slot counts toward the request's latency
            return await _send(session, endpoint, protocol, spec, load.request_timeout_s, send, due)

    for spec, offset in share.arrivals:
        next_at = start + offset
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(spec, time.perf_counter(), next_at)))
    return list(await asyncio.gather(*tasks))


async def warm_up(session, endpoint: Endpoint, protocol: StreamProtocol, share: Share, load: Load) -> None:
    """Send the share's warm-up requests (not measured) in a closed loop of its users (or its cap)."""
    n, conc = len(share.warmup), share.warmup_users
    if not n:
        return
    warm = Share(share.worker, share.workers, (), users=tuple(range(conc)), specs=share.warmup, requests=n)
    warm_load = Load.closed(conc, requests=n, warmup_requests=0, request_timeout_s=load.request_timeout_s)
    await _closed(session, endpoint, protocol, warm, warm_load, time.perf_counter(), None)


async def measured_phase(
    session, endpoint: Endpoint, protocol: StreamProtocol, share: Share, load: Load, start_at: float | None = None
) -> LoadRun:
    """The share's measured requests, watching the client itself (ClientStats). With `start_at` (a
    time.time() instant: the workers' shared start) it waits for that moment first."""
    if start_at is not None and (wait := start_at - time.time()) > 0:
        await asyncio.sleep(wait)
    if share.closed_loop:
        return await _watched(
            load, lambda start, stop_at: _closed(session, endpoint, protocol, share, load, start, stop_at)
        )
    # an open share's schedule already ends at the load's duration
    return await _watched(load, lambda start, _: _open(session, endpoint, protocol, share, load, start), bounded=False)


async def _watched(load: Load, send, bounded: bool = True) -> LoadRun:
    """`send(start, stop_at)`'s records as a LoadRun, with the client watched meanwhile (event-loop lag,
    CPU, wall time); `stop_at` is the load's duration after the start, where `bounded` and it has one."""
    lags: list[float] = []
    monitor = asyncio.create_task(_watch_loop(lags))
    cpu0 = time.process_time()
    start, started_wall = time.perf_counter(), time.time()
    stop_at = start + load.phase_seconds() if bounded and load.phase_seconds() else None
    try:
        records = await send(start, stop_at)
    finally:
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        monitor.cancel()
        await asyncio.gather(monitor, return_exceptions=True)
    return LoadRun(records, wall, _client_stats(records, load, lags, cpu, wall), start, started_wall)


async def run_load(
    endpoint: Endpoint,
    protocol: StreamProtocol,
    specs: list[RequestSpec] | SessionPlan,
    load: Load,
    headers: dict[str, str] | None = None,
    *,
    repetition: int = 0,
) -> LoadRun:
    """Warm up, then send the measured requests, watching the client itself (ClientStats).

    `repetition` seeds the Poisson gaps together with load.seed, so that each repetition draws its own.
    `specs` must hold at least warmup_requests + requests items (in duration mode it is cycled); for
    Load.sessions it is a perfsuite.sessions.SessionPlan (the warm-up sends its first scripts' first turns).
    `headers` (e.g. an Authorization header read from the environment) go with every request and
    are never recorded.
    """
    async with client_session(endpoint, headers) as session:
        if load.arrival != "sessions":
            share = partition(load, list(specs), 1, repetition)[0]
            await warm_up(session, endpoint, protocol, share, load)
            return await measured_phase(session, endpoint, protocol, share, load)
        warm, plan = specs.first_turns(load.warmup_requests), specs.rest(load.warmup_requests)
        await warm_up(session, endpoint, protocol, partition(load, warm, 1, repetition)[0], load)
        return await _watched(
            load, lambda start, stop_at: _sessions(session, endpoint, protocol, plan, load, start, stop_at)
        )


def client_session(endpoint: Endpoint, headers: dict[str, str] | None = None):
    """The HTTP client every load runs on (perfsuite.http1): no cap on connections (the load decides
    what is in flight); `async with` it, or `await .close()`."""
    return open_transport(endpoint.base_url, headers)
