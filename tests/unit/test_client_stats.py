"""The load generator watches itself: ClientStats from real runs against a hand-written server, and
client_saturation's verdict on them."""

import asyncio
import time
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from test_loadgen_parsing import FakeServer, good, spec

from perfsuite.loadgen import TOP_SEND_LAGS, ClientLimits, ClientStats, Endpoint, Load, client_saturation, run_load
from perfsuite.protocols import OpenAIProtocol


def run(load, n, handler=good, hog_s: float = 0.0):
    """run_load against a fake server; with hog_s, a task in the client's loop blocks it that long, 10 times."""
    server = FakeServer(handler)

    async def hog():
        for _ in range(10):
            await asyncio.sleep(0.02)
            time.sleep(hog_s)  # the client's own loop is busy: nothing else runs meanwhile

    async def main():
        async with server.running() as url:
            measured = run_load(Endpoint(url, "m"), OpenAIProtocol(), [spec(i, 2) for i in range(1, n + 1)], load)
            if not hog_s:
                return await asyncio.wait_for(measured, 60)
            done, _ = await asyncio.wait_for(asyncio.gather(measured, hog()), 60)
            return done

    return asyncio.run(main())


def test_an_idle_client_keeps_up_with_a_constant_rate():
    load = Load.constant(50.0, requests=20, warmup_requests=2)
    result = run(load, 22)
    c = result.client
    assert c.requests == len(result.records) == 20
    assert c.target_rate == 50.0 and abs(c.scheduled_rate - 50.0) < 1e-6
    assert abs(c.achieved_rate - 50.0) / 50.0 < 0.05
    assert 0 <= c.send_lag_p50_ms <= c.send_lag_p99_ms < 20
    assert c.loop_lag_p99_ms is not None and c.loop_lag_max_ms >= c.loop_lag_p99_ms
    assert c.cpu_percent > 0
    assert client_saturation(c, load) is None
    assert set(c.to_dict()) == set(ClientStats.__dataclass_fields__)


def test_closed_loop_has_no_target_rate_and_a_small_turnaround():
    load = Load.closed(2, requests=8, warmup_requests=0)
    c = run(load, 8).client
    assert c.target_rate is None and c.scheduled_rate is None and c.achieved_rate > 0
    assert c.send_lag_p99_ms < 20
    assert client_saturation(c, load) is None


def test_a_blocked_client_loop_is_refused_and_told_what_to_change():
    load = Load.constant(40.0, requests=16, warmup_requests=0)
    c = run(load, 16, hog_s=0.12).client
    assert c.loop_lag_max_ms > 100 and c.send_lag_p99_ms > 50
    why = client_saturation(c, load)
    assert why is not None
    assert "send lag p99" in why and "event-loop lag p99" in why
    assert "not the server" in why and "lower rate" in why and "scale-out" in why


def stats(send_p99=1.0, loop_p99=1.0, achieved=10.0, scheduled=10.0, closed=False) -> ClientStats:
    return ClientStats(
        requests=100,
        target_rate=None if closed else 10.0,
        scheduled_rate=None if closed else scheduled,
        achieved_rate=achieved,
        send_lag_p50_ms=send_p99 / 2,
        send_lag_p99_ms=send_p99,
        loop_lag_p99_ms=loop_p99,
        loop_lag_max_ms=loop_p99 * 2,
        cpu_percent=12.0,
    )


lags = st.floats(0, 1e4, allow_nan=False)
rates = st.floats(0.01, 1e4, allow_nan=False)


@given(send=lags, loop=lags, achieved=rates, scheduled=rates)
def test_saturation_is_exactly_a_limit_crossed(send, loop, achieved, scheduled):
    limits = ClientLimits()
    load = Load.poisson(10.0, requests=10)
    why = client_saturation(stats(send, loop, achieved, scheduled), load, limits)
    crossed = {
        "send lag": send > limits.send_lag_p99_ms,
        "event-loop lag": loop > limits.loop_lag_p99_ms,
        "achieved rate": achieved < limits.min_rate_ratio * scheduled,
    }
    assert (why is None) == (not any(crossed.values()))
    for what, over in crossed.items():
        assert (what in (why or "")) == over


