"""Client capacity: how many tokens/s and requests/s one load-generator worker sustains before its send
lag grows, against a server that costs almost nothing per token (benchmarks/_stream_server.py), so that
the client is the bottleneck.

- Open loop: Load.constant(rate) at rising rates; each run judged by perfsuite.loadgen.client_saturation
  on its ClientStats (send lag p99 or loop lag p99 > 50 ms, or achieved < 95% of the scheduled rate).
  The knee is the highest rate at which most rounds were not saturated (and none below it were).
- Closed loop: Load.closed(concurrency) for the most tokens/s the client reads.
- Stream modes of the server (its docstring says how each differs from vLLM): body (the whole response
  in one write), events (one write per event, back to back), paced (one event per stream per decode step
  of --itl-ms: one token per read, as from vLLM on a GPU, when the client keeps up).
- Workers: --workers 1,2 runs each point with perfsuite.workers.run_workers and Load(workers=N) when that
  module exists; without it only 1 worker can run (perfsuite.loadgen.run_load). Rates and concurrencies
  are per worker (N workers are offered N times them), and the knees are compared: N workers' tok/s
  over N times one worker's (the issue's target: >= 0.9).

The server runs one process per --server-cpus core (one port, SO_REUSEPORT), the client (and any worker
processes it starts) on the other cores. Rounds are interleaved (every point once per round; odd rounds
in reverse order); after round 0 a ladder stops above two saturated rates in a row. Medians are
reported; "others on client core %" is the CPU other processes took of the client's cores meanwhile
(noise from other work). Over the unsaturated open-loop runs, the client's CPU per request is fitted as
a + b x output tokens (per-request and per-token cost).

Needs only the project's own install (`bash scripts/setup`: aiohttp, numpy, psutil, tabulate); the server
uses uvloop when importable (vLLM's uvicorn[standard] brings it) and the standard loop otherwise.
Nothing is written outside --json (and a temporary folder for the servers' logs, removed at the end).
Results: benchmarks/RESULTS.md, "Client capacity".

Run: .venv/bin/python benchmarks/client_capacity.py [--rounds 3] [--seconds 2.5] [--modes body,events,paced]
     [--lengths 16,128] [--rates paced:16=500,1000 --rates 128=500,1000] [--closed 16,512] [--workers 1,2]
     [--server-cpus 0] [--json FILE];  --report FILE... prints the tables of earlier --json files again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tabulate import tabulate

from perfsuite.fingerprint import this_machine
from perfsuite.jsonfile import write_atomic
from perfsuite.loadgen import Endpoint, Load, LoadRun, client_saturation, run_load
from perfsuite.protocols import OpenAIProtocol
from perfsuite.server import ServerProcess, free_port, http_ok
from perfsuite.signals import SigtermAsInterrupt
from perfsuite.workloads import RequestSpec

sys.path.insert(0, str(Path(__file__).parent))
from _stream_server import prompt  # noqa: E402  (beside this file)

HERE = Path(__file__).parent
SERVER = HERE / "_stream_server.py"
MODES = ("body", "events", "paced")
# Open-loop req/s by (mode, output tokens), around the knees seen on the 2-core VM (paced is slower).
DEFAULT_RATES = {
    ("body", 16): (1000, 1500, 2000, 2500, 3000, 3500),
    ("body", 128): (400, 550, 700, 850, 1000),
    ("events", 16): (1000, 1500, 2000, 2500, 3000, 3500),
    ("events", 128): (400, 550, 700, 850, 1000),
    ("paced", 16): (750, 1000, 1250, 1500, 1750, 2000, 2500),
    ("paced", 128): (200, 300, 350, 400, 450, 550),
}
FALLBACK_RATES = (250, 500, 1000, 2000)
PRUNE_AFTER = 2  # after round 0, a ladder stops above this many saturated rates in a row
START_TIMEOUT_S = 30.0


def _has_workers() -> bool:
    """Whether the imported perfsuite has perfsuite.workers. Only its own folder counts: with PYTHONPATH set
    to another tree, an editable install's import finder still offers the installed tree's modules."""
    import perfsuite

    spec = importlib.util.find_spec("perfsuite.workers")
    return bool(spec and spec.origin) and any(Path(spec.origin).parent == Path(d) for d in perfsuite.__path__)


HAS_WORKERS = _has_workers()


def specs(input_tokens: int, output_tokens: int, n: int) -> list[RequestSpec]:
    spec = RequestSpec(prompt(input_tokens), input_tokens, output_tokens)
    return [spec] * n


READY_LINE = "stream server on"


@dataclasses.dataclass(frozen=True)
class StreamServer:
    procs: list[ServerProcess]  # one per server core, all on the endpoint's port (SO_REUSEPORT)
    endpoint: Endpoint

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self, during: str) -> None:
        for p in self.procs:
            p.check_alive(during)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def _logged(path: Path, line: str) -> bool:
    try:
        return line in path.read_text(errors="replace")
    except OSError:
        return False


def start_server(mode: str, cpus: list[int | None], log_dir: Path, itl_ms: float) -> StreamServer:
    """The stream server in `mode` on a free loopback port, one process pinned to each of `cpus` (None: not
    pinned); stop() it. Each process is ready when its log says it listens (a health check could be
    answered by one that already was)."""
    port = free_port()
    argv = [sys.executable, str(SERVER), "--port", str(port), "--mode", mode, "--itl-ms", str(itl_ms)]
    server = StreamServer([], Endpoint(f"http://127.0.0.1:{port}", "capacity"))
    try:
        for i, cpu in enumerate(cpus):
            log = log_dir / f"stream-{mode}-{port}-{i}.log"
            proc = ServerProcess(
                f"stream server ({mode}, process {i + 1} of {len(cpus)})",
                argv,
                log,
                ready=functools.partial(_logged, log, READY_LINE),
                start_timeout_s=START_TIMEOUT_S,
                stop_timeout_s=10.0,
                cpus={cpu} if cpu is not None else None,
            )
            server.procs.append(proc)
            proc.start()
        if not http_ok(f"{server.endpoint.base_url}/health", timeout_s=5.0):
            raise RuntimeError(f"stream server ({mode}) on port {port} does not answer /health")
    except BaseException:
        server.stop()
        raise
    return server


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


class ClientCPU:
    """CPU seconds of this process and its descendants (worker processes) other than the servers'."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.me = psutil.Process()

    def seconds(self) -> float:
        total = time.process_time()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that ended (the servers end last)
        total += ru.ru_utime + ru.ru_stime
        for child in self.me.children(recursive=True):
            if child.pid in self.exclude:
                continue
            with contextlib.suppress(psutil.Error):
                if not any(p.pid in self.exclude for p in child.parents()):
                    total += _cpu_s(child)
        return total


