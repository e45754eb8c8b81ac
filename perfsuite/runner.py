"""R repetitions of a workload under a load against a target (a running server), with telemetry and
cost; and the provenance of a number. perfsuite.recorder and the `perfsuite load` command both use it."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import psutil

from perfsuite import eventloop
from perfsuite.cost import add_costs
from perfsuite.decision import median_interval
from perfsuite.errors import MeasurementError
from perfsuite.fingerprint import this_machine
from perfsuite.hardware import HardwareProfile
from perfsuite.http1 import transport_name
from perfsuite.loadgen import Endpoint, Load, client_saturation
from perfsuite.metrics import summarize
from perfsuite.protocols import StreamProtocol
from perfsuite.sessions import turn_breakdown
from perfsuite.slo import SLO
from perfsuite.stages import stage_breakdown
from perfsuite.telemetry import MetricNames, Telemetry
from perfsuite.workers import open_workers
from perfsuite.workloads import PromptBuilder, Workload

__all__ = ["Target", "TelemetrySources", "Run", "run", "provenance", "histogram", "distributions"]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _perfsuite_version() -> str:
    try:
        return version("perfsuite")
    except PackageNotFoundError:
        return "unknown"


def provenance(**extra) -> dict:
    """Where a number came from: date, commit, versions, the hardware's fingerprint (`hardware`:
    perfsuite.fingerprint, with the NVIDIA driver, cores and memory; it decides what a baseline may be
    compared with), and the load generator's transport and event loop (perfsuite.http1, eventloop)."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "perfsuite": _perfsuite_version(),
        "python": platform.python_version(),
        "hardware": this_machine().to_dict(),
        "load_generator": load_generator(),
        **extra,
    }


def load_generator() -> dict:
    """Which client took the numbers: its transport and event loop (PERFSUITE_TRANSPORT, PERFSUITE_LOOP;
    Ray actors run on Ray's own loop)."""
    return {"transport": transport_name(), "loop": eventloop.loop_name()}


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def histogram(values: list[float], bins: int = 24) -> dict:
    """A compact histogram for the report: `bins` log-spaced bins from the smallest to the largest value
    (latencies span decades), counts per bin; {} for no values. Edges keep 4 significant digits."""
    arr = np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {}
    lo, hi = float(arr.min()), float(arr.max())
    edges = np.geomspace(lo, hi, bins + 1) if hi > lo else np.array([lo, hi + max(lo * 1e-3, 1e-6)])
    counts, edges = np.histogram(arr, bins=edges)
    return {"edges": [float(f"{e:.4g}") for e in edges], "counts": [int(c) for c in counts], "n": int(arr.size)}


def distributions(records: list) -> dict:
    """TTFT and ITL histograms (ms) over every successful request of every repetition."""
    ttft = [(r.first_token - r.send) * 1e3 for r in records if r.first_token is not None]
    itl = [float(g) * 1e3 for r in records for g in np.diff(r.chunk_times)]
    return {"ttft_ms": histogram(ttft), "itl_ms": histogram(itl)}


# Adaptive length (--perf-budget-s): after the minimum repetitions, add more until the key metric's
# median is known to within +-PRECISION (a 90% bootstrap interval), or until the next one would
# overrun the time budget. +-3% on each side keeps the gate's interval of a change inside about +-6%,
# so a 20% loss clears a 10% tolerance (docs/regression-gate.md).
KEY_METRIC = "request_throughput"
PRECISION = 0.03
MAX_REPETITIONS = 30


def _stop_reason(reps: list[dict], started: float, budget_s: float | None) -> str | None:
    """Why no more repetitions are needed (None: run another). Called once the minimum has run."""
    if budget_s is None:
        return "fixed"
    values = [r.get(KEY_METRIC) for r in reps]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if values:
        med, low, high = median_interval(values)
        if med and (high - low) / 2 / abs(med) <= PRECISION:
            return "precision"
    if len(reps) >= MAX_REPETITIONS:
        return "max repetitions"
    elapsed = time.monotonic() - started
    if elapsed + elapsed / max(len(reps), 1) > budget_s:
        return "budget"
    return None


