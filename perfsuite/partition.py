"""A load split across load-generator workers before the start, deterministically from the seed.

One worker's part of a measured phase is a Share. The rules (docs/scale-out.md):
- closed loops: user k goes to worker k mod N, with the requests in proportion (each worker's users
  take from their own list; a staged loop's users keep their global index, so a stage lets in the
  same users);
- open loads (Poisson, constant, trace, staged rates): one global schedule of (request, due offset)
  is drawn exactly as one worker would, then dealt round-robin, so that the union of the shares is
  that schedule; a cap on requests in flight is divided the same way;
- the warm-up requests are dealt round-robin too, so every worker opens its connections before the start.

Workers == 1 gives one share holding the whole load: the single-process load generator
(perfsuite.loadgen.run_load) runs through the same path.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass

from perfsuite.errors import UsageError
from perfsuite.stages import arrival_offsets
from perfsuite.workloads import RequestSpec

__all__ = ["Share", "partition", "global_schedule", "split_count"]

OPEN_DURATION_CAP = 1_000_000  # arrivals drawn at most for a duration-bounded open load (a typo'd rate)


@dataclass(frozen=True)
class Share:
    """What one worker sends: `warmup` first (not measured), then its measured part.

    Closed loops: `users` are the global indices of its users, who take `specs` in order (cycled when
    `cycle`, i.e. the load ends by duration), `requests` of them in all (None: until the duration).
    Open loads: `arrivals`, (request, seconds after the phase's start it is due), in order, and
    `concurrency`, this worker's cap on requests in flight (None: none)."""

    worker: int
    workers: int
    warmup: tuple[RequestSpec, ...]
    users: tuple[int, ...] = ()
    specs: tuple[RequestSpec, ...] = ()
    requests: int | None = None
    cycle: bool = False
    arrivals: tuple[tuple[RequestSpec, float], ...] = ()
    concurrency: int | None = None

    @property
    def closed_loop(self) -> bool:
        return bool(self.users)

    @property
    def warmup_users(self) -> int:
        """How many warm-up requests are in flight at once: the share's users, else its cap, else all."""
        n = len(self.warmup)
        return min(len(self.users) or self.concurrency or n, n)

    def to_dict(self) -> dict:
        """JSON for a worker process or Ray actor (no pickle crosses a process)."""
        return {
            "worker": self.worker,
            "workers": self.workers,
            "warmup": [asdict(s) for s in self.warmup],
            "users": list(self.users),
            "specs": [asdict(s) for s in self.specs],
            "requests": self.requests,
            "cycle": self.cycle,
            "arrivals": [[asdict(s), at] for s, at in self.arrivals],
            "concurrency": self.concurrency,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Share:
        return cls(
            worker=d["worker"],
            workers=d["workers"],
            warmup=tuple(RequestSpec(**s) for s in d["warmup"]),
            users=tuple(d["users"]),
            specs=tuple(RequestSpec(**s) for s in d["specs"]),
            requests=d["requests"],
            cycle=d["cycle"],
            arrivals=tuple((RequestSpec(**s), float(at)) for s, at in d["arrivals"]),
            concurrency=d["concurrency"],
        )


def split_count(total: int | None, workers: int) -> list[int | None]:
    """`total` divided into `workers` parts that differ by at most one, the larger first (None stays None)."""
    if total is None:
        return [None] * workers
    return [total // workers + (1 if w < total % workers else 0) for w in range(workers)]


def _arrival_gaps(load, repetition: int):
    """Seconds between arrivals; Poisson gaps are drawn from (load.seed, repetition), fresh for each repetition."""
    rng = random.Random(f"perfsuite-arrivals:{load.seed}:{repetition}")
    while True:
        yield rng.expovariate(load.rate) if load.arrival == "poisson" else 1.0 / load.rate


def _offsets(load, specs, repetition: int):
    """(spec, seconds after the phase's start it is due) for each request of an open load: a trace's
    own times (from its first measured request, / load.speedup), else the arrival process's gaps."""
    if load.arrival == "staged":
        yield from zip(specs, arrival_offsets(load.stages, load.seed, repetition))
        return
    if load.arrival == "trace":
        base = None
        for spec in specs:
            if spec.at_s is None:
                raise UsageError(
                    "Load.replay() needs a trace workload (requests with arrival times): Workload.from_file(trace)"
                )
            base = spec.at_s if base is None else base
            yield spec, (spec.at_s - base) / load.speedup
        return
    offset = 0.0
    for spec, gap in zip(specs, _arrival_gaps(load, repetition)):
        yield spec, offset
        offset += gap


def global_schedule(load, specs, repetition: int) -> list[tuple[RequestSpec, float]]:
    """The open load's measured arrivals, in order: at most load.requests of them, and none due at or
    after its duration (phase_seconds). `specs` are the measured requests (cycled when a duration ends
    the load, except for a trace, which ends where it ends)."""
    seconds = load.phase_seconds()
    if seconds and load.arrival != "trace":
        specs = itertools.cycle(specs)
    out = []
    for spec, at in _offsets(load, specs, repetition):
        if (load.requests is not None and len(out) >= load.requests) or (seconds and at >= seconds):
            break
        if len(out) >= OPEN_DURATION_CAP:
            raise UsageError(
                f"Load {load.label()}: more than {OPEN_DURATION_CAP:,} arrivals in its duration; "
                "lower the rate or the duration"
            )
        out.append((spec, at))
    return out


def partition(load, specs: list[RequestSpec], workers: int, repetition: int) -> list[Share]:
    """The shares of `workers` workers for one repetition of `load` over `specs` (warm-up first, then
    the measured requests). Refused, naming the numbers, where a worker would have nothing to do."""
    if not (isinstance(workers, int) and workers >= 1):
        raise UsageError(f"workers={workers!r}: must be an integer >= 1 (load-generator processes)")
    warm, measured = specs[: load.warmup_requests], specs[load.warmup_requests :]
    warmups = [tuple(warm[w::workers]) for w in range(workers)]
    if load.closed_loop:
        users = load.concurrency if load.arrival != "staged" else max(s.concurrency for s in load.stages)
        if users < workers:
            raise UsageError(
                f"Load {load.label()} with workers={workers}: a closed loop's {users} users are split across "
                f"workers, so use at most {users} workers (or more users)"
            )
        counts = split_count(load.requests, workers)
        return [
            Share(
                worker=w,
                workers=workers,
                warmup=warmups[w],
                users=tuple(range(w, users, workers)),
                specs=tuple(measured[w::workers]),
                requests=counts[w],
                cycle=bool(load.phase_seconds()),
            )
            for w in range(workers)
        ]
    schedule = global_schedule(load, measured, repetition)
    caps = split_count(load.concurrency, workers)
    if load.concurrency is not None and load.concurrency < workers:
        raise UsageError(
            f"Load {load.label()} with workers={workers}: its cap of {load.concurrency} requests in flight is "
            f"divided among workers, so use at most {load.concurrency} workers (or a higher cap)"
        )
    return [
        Share(worker=w, workers=workers, warmup=warmups[w], arrivals=tuple(schedule[w::workers]), concurrency=caps[w])
        for w in range(workers)
    ]