def _busy_s(cores: set[int]) -> float:
    """CPU seconds `cores` have been busy (any process)."""
    per = psutil.cpu_times(percpu=True)
    return sum(sum(per[c]) - per[c].idle - getattr(per[c], "iowait", 0.0) for c in cores if c < len(per))


@dataclasses.dataclass(frozen=True)
class Point:
    mode: str
    output_tokens: int
    kind: str  # "open" (constant rate) or "closed"
    level: float  # req/s (open) or concurrency (closed)
    workers: int

    def label(self) -> str:
        what = f"{self.level:g}/s" if self.kind == "open" else f"c{self.level:g}"
        return f"{self.mode} out={self.output_tokens} {self.kind} {what} w{self.workers}"


def make_load(point: Point, seconds: float, warmup: int) -> Load:
    extra = {"workers": point.workers} if HAS_WORKERS else {}
    if point.kind == "open":
        n = max(50, round(point.level * seconds))
        return Load.constant(point.level, requests=n, warmup_requests=warmup, request_timeout_s=30.0, **extra)
    c = int(point.level)
    return Load.closed(
        c, requests=None, duration_s=seconds, warmup_requests=max(warmup, c), request_timeout_s=30.0, **extra
    )


def drive(endpoint: Endpoint, requests: list[RequestSpec], load: Load, workers: int) -> LoadRun:
    if HAS_WORKERS:
        from perfsuite.workers import run_workers

        return run_workers(endpoint, OpenAIProtocol(), requests, load)
    if workers != 1:
        raise RuntimeError("more than one worker needs perfsuite.workers (not in this tree)")
    return asyncio.run(run_load(endpoint, OpenAIProtocol(), requests, load))