@contextlib.contextmanager
def _pinned(cpus: set[int] | None):
    """Run the load generator on `cpus` (the cores the server leaves free), then restore."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True)
class TelemetrySources:
    """Where a server's telemetry comes from: its processes (memory on the CPU) and its /metrics."""

    procs: Callable[[], list[psutil.Process]] = list
    metrics_url: str | None = None
    metric_names: MetricNames = MetricNames()
    enabled: bool = True


@dataclass(frozen=True)
class Target:
    """What the runner measures: where requests go, how they are spoken, and what is watched meanwhile."""

    endpoint: Endpoint
    protocol: StreamProtocol
    telemetry: TelemetrySources = TelemetrySources()
    check_alive: Callable[[str], None] | None = None  # raises ServerError when the server has died
    client_cpus: frozenset[int] | None = None  # cores the load generator runs on, where it matters
    headers: dict[str, str] | None = field(default=None, repr=False)  # e.g. a bearer token: sent, never recorded


@dataclass(frozen=True)
class Run:
    """The numbers of R repetitions of one load: medians (error counts summed), each repetition, and
    what the load generator and the telemetry saw."""

    metrics: dict[str, float]
    repetitions: tuple[dict[str, float], ...]
    stopping: dict
    client: tuple[dict, ...]
    memory_series: tuple[list[dict[str, float]], ...]
    distributions: dict
    errors: tuple[str, ...]
    error_count: int
    client_saturation: str | None  # why the load generator was the bottleneck (no more repetitions ran)
    notes: tuple[str, ...] = ()  # what the measurement should say: a request file's size and its dropped entries
    breakdown: dict = field(default_factory=dict)  # per part of the load: {"stages": [...]}, medians over repetitions

    def measurement_fields(self) -> dict:
        """These numbers as the keyword arguments of a perfsuite.measurement.Measurement."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def joined(cls, runs: list[Run], reason: str) -> Run:
        """Runs of one repetition each (perfsuite ab's pairs) as one Run of all their repetitions, in
        order; `reason` is why no more ran. Distributions are not joined (each run's are over its own bins)."""
        reps = [r for run in runs for r in run.repetitions]
        return cls(
            metrics=_combine(reps),
            repetitions=tuple(reps),
            stopping={
                "reason": reason,
                "repetitions": len(reps),
                "seconds": round(sum(run.stopping["seconds"] for run in runs), 1),
            },
            client=tuple(c for run in runs for c in run.client),
            memory_series=tuple(s for run in runs for s in run.memory_series),
            distributions={},
            errors=tuple(e for run in runs for e in run.errors)[:20],
            error_count=sum(run.error_count for run in runs),
            client_saturation=next((run.client_saturation for run in runs if run.client_saturation), None),
            notes=runs[0].notes if runs else (),
            breakdown=runs[0].breakdown if len(runs) == 1 else {},
        )


# Counts add up over repetitions; a failed repetition must never hide behind the others' median.
SUMMED = ("requests", "requests_ok")


def _combine(reps: list[dict[str, float]]) -> dict[str, float]:
    """One figure per metric: the median over repetitions, except counts (summed) and the error rate
    (failed / sent over every repetition). A metric that only some repetitions have (time to first
    answer token: only where the model reasoned) is the median of those that have it."""
    keys = dict.fromkeys(k for r in reps for k in r)
    metrics = {k: _median([r.get(k) for r in reps]) for k in keys}
    for key in SUMMED:
        metrics[key] = float(sum(r.get(key, 0.0) for r in reps))
    sent = metrics["requests"]
    metrics["error_rate"] = (sent - metrics["requests_ok"]) / sent if sent else float("nan")
    return metrics


def run(
    target: Target,
    workload: Workload,
    load: Load,
    prompts: PromptBuilder,
    profile: HardwareProfile,
    *,
    devices: int = 1,
    repetitions: int = 3,
    slo: SLO = SLO(),
    budget_s: float | None = None,
    max_model_len: int | None = None,
    ray_address: str | None = None,
) -> Run:
    """Run the load `repetitions` times against `target`.

    Each repetition sends fresh prompts (seed + repetition) and fresh arrival times after its own
    warm-up, with telemetry sampled throughout; the server's liveness is checked after each. With
    `budget_s`, `repetitions` is the minimum: more run until KEY_METRIC's median is within +-PRECISION
    or the next repetition would end after `budget_s` seconds. A repetition whose load generator could
    not keep up ends the run (Run.client_saturation says why): its numbers measure the client.
    A workload read from a file drops the entries longer than `max_model_len` (the server's limit).
    `load.workers` > 1 sends each repetition from that many load-generator processes, started once for
    the whole run (perfsuite.workers), or Ray actors on the cluster at `ray_address`.
    """
    if repetitions < 1:
        raise MeasurementError(f"repetitions={repetitions}: at least one is needed")
    price = profile.price_per_hour * devices
    # Duration mode cycles through these; a trace replays to its end unless capped.
    count = load.warmup_requests + (load.requests or (10**9 if load.arrival == "trace" else 4096))
    reps, clients, errors, series, ok_records, parts = [], [], [], [], [], []
    error_count, saturation = 0, None
    started, stop = time.monotonic(), None
    sources = target.telemetry
    with _pinned(target.client_cpus), open_workers(load.workers, ray_address) as generator:
        for i in itertools.count():
            if i >= repetitions and (stop := _stop_reason(reps, started, budget_s)):
                break
            if load.arrival == "sessions":
                specs = prompts.sessions(workload, load.warmup_requests + load.sessions, load.seed + i, max_model_len)
            else:
                specs = prompts.requests(workload, count, seed=load.seed + i, max_model_len=max_model_len)
            tel = None
            if sources.enabled:
                tel = Telemetry(sources.procs, sources.metrics_url, sources.metric_names, use_gpu=profile.kind == "gpu")
                tel.start()
            try:
                result = generator.run(target.endpoint, target.protocol, specs, load, target.headers, repetition=i)
            finally:
                tsum = tel.stop() if tel else {}
            if target.check_alive:
                target.check_alive(f"repetition {i + 1} of {workload.name}")
            m = summarize(result.records, result.wall_s, slo)
            m.update({k: v for k, v in tsum.items() if isinstance(v, (int, float))})
            add_costs(m, price)
            reps.append(m)
            if load.stages:
                parts.append(stage_breakdown(load.stages, result.records, result.started))
            elif load.arrival == "sessions":
                parts.append(turn_breakdown(result.records))
            clients.append(result.client.to_dict())
            failed = [r.error for r in result.records if r.error]
            error_count += len(failed)
            errors += failed
            ok_records += [r for r in result.records if r.ok]
            if tel:
                series.append(
                    [{"t": round(s["t"], 2), "mem_used_gb": round(s["mem_used"] / 1e9, 4)} for s in tel.samples]
                )
            if saturation := client_saturation(
                result.client, load, latency_ms=m.get("ttft_p50_ms"), cycle_ms=m.get("e2e_p50_ms")
            ):
                stop = "client saturated"
                break
    return Run(
        metrics=_combine(reps),
        repetitions=tuple(reps),
        stopping={"reason": stop, "repetitions": len(reps), "seconds": round(time.monotonic() - started, 1)},
        client=tuple(clients),
        memory_series=tuple(series),
        distributions=distributions(ok_records),
        errors=tuple(errors[:20]),
        error_count=error_count,
        client_saturation=saturation,
        notes=tuple(prompts.sourced(workload, max_model_len).notes()) if workload.source else (),
        breakdown={("stages" if load.stages else "turns"): _median_rows(parts)} if parts else {},
    )


def _median_rows(runs: list[list[dict]]) -> list[dict]:
    """Rows of several repetitions (one list of rows each, same length) as one list: each number the
    median over repetitions (None where none has one), other fields as the first repetition's."""
    rows = []
    for same in zip(*runs):
        row = dict(same[0])
        for key, value in same[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values = [r[key] for r in same if r.get(key) is not None]
                row[key] = float(statistics.median(values)) if values else None
        rows.append(row)
    return rows
