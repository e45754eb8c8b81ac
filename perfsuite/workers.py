"""A load sent from several load-generator workers, and the whole load's records back.

The coordinator (this module, in the process that measures) splits each repetition's load before the
start (perfsuite.partition), has every worker (perfsuite.worker.LoadWorker) build its share and warm
up, measures each worker's clock offset from a few round trips (the one with the shortest round trip
is kept), and gives all of them one start instant, each on its own clock: the start barrier. At the
end every worker sends back every request's record, so percentiles are exact; they are put on the
coordinator's clock and merged into one LoadRun, with each worker's own ClientStats in
`client.workers`.

Two kinds of workers: processes on this machine (LocalWorkers, `python -m perfsuite.worker`, JSON
lines over pipes) and Ray actors on a cluster (perfsuite.ray_workers.RayWorkers). One process is
not a worker at all (InProcess: perfsuite.loadgen.run_load, as before).

A worker that dies, or answers with an error, fails the measurement naming it (WorkerLost); every
worker is stopped at the end, on failure and on Ctrl-C. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace

from perfsuite import eventloop
from perfsuite.errors import MeasurementError, UsageError
from perfsuite.loadgen import ClientStats, Endpoint, Load, LoadRun, _client_stats, run_load
from perfsuite.partition import Share, partition
from perfsuite.protocols import StreamProtocol
from perfsuite.server import die_with_parent
from perfsuite.worker import protocol_to_dict, record_from_dict

__all__ = ["WorkerLost", "InProcess", "LocalWorkers", "open_workers", "run_workers", "merge_runs"]

CLOCK_PINGS = 5  # round trips per worker to measure its clock offset
START_LEAD_S = 0.25  # the start instant is this far after the last worker is ready, plus the slowest round trip
START_TIMEOUT_S = 60.0  # a worker process (or actor) must answer its first call within this
STOP_TIMEOUT_S = 5.0  # a worker asked to close is killed after this


_STEP = {"prepare": "its warm-up", "run": "the measured phase", "clock": "the clock check", "where": "its start"}


class WorkerLost(MeasurementError):
    """A load-generator worker died or failed: the measurement is not used (no baseline is written)."""


class InProcess:
    """One load generator in this process: perfsuite.loadgen.run_load."""

    kind = "in-process"

    def __init__(self) -> None:
        self.workers = 1

    def run(self, endpoint, protocol, specs, load: Load, headers=None, *, repetition: int = 0) -> LoadRun:
        return eventloop.run(run_load(endpoint, protocol, specs, load, headers, repetition=repetition))

    def close(self) -> None:
        pass


class _Coordinator:
    """What every kind of worker pool does with its workers; subclasses say how a call reaches them
    (`_call_all`: one call per worker, the replies in order, within a deadline) and who they are."""

    kind = "?"
    workers = 0

    def _call_all(self, op: str, args: list[list], deadline_s: float) -> list:
        raise NotImplementedError

    def _who(self, i: int) -> str:
        raise NotImplementedError

    def run(self, endpoint, protocol, specs, load: Load, headers=None, *, repetition: int = 0) -> LoadRun:
        """One repetition of `load` over `specs` (warm-up first) from every worker: a LoadRun on this clock."""
        shares = partition(load, list(specs), self.workers, repetition)
        common = {
            "endpoint": {"base_url": endpoint.base_url, "model": endpoint.model},
            "protocol": protocol_to_dict(protocol),
            "load": load.to_dict() | {"workers": load.workers},
            "headers": headers,
        }
        jobs = [[common | {"share": share.to_dict()}] for share in shares]
        ready = self._call_all("prepare", jobs, START_TIMEOUT_S + _warmup_deadline(load, shares))
        offsets = self._clock_offsets()
        slowest_rtt = max(rtt for _, rtt in offsets)
        start_at = time.time() + START_LEAD_S + slowest_rtt
        started = time.perf_counter() + (start_at - time.time())  # the start instant on this clock
        parts = self._call_all(
            "run", [[start_at + offset] for offset, _ in offsets], START_LEAD_S + _phase_deadline(load, shares)
        )
        about = [
            info | {"worker": i, "clock_offset_ms": round(off * 1e3, 3), "clock_rtt_ms": round(rtt * 1e3, 3)}
            for i, (info, (off, rtt)) in enumerate(zip(ready, offsets))
        ]
        return merge_runs(parts, about, load, started, start_at)

    def _clock_offsets(self) -> list[tuple[float, float]]:
        """(offset, round trip) per worker, seconds: its time.time() minus this one's, from the round trip
        with the shortest time (its reading is taken as made half-way)."""
        best = [(0.0, math.inf)] * self.workers
        for _ in range(CLOCK_PINGS):
            t0 = time.time()
            clocks = self._call_all("clock", [[] for _ in range(self.workers)], START_TIMEOUT_S)
            t1 = time.time()
            for i, theirs in enumerate(clocks):  # one call to all: each round trip is at most t1 - t0
                if t1 - t0 < best[i][1]:
                    best[i] = (theirs - (t0 + t1) / 2, t1 - t0)
        return best


def _warmup_deadline(load: Load, shares: list[Share]) -> float:
    """The longest a share's warm-up can take: its requests in rounds of its users, each up to the timeout."""

    return max(math.ceil(len(s.warmup) / s.warmup_users) if s.warmup else 0 for s in shares) * load.request_timeout_s