def measure(point: Point, server: StreamServer, args, cpu: ClientCPU) -> dict:
    load = make_load(point, args.seconds, args.warmup)
    n = (load.requests or 0) + load.warmup_requests
    if load.duration_s:  # a closed loop for duration_s cycles its measured specs: one per user is enough
        n = load.warmup_requests + load.concurrency
    reqs = specs(args.input_tokens, point.output_tokens, n)
    srv = [psutil.Process(pid) for pid in server.pids]
    cores = set(os.sched_getaffinity(0))
    s0, c0, b0, t0 = sum(map(_cpu_s, srv)), cpu.seconds(), _busy_s(cores), time.perf_counter()
    run = drive(server.endpoint, reqs, load, point.workers)
    wall = time.perf_counter() - t0  # warm-up included: CPU shares are over the same span
    s1, c1, b1 = sum(map(_cpu_s, srv)), cpu.seconds(), _busy_s(cores)
    server.check_alive(point.label())
    ok = [r for r in run.records if r.ok]
    tokens = sum(r.output_tokens for r in ok)
    reads = sum(len(set(r.chunk_times)) for r in ok)
    c = run.client
    reason = client_saturation(c, load)
    achieved = c.achieved_rate or 0.0
    if point.kind == "open":
        # Sustained: requests sent per second x tokens each (all read with exact counts), not diluted by
        # the drain of the last streams after the last send.
        tok_s = achieved * point.output_tokens * (len(ok) / len(run.records) if run.records else 0.0)
    else:  # tokens that arrived while the users were sending (the drain after duration_s is not counted)
        end = run.started + load.duration_s
        tok_s = sum(1 for r in ok for t in r.chunk_times if run.started <= t <= end) / load.duration_s
    return {
        "point": dataclasses.asdict(point),
        "requests": len(run.records),
        "errors": len(run.records) - len(ok),
        "first_error": next((r.error for r in run.records if not r.ok), None),
        "achieved_req_s": achieved,
        "req_s_wall": len(ok) / run.wall_s if run.wall_s > 0 else 0.0,
        "tok_s": tok_s,
        "tok_s_wall": tokens / run.wall_s if run.wall_s > 0 else 0.0,
        "tokens_per_read": tokens / reads if reads else None,
        "send_lag_p50_ms": c.send_lag_p50_ms,
        "send_lag_p99_ms": c.send_lag_p99_ms,
        "loop_lag_p99_ms": c.loop_lag_p99_ms,
        # ClientStats: CPU over the measured phase (summed over the workers with perfsuite.workers)
        "client_cpu_pct": c.cpu_percent,
        # this process and its children (workers) over the whole call: warm-up and worker start-up too
        "client_tree_cpu_pct": 100.0 * (c1 - c0) / wall,
        "server_cpu_pct": 100.0 * (s1 - s0) / wall,  # all its processes (% of one core)
        # what other processes took of the client's cores meanwhile (the servers are pinned elsewhere)
        "others_cpu_pct": max(0.0, 100.0 * ((b1 - b0) - (c1 - c0)) / wall),
        "client_cpu_us_per_req": 1e4 * c.cpu_percent * run.wall_s / len(run.records) if run.records else None,
        "client_cpu_us_per_tok": 1e4 * c.cpu_percent * run.wall_s / tokens if tokens else None,
        "saturated": reason,
        "wall_s": run.wall_s,
    }


