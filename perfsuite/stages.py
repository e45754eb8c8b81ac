"""Staged loads: a list of stages, each a request rate (open) or a number of users (closed) held for a
duration or ramped linearly from the previous stage's, for warm-up, step and spike traffic.

This module holds the arithmetic: the arrival times of a rate that changes over time (a Poisson
process thinned from its peak rate, seeded), how many users are active at a moment, and the numbers
of each stage (requests, throughput, latency percentiles) from the records of one run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from perfsuite.errors import UsageError

__all__ = ["Stage", "check_stages", "rate_at", "users_at", "arrival_offsets", "stage_of", "stage_breakdown"]


@dataclass(frozen=True)
class Stage:
    """`duration_s` seconds at `rate` requests/s (open arrivals) or with `concurrency` users (a closed
    loop). With `ramp`, the rate or the users move linearly from the previous stage's value (0 before
    the first stage) to this one's over the stage; without, they step to it."""

    duration_s: float
    rate: float | None = None
    concurrency: int | None = None
    ramp: bool = False

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v is not False}


def check_stages(stages: Sequence[Stage]) -> str:
    """'rate' or 'concurrency': what every stage sets; UsageError naming the stage otherwise."""
    if not stages:
        raise UsageError("Load.staged: give at least one Stage(duration_s, rate=... or concurrency=...)")
    kinds = set()
    for i, s in enumerate(stages, 1):
        if not isinstance(s, Stage):
            raise UsageError(f"stage {i}: expected a perfsuite.Stage, got {type(s).__name__}")
        if not (isinstance(s.duration_s, (int, float)) and math.isfinite(s.duration_s) and s.duration_s > 0):
            raise UsageError(f"stage {i}: duration_s={s.duration_s!r} must be a finite number of seconds > 0")
        if (s.rate is None) == (s.concurrency is None):
            raise UsageError(f"stage {i}: give rate=R (requests/s) or concurrency=N (users), not both or neither")
        if s.rate is not None and not (isinstance(s.rate, (int, float)) and math.isfinite(s.rate) and s.rate >= 0):
            raise UsageError(f"stage {i}: rate={s.rate!r} must be a finite number >= 0 (0: a pause)")
        if s.concurrency is not None and not (isinstance(s.concurrency, int) and s.concurrency >= 0):
            raise UsageError(f"stage {i}: concurrency={s.concurrency!r} must be an integer >= 0")
        kinds.add("rate" if s.rate is not None else "concurrency")
    if len(kinds) > 1:
        raise UsageError("Load.staged: every stage sets a rate, or every stage sets a concurrency; not a mix")
    kind = kinds.pop()
    if kind == "rate" and not any(s.rate for s in stages):
        raise UsageError("Load.staged: every stage has rate 0; no request would be sent")
    if kind == "concurrency" and not any(s.concurrency for s in stages):
        raise UsageError("Load.staged: every stage has concurrency 0; no request would be sent")
    return kind


def _value(s: Stage) -> float:
    return float(s.rate if s.rate is not None else s.concurrency)


def _level(stages: Sequence[Stage], t: float) -> float:
    """The rate or users at `t` seconds from the start (0 after the last stage)."""
    start, before = 0.0, 0.0
    for s in stages:
        end = start + s.duration_s
        if t < end:
            if s.ramp:
                return before + (_value(s) - before) * (t - start) / s.duration_s
            return _value(s)
        start, before = end, _value(s)
    return 0.0


def rate_at(stages: Sequence[Stage], t: float) -> float:
    """Requests/s asked for at `t` seconds from the start."""
    return _level(stages, t)


def users_at(stages: Sequence[Stage], t: float) -> int:
    """Users active at `t` seconds from the start (a ramp adds or removes them one at a time)."""
    return int(math.floor(_level(stages, t) + 1e-9))


def total_seconds(stages: Sequence[Stage]) -> float:
    return float(sum(s.duration_s for s in stages))


def arrival_offsets(stages: Sequence[Stage], seed: int, repetition: int) -> Iterator[float]:
    """Arrival times (s from the start) of a Poisson process whose rate follows the stages: candidates
    at the peak rate, each kept with probability rate(t) / peak (thinning, exact for any rate curve)."""
    peak = max(_value(s) for s in stages)
    rng = random.Random(f"perfsuite-stages:{seed}:{repetition}")
    end, t = total_seconds(stages), 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return
        if rng.random() * peak < rate_at(stages, t):
            yield t


def stage_of(stages: Sequence[Stage], t: float) -> int:
    """The index of the stage running at `t` seconds from the start (the last one after the end)."""
    start = 0.0
    for i, s in enumerate(stages):
        start += s.duration_s
        if t < start:
            return i
    return len(stages) - 1


def stage_breakdown(stages: Sequence[Stage], records: list, start: float) -> list[dict]:
    """Per stage, from the requests sent in it: what was asked, requests sent and completed, completed
    requests/s over the stage's length, TTFT and TPOT p50/p90 (ms). `start` is the phase's start."""
    groups: list[list] = [[] for _ in stages]
    for r in records:
        groups[stage_of(stages, r.send - start)].append(r)
    out = []
    for s, group in zip(stages, groups):
        ok = [r for r in group if r.error is None and r.first_token is not None]
        ttft = [(r.first_token - r.send) * 1e3 for r in ok]
        tpot = [(r.end - r.first_token) * 1e3 / (r.output_tokens - 1) for r in ok if (r.output_tokens or 0) > 1]
        row = {**s.to_dict(), "requests": len(group), "requests_ok": len(ok)}
        row["request_throughput"] = len(ok) / s.duration_s
        for name, values in (("ttft", ttft), ("tpot", tpot)):
            for p in (50, 90):
                row[f"{name}_p{p}_ms"] = float(np.percentile(values, p)) if values else None
        out.append(row)
    return out
