"""The load sweep: the throughput-latency curve of each framework, and the highest rate that meets the SLO.

The cost calculator (perfsuite calc, the HTML report) rests on that rate, not on the peak throughput of a
closed loop that no latency target was asked of. Kept short on the CPU: Poisson rates from 2 req/s up,
3 s of arrivals each (at least 16 requests), stopping after the first rate that misses the SLO.
"""

import pytest

from perfsuite.slo import SLO, meets_slo, sustainable_point

pytestmark = pytest.mark.perf


def test_sweep(serving, perf, ray_serve_shares_the_client_core):
    """Chat traffic at rising Poisson rates until the SLO breaks: p90 TTFT and TPOT under the target."""
    if ray_serve_shares_the_client_core:
        pytest.skip(
            "Ray Serve on 2 cores: its proxy and Ray's own processes share the client's core, and the client's "
            "self-check refused the sweep's first point in CI (Poisson 2 req/s, 16 requests: send lag p99 161 ms, "
            "2 requests late, client CPU 4%). Ray's processes at nice 10 passed it twice here, but Ray Serve's "
            "dataset and trace throughput then read 32-37% under the run before (not side by side: unsettled), "
            "so that was not kept. Give the client a core of its own (more cores) to measure it"
        )
    if perf.profile == "cpu":
        # The tiny model on 2 cores: vLLM's open-loop chat met this up to ~96 req/s; a server without
        # continuous batching may miss it from the start (then the sweep says capacity < 2 req/s).
        slo, rates = SLO(ttft_ms=250, tpot_ms=50, percentile=90), (2, 4, 8, 16, 32, 64, 96, 128)
    else:
        slo, rates = SLO(ttft_ms=500, tpot_ms=50, percentile=90), (1, 2, 4, 8, 16, 32, 64, 128, 256)
    m = perf.sweep(serving, "chat", rates, requests=16, seconds=3.0, slo=slo)
    points = m.sweep["points"]
    assert [p["rate"] for p in points] == sorted(rates)[: len(points)]
    assert all(meets_slo(p, slo) for p in points[:-1])  # it stopped at the first miss
    best = sustainable_point(points, slo)
    if best is None:
        assert m.sweep["rate"] is None
        assert any("capacity is below 2 req/s" in note for note in m.to_dict()["notes"]), m.notes
        return
    assert m.sweep["rate"] == best["rate"] == max(p["rate"] for p in points if meets_slo(p, slo))
    assert m.metrics["request_throughput"] == pytest.approx(m.sweep["throughput_rps"], rel=1e-3)
    # Below capacity an open loop's throughput follows the offered rate (a few dozen requests: noisy).
    assert points[0]["request_throughput"] == pytest.approx(points[0]["rate"], rel=0.5)