def _med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summarize(points: list[Point], results: dict[Point, list[dict]]) -> tuple[list[list], dict]:
    """One row per point (medians over rounds), and the knee of each open-loop ladder."""
    rows, knees = [], {}
    ladders: dict[tuple, list[Point]] = {}
    for p in points:
        rs = results.get(p, [])
        if not rs:
            continue
        sat = sum(1 for r in rs if r["saturated"])
        rows.append(
            [
                p.mode,
                p.output_tokens,
                p.workers,
                f"{p.level:g}/s" if p.kind == "open" else f"closed c{p.level:g}",
                _fmt(_med(rs, "achieved_req_s"), ",.0f"),
                _fmt(_med(rs, "tok_s"), ",.0f"),
                _fmt(_med(rs, "send_lag_p50_ms"), ".1f"),
                _fmt(_med(rs, "send_lag_p99_ms"), ".1f"),
                _fmt(_med(rs, "loop_lag_p99_ms"), ".1f"),
                _fmt(_med(rs, "client_cpu_pct"), ".0f"),
                _fmt(_med(rs, "server_cpu_pct"), ".0f"),
                _fmt(_med(rs, "others_cpu_pct"), ".0f"),
                _fmt(_med(rs, "tokens_per_read"), ".1f"),
                _fmt(_med(rs, "client_cpu_us_per_tok"), ".1f"),
                sum(r["errors"] for r in rs),
                f"{sat}/{len(rs)}",
            ]
        )
        if p.kind == "open":
            ladders.setdefault((p.mode, p.output_tokens, p.workers), []).append(p)
    for key, ladder in ladders.items():
        knee = None
        for p in sorted(ladder, key=lambda q: q.level):
            rs = results[p]
            if 2 * sum(1 for r in rs if r["saturated"] or r["errors"]) >= len(rs):
                break
            knee = p
        if knee is None:
            knees[key] = None
        else:
            rs = results[knee]
            knees[key] = {
                "rate": knee.level,
                "req_s": _med(rs, "achieved_req_s"),
                "tok_s": _med(rs, "tok_s"),
                "client_cpu_pct": _med(rs, "client_cpu_pct"),
                "top": knee.level == max(q.level for q in ladder),  # the ladder ended unsaturated
            }
    return rows, knees


HEADERS = [
    "mode",
    "out tok",
    "workers",
    "load",
    "achieved req/s",
    "tok/s",
    "send lag p50 ms",
    "send lag p99 ms",
    "loop lag p99 ms",
    "client CPU %",
    "server CPU %",
    "others on client core %",
    "tok/read",
    "client CPU us/tok",
    "failed",
    "saturated",
]


def cost_model(points: list[Point], results: dict[Point, list[dict]]) -> list[list]:
    """Per mode and workers: client CPU per request = a + b x output tokens, least squares over every
    open-loop run that was not saturated (each round its own sample); with it the tok/s one core would
    read at 100%. CPU time is a sturdier measure than the knee on a shared machine: a neighbour's burst
    delays the client (lag) more than it changes the client's CPU per token. In paced mode the fit holds
    for the tokens per read those runs had (about one)."""
    rows = []
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for p in points:
        for r in results.get(p, []):
            if p.kind == "open" and not r["saturated"] and not r["errors"] and r["client_cpu_us_per_req"]:
                groups.setdefault((p.mode, p.workers), []).append((p.output_tokens, r["client_cpu_us_per_req"]))
    for (mode, w), samples in groups.items():
        xs, ys = [x for x, _ in samples], [y for _, y in samples]
        if len(set(xs)) < 2:
            continue
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = sum((x - mx) * (y - my) for x, y in samples) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
        lengths = sorted(set(xs))
        rows.append(
            [mode, w, len(samples), f"{a:.0f}", f"{b:.2f}", f"{1e6 / b:,.0f}" if b > 0 else "-"]
            + [", ".join(f"{n}: {1e6 * n / (a + b * n):,.0f}" for n in lengths)]
        )
    return rows


COST_HEADERS = [
    "mode",
    "workers",
    "runs fitted",
    "client CPU us / request (a)",
    "us / token (b)",
    "tok/s of one core, per-token cost alone (1/b)",
    "tok/s of one core at 100%, by output length",
]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _rates(values: list[str] | None, modes: list[str], lengths: list[int]) -> dict[tuple[str, int], list[float]]:
    """Each ladder's rates: DEFAULT_RATES, replaced by --rates [MODE:]OUT=R1,R2,... (no MODE: every mode)."""
    rates = {(m, n): list(DEFAULT_RATES.get((m, n), FALLBACK_RATES)) for m in modes for n in lengths}
    for v in values or ():
        key, _, rs = v.partition("=")
        mode, _, n = key.rpartition(":")
        for m in [mode] if mode else modes:
            rates[(m, int(n))] = [float(x) for x in rs.split(",") if x.strip()]
    return rates