@given(achieved=rates, scheduled=rates)
def test_a_closed_loop_is_never_refused_for_its_rate(achieved, scheduled):
    assert client_saturation(stats(achieved=achieved, closed=True), Load.closed(4)) is None


def test_message_names_the_numbers_the_limit_and_the_load():
    why = client_saturation(stats(send_p99=412.34), Load.closed(64, requests=10), ClientLimits(send_lag_p99_ms=25))
    assert "send lag p99 412.3 ms > 25 ms" in why and "c64-n10" in why and "fewer users" in why


def test_unmeasured_numbers_are_not_a_verdict():
    empty = ClientStats(0, 10.0, None, None, None, None, None, None, 0.0)
    assert client_saturation(empty, Load.poisson(10.0, requests=1)) is None


def test_a_lag_small_against_the_measured_latency_is_accepted():
    """A 95 ms loop lag (Ray Serve's proxy on the client's core) against a 1.3 s TTFT: within 10%."""
    load = Load.closed(8, requests=48)
    assert client_saturation(stats(loop_p99=95.0), load, latency_ms=1300.0) is None
    why = client_saturation(stats(loop_p99=95.0), load, latency_ms=15.0)  # vLLM's TTFT: refused
    assert "event-loop lag p99 95.0 ms > 50 ms" in why
    assert "> 130 ms" in client_saturation(stats(loop_p99=200.0), load, latency_ms=1300.0)


def test_one_late_send_is_a_hiccup_two_are_a_client_that_cannot_keep_up():
    load = Load.poisson(2.0, requests=16)
    one = replace(stats(send_p99=282.0), requests=16, send_lag_top_ms=(282.3, 1.2, 1.0))
    assert client_saturation(one, load) is None
    two = replace(one, send_lag_top_ms=(282.3, 75.0, 1.0))
    assert "send lag p99 282.0 ms > 50 ms (2 requests late)" in client_saturation(two, load)


def test_more_late_sends_than_are_kept_still_count():
    many = replace(stats(send_p99=400.0), requests=5000, send_lag_top_ms=(500.0,) * TOP_SEND_LAGS)
    assert client_saturation(many, Load.poisson(100.0, requests=5000)) is not None


def test_a_closed_loops_send_lag_is_judged_against_the_users_cycle():
    """In a closed loop no latency counts a send lag (each starts at its send): it only delays the user's
    next request. 86 ms twice (Ray Serve's multi-turn sessions in CI, TTFT far under a second) against a
    cycle of a 1.2 s request plus 0.2 s of thinking is under 10% of it: accepted. The same lag against a
    300 ms cycle, or in an open load (where it delays a request against its schedule), is refused."""
    late = ClientStats(24, None, None, 1.0, 2.0, 86.0, None, 3.0, 5.0, send_lag_top_ms=(86.0, 80.0, 3.0))
    sessions = Load.sessions_of(2, sessions=8, think_time_s=0.2)
    assert client_saturation(late, sessions) is not None  # without a cycle: the 50 ms limit
    assert client_saturation(late, sessions, latency_ms=300.0, cycle_ms=1200.0) is None
    why = client_saturation(late, Load.closed(2, requests=24), latency_ms=100.0, cycle_ms=300.0)
    assert "send lag p99 86.0 ms > 50 ms (2 requests late)" in why
    open_late = ClientStats(24, 2.0, 2.0, 2.0, 2.0, 86.0, None, 3.0, 5.0, send_lag_top_ms=(86.0, 80.0, 3.0))
    assert client_saturation(open_late, Load.poisson(2.0, requests=24), cycle_ms=1200.0) is not None
