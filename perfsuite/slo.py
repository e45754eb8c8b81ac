"""The service-level objective: the one type that goodput, load sweeps and the cost calculator share."""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfsuite.errors import UsageError

__all__ = ["SLO", "meets_slo", "sustainable_point"]


@dataclass(frozen=True)
class SLO:
    """TTFT and TPOT targets. A request is good (goodput) when its own TTFT <= ttft_ms and TPOT <= tpot_ms;
    a sweep's rate meets the SLO when, at `percentile`, both hold and no request failed.

    The default percentile is p90: a sweep point has a few dozen requests, so its p99 is its slowest
    request, which is mostly noise on a shared machine."""

    ttft_ms: float = 1000.0
    tpot_ms: float = 100.0
    percentile: int = 90

    def __post_init__(self) -> None:
        if self.percentile not in (50, 90, 99):
            raise UsageError(f"SLO percentile {self.percentile}: use 50, 90 or 99")
        if not (self.ttft_ms >= 0 and self.tpot_ms >= 0):
            raise UsageError(f"SLO TTFT {self.ttft_ms} ms and TPOT {self.tpot_ms} ms must be >= 0")


def meets_slo(point: dict, slo: SLO) -> bool:
    """Whether a sweep point (rate, throughput, percentiles, error rate) meets `slo`."""
    p = slo.percentile
    ttft, tpot = point.get(f"ttft_p{p}_ms"), point.get(f"tpot_p{p}_ms")
    if ttft is None or tpot is None or not (math.isfinite(ttft) and math.isfinite(tpot)):
        return False
    return point.get("error_rate", 0) == 0 and ttft <= slo.ttft_ms and tpot <= slo.tpot_ms


def sustainable_point(points: list[dict], slo: SLO) -> dict | None:
    """The sweep point of highest offered rate that meets the SLO (None if none does).

    Only rates below the first one that misses count: a lucky point past the knee is not capacity."""
    best = None
    for point in sorted(points, key=lambda x: x["rate"]):
        if not meets_slo(point, slo):
            break
        best = point
    return best