def prune(points: list[Point], results: dict[Point, list[dict]]) -> list[Point]:
    """The points worth another round: a ladder's rates above PRUNE_AFTER saturated ones in a row
    (in round 0) are dropped; they keep their one round, marked saturated."""
    keep, run_of = [], {}
    for p in sorted(points, key=lambda q: (q.kind, q.mode, q.output_tokens, q.workers, q.level)):
        key = (p.kind, p.mode, p.output_tokens, p.workers)
        if p.kind == "open" and run_of.get(key, 0) >= PRUNE_AFTER:
            continue
        keep.append(p)
        if p.kind == "open":
            run_of[key] = run_of.get(key, 0) + 1 if results[p][0]["saturated"] else 0
    return [p for p in points if p in keep]


def report(points: list[Point], results: dict[Point, list[dict]]) -> dict:
    """Print the tables: every point (medians over rounds), the knees, the CPU fit; return the knees."""
    rows, knees = summarize(points, results)
    print()
    _print_table(rows, HEADERS)
    print()
    knee_rows = []
    for (m, n, w), k in knees.items():
        if k is None:
            knee_rows.append([m, n, w, "saturated at the lowest rate", "-", "-", "-"])
        else:
            where = f"{k['rate']:g}/s" + (" (top of the ladder: not saturated)" if k["top"] else "")
            knee_rows.append([m, n, w, where, f"{k['req_s']:,.0f}", f"{k['tok_s']:,.0f}", f"{k['client_cpu_pct']:.0f}"])
    _print_table(
        knee_rows, ["mode", "out tok", "workers", "knee (highest sustained rate)", "req/s", "tok/s", "client CPU %"]
    )
    one = {(m, n): k for (m, n, w), k in knees.items() if w == 1 and k}
    scaling = [
        [
            m,
            n,
            w,
            f"{k['tok_s']:,.0f}",
            f"{w * one[(m, n)]['tok_s']:,.0f}",
            f"{k['tok_s'] / (w * one[(m, n)]['tok_s']):.2f}",
        ]
        + ["(top of the ladder: the knee is higher)" if k["top"] else ""]
        for (m, n, w), k in knees.items()
        if w > 1 and k and (m, n) in one
    ]
    if scaling:
        print()
        _print_table(scaling, ["mode", "out tok", "workers", "knee tok/s", "workers x one worker's", "efficiency", ""])
    costs = cost_model(points, results)
    if costs:
        print()
        _print_table(costs, COST_HEADERS)
    return knees


def _print_table(rows: list[list], headers: list[str]) -> None:
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))