def _phase_deadline(load: Load, shares: list[Share]) -> float:
    """The longest a measured share can take while its worker lives (each request has its timeout)."""
    if load.closed_loop:
        if load.phase_seconds():
            return load.phase_seconds() + load.request_timeout_s + 5.0
        rounds = max(math.ceil((s.requests or 0) / len(s.users)) for s in shares)
        return rounds * load.request_timeout_s + 5.0
    last = max((s.arrivals[-1][1] for s in shares if s.arrivals), default=0.0)
    most = max(len(s.arrivals) for s in shares)
    capped = max((math.ceil(len(s.arrivals) / s.concurrency) for s in shares if s.concurrency), default=1)
    return last + min(most, capped) * load.request_timeout_s + 5.0


def merge_runs(parts: list[dict], about: list[dict], load: Load, started: float, started_wall: float) -> LoadRun:
    """Every worker's records on this clock (their phase started at `started`), and the whole load's
    ClientStats: send lags and rates over all records, event-loop lag the worst worker's, CPU summed."""
    records = [record_from_dict(d, started) for part in parts for d in part["records"]]
    records.sort(key=lambda r: r.send)
    wall = max(part["wall_s"] for part in parts)
    clients = [_client_from_dict(part["client"]) for part in parts]
    cpu_s = sum(c.cpu_percent / 100.0 * part["wall_s"] for c, part in zip(clients, parts))
    whole = _client_stats(records, load, [], cpu_s, wall)
    loop_p99 = [c.loop_lag_p99_ms for c in clients if c.loop_lag_p99_ms is not None]
    loop_max = [c.loop_lag_max_ms for c in clients if c.loop_lag_max_ms is not None]
    per_worker = tuple(
        info | {"start_late_ms": part["start_late_ms"], "client": c.to_dict()}
        for info, part, c in zip(about, parts, clients)
    )
    whole = replace(
        whole,
        loop_lag_p99_ms=max(loop_p99) if loop_p99 else None,
        loop_lag_max_ms=max(loop_max) if loop_max else None,
        workers=per_worker,
    )
    return LoadRun(records, wall, whole, started, started_wall)


def _client_from_dict(d: dict) -> ClientStats:
    return ClientStats(**(d | {"send_lag_top_ms": tuple(d["send_lag_top_ms"]), "workers": tuple(d.get("workers", ()))}))


