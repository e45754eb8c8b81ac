"""The load sweep: the throughput-latency curve of each framework, and the highest rate that meets the SLO.

The cost calculator (perfsuite calc, the HTML report) rests on that rate, not on the peak throughput of a
closed loop that no latency target was asked of. Kept short on the CPU: up to seven Poisson rates, 3 s of arrivals
each (at least 24 requests), stopping after the first rate that misses the SLO.
"""

import pytest

from perfsuite.calculator import SLOTarget, meets_slo

pytestmark = pytest.mark.perf


def test_sweep(serving, perf):
    """Chat traffic at rising Poisson rates until the SLO breaks: p90 TTFT and TPOT under the target."""
    if perf.profile == "cpu":
        # The tiny model on 2 cores: TTFT p90 ~20 ms unloaded; open-loop chat still met this at 48 req/s.
        slo, rates = SLOTarget(ttft_ms=250, tpot_ms=50, percentile=90), (8, 16, 32, 48, 64, 96, 128)
    else:
        slo, rates = SLOTarget(ttft_ms=500, tpot_ms=50, percentile=90), (1, 2, 4, 8, 16, 32, 64, 128)
    m = perf.sweep(serving, "chat", rates, requests=24, seconds=3.0, slo=slo)
    sweep = m["sweep"]
    points = sweep["points"]
    assert [p["rate"] for p in points] == sorted(rates)[: len(points)]
    assert all(meets_slo(p, slo) for p in points[:-1])
    assert sweep["rate"] == max(p["rate"] for p in points if meets_slo(p, slo))
    assert m["metrics"]["request_throughput"] == pytest.approx(sweep["throughput_rps"], rel=1e-3)
    # Below capacity an open loop's throughput follows the offered rate (24 requests: allow for noise).
    assert points[0]["request_throughput"] == pytest.approx(points[0]["rate"], rel=0.5)