def report_files(paths: list[Path]) -> None:
    """The tables again from --json files of earlier runs (their points in the order they were run)."""
    points: list[Point] = []
    results: dict[Point, list[dict]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        print(f"{path}: {data['args']}")
        for r in data["runs"]:
            p = Point(**r["point"])
            if "client_cpu_us_per_tok" not in r and r["client_cpu_us_per_req"]:  # files from before it was kept
                r["client_cpu_us_per_tok"] = r["client_cpu_us_per_req"] / p.output_tokens
            if p not in results:
                points.append(p)
            results.setdefault(p, []).append(r)
    report(points, results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds of each run")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up requests of each run (not counted)")
    ap.add_argument("--modes", default="body,events,paced")
    ap.add_argument("--lengths", default="16,128", help="output tokens per request")
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument(
        "--rates",
        action="append",
        metavar="[MODE:]OUT=R1,R2",
        help="open-loop req/s for one output length (and mode); repeatable",
    )
    ap.add_argument("--closed", default="16,512", help="closed-loop concurrencies ('' for none)")
    ap.add_argument("--no-open", action="store_true", help="closed loops only")
    ap.add_argument("--workers", default="1", help="load-generator workers, e.g. 1,2 (needs perfsuite.workers)")
    ap.add_argument("--itl-ms", type=float, default=5.0, help="paced mode: ms between a stream's tokens")
    ap.add_argument(
        "--server-cpus",
        default="0",
        help="cores of the stream server, one process each on one port; the client gets the rest ('none': no pinning)",
    )
    ap.add_argument("--json", type=Path, help="write every run's numbers here")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON", help="print the tables of earlier --json runs")
    args = ap.parse_args()
    if args.report:
        report_files(args.report)
        return

    modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in modes if m not in MODES]:
        ap.error(f"--modes: unknown {bad}; use {','.join(MODES)}")
    lengths, workers, closed = _ints(args.lengths), _ints(args.workers), _ints(args.closed)
    if not HAS_WORKERS and workers != [1]:
        print(f"perfsuite.workers is not in this tree: --workers {args.workers} runs 1 worker only", flush=True)
        workers = [1]
    rates = _rates(args.rates, modes, lengths)

    all_cpus = set(os.sched_getaffinity(0))
    if args.server_cpus == "none":
        server_cpus: list[int | None] = [None]
        client_cpus = all_cpus
    else:
        server_cpus = _ints(args.server_cpus)
        if bad := set(server_cpus) - all_cpus:
            ap.error(f"--server-cpus: cores {sorted(bad)} are not this process's to use ({sorted(all_cpus)})")
        client_cpus = all_cpus - set(server_cpus)
        if not client_cpus:
            ap.error("--server-cpus takes every core: leave the client at least one")
    os.sched_setaffinity(0, client_cpus)  # worker processes inherit it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a connection per request in flight (servers too)

    # Rates and concurrencies are per worker: N workers are offered N times the load of one.
    points = [
        Point(m, n, "open", r * w, w)
        for w in workers
        for m in modes
        for n in lengths
        for r in rates[(m, n)]
        if not args.no_open
    ]
    points += [Point(m, n, "closed", c * w, w) for w in workers for m in modes for n in lengths for c in closed]
    print(
        f"server cpus {server_cpus}, client cpus {sorted(client_cpus)}, workers module: {HAS_WORKERS}, "
        f"{len(points)} points x {args.rounds} rounds, load average {os.getloadavg()}",
        flush=True,
    )

    results: dict[Point, list[dict]] = {}
    sigterm = SigtermAsInterrupt()  # SIGTERM, like Ctrl-C, stops the servers on the way out
    sigterm.install()
    with tempfile.TemporaryDirectory(prefix="perfsuite-capacity-") as tmp:
        servers: dict[str, StreamServer] = {}
        try:
            for m in modes:
                servers[m] = start_server(m, server_cpus, Path(tmp), args.itl_ms)
            cpu = ClientCPU({pid for s in servers.values() for pid in s.pids})
            todo = points
            for rnd in range(args.rounds):
                if rnd == 1:
                    todo = prune(points, results)
                order = todo if rnd % 2 == 0 else todo[::-1]
                for p in order:
                    row = measure(p, servers[p.mode], args, cpu)
                    row["round"] = rnd
                    results.setdefault(p, []).append(row)
                    print(
                        f"round {rnd} {p.label()}: {row['achieved_req_s']:.0f} req/s {row['tok_s']:,.0f} tok/s "
                        f"send p99 {_fmt(row['send_lag_p99_ms'], '.1f')} loop p99 {_fmt(row['loop_lag_p99_ms'], '.1f')}"
                        f" ms, client {row['client_cpu_pct']:.0f}% server {row['server_cpu_pct']:.0f}% "
                        f"others {row['others_cpu_pct']:.0f}%, tok/read {_fmt(row['tokens_per_read'], '.1f')}, "
                        f"failed {row['errors']}{' (' + row['first_error'] + ')' if row['errors'] else ''}"
                        f"{', SATURATED' if row['saturated'] else ''}",
                        flush=True,
                    )
        finally:
            for s in servers.values():
                s.stop()
            sigterm.uninstall()

    knees = report(points, results)
    if args.json:
        write_atomic(
            args.json,
            {
                "machine": this_machine().to_dict(),
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "server_cpus": server_cpus,
                "client_cpus": sorted(client_cpus),
                "workers_module": HAS_WORKERS,
                "runs": [r for p in points for r in results.get(p, [])],
                "knees": [{"mode": m, "output_tokens": n, "workers": w, **(k or {})} for (m, n, w), k in knees.items()],
            },
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: the stream servers were stopped", file=sys.stderr)
        sys.exit(130)