class LocalWorkers(_Coordinator):
    """`n` worker processes on this machine (`python -m perfsuite.worker`), each with its own event loop;
    they keep this process's CPU affinity. Started here, stopped by close()."""

    kind = "processes"

    def __init__(self, n: int, python: str = sys.executable) -> None:
        self.workers = n
        self._procs: list[subprocess.Popen] = []
        self._errs: list = []
        cores = len(os.sched_getaffinity(0))
        if n > cores:
            warnings.warn(
                f"{n} load-generator workers on {cores} usable core(s): they share them, and each does less "
                "than a core's worth (perfsuite's self-check says when the client could not keep up)",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            for _ in range(n):
                err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close()); unlinked at once: nothing left
                self._errs.append(err)
                self._procs.append(
                    subprocess.Popen(
                        [python, "-m", "perfsuite.worker"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        start_new_session=True,  # Ctrl-C reaches the coordinator, which stops them
                        preexec_fn=functools.partial(die_with_parent, os.getpid()),
                    )
                )
        except BaseException:
            self.close()
            raise

    def _who(self, i: int) -> str:
        return f"load worker {i + 1} of {self.workers} (pid {self._procs[i].pid})"

    def _died(self, i: int, when: str) -> WorkerLost:
        proc = self._procs[i]
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
        self._errs[i].seek(0)
        tail = self._errs[i].read().decode(errors="replace").strip().splitlines()[-5:]
        code = proc.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        said = ("; its last words: " + " | ".join(tail)) if tail else ""
        return WorkerLost(f"{self._who(i)} {how} during {_STEP.get(when, when)}: the measurement is not used{said}")

    def _call_all(self, op: str, args: list[list], deadline_s: float) -> list:
        for i, proc in enumerate(self._procs):
            try:
                proc.stdin.write(json.dumps({"op": op, "args": args[i]}).encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died(i, op) from None
        replies: list = [None] * self.workers
        waiting = set(range(self.workers))
        end = time.monotonic() + deadline_s
        with selectors.DefaultSelector() as sel:
            for i in waiting:
                sel.register(self._procs[i].stdout, selectors.EVENT_READ, i)
            while waiting:
                left = end - time.monotonic()
                if left <= 0:
                    names = ", ".join(self._who(i) for i in sorted(waiting))
                    raise WorkerLost(
                        f"{names}: no answer to {op!r} within {deadline_s:.0f} s; the measurement is not used"
                    )
                for key, _ in sel.select(timeout=min(left, 1.0)):
                    i = key.data
                    line = self._procs[i].stdout.readline()
                    if not line:
                        raise self._died(i, op)
                    reply = json.loads(line)
                    if not reply["ok"]:
                        raise WorkerLost(
                            f"{self._who(i)} failed in {op!r}: {reply['error']}; the measurement is not used"
                        )
                    replies[i] = reply["result"]
                    waiting.discard(i)
                    sel.unregister(key.fileobj)
                for i in list(waiting):
                    if self._procs[i].poll() is not None and not _readable(self._procs[i].stdout):
                        raise self._died(i, op)
        return replies

    def close(self) -> None:
        """Ask each worker to close, then stop whatever is left: nothing outlives this call."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.write(b'{"op": "close"}\n')
                    proc.stdin.flush()
                    proc.stdin.close()
        end = time.monotonic() + STOP_TIMEOUT_S
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, end - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        for err in self._errs:
            err.close()
        self._procs, self._errs = [], []


def _readable(stream) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        return bool(sel.select(timeout=0))


@contextlib.contextmanager
def open_workers(workers: int = 1, ray_address: str | None = None):
    """The load generator for `workers` workers: this process alone (1, no Ray), processes on this
    machine, or Ray actors on the cluster at `ray_address` ('auto', 'host:port' or 'ray://...').
    Every worker is stopped when the block ends, however it ends."""
    if not (isinstance(workers, int) and workers >= 1):
        raise UsageError(f"workers={workers!r}: must be an integer >= 1 (load-generator processes)")
    if ray_address:
        from perfsuite.ray_workers import RayWorkers

        pool = RayWorkers(workers, ray_address)
    elif workers == 1:
        pool = InProcess()
    else:
        pool = LocalWorkers(workers)
    try:
        yield pool
    finally:
        pool.close()


def run_workers(
    endpoint: Endpoint,
    protocol: StreamProtocol,
    specs,
    load: Load,
    headers: dict[str, str] | None = None,
    *,
    repetition: int = 0,
    ray_address: str | None = None,
) -> LoadRun:
    """One repetition of `load` from `load.workers` workers (started and stopped here): the whole load's
    LoadRun, as perfsuite.loadgen.run_load gives for one."""
    with open_workers(load.workers, ray_address) as pool:
        return pool.run(endpoint, protocol, specs, load, headers, repetition=repetition)
