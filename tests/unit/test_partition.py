"""How a load is split across load-generator workers (perfsuite.partition): before the start, the
same for the same seed, and so that the shares together are exactly the one-worker load."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite import Load, Stage, UsageError
from perfsuite.partition import Share, global_schedule, partition, split_count
from perfsuite.workloads import RequestSpec


def _specs(n: int, at: bool = False) -> list[RequestSpec]:
    return [RequestSpec(f"p{i}", 10 + i % 7, 4 + i % 3, at_s=0.25 * i if at else None) for i in range(n)]


@given(total=st.integers(0, 10_000), workers=st.integers(1, 64))
def test_counts_are_split_into_parts_that_add_up_and_differ_by_at_most_one(total, workers):
    parts = split_count(total, workers)
    assert sum(parts) == total and max(parts) - min(parts) <= 1 and parts == sorted(parts, reverse=True)


open_loads = st.one_of(
    st.builds(
        lambda r, n, s: Load.poisson(r, requests=n, seed=s, warmup_requests=3),
        st.floats(0.5, 500),
        st.integers(1, 300),
        st.integers(0, 9),
    ),
    st.builds(lambda r, n: Load.constant(r, requests=n, warmup_requests=2), st.floats(0.5, 500), st.integers(1, 300)),
    st.builds(
        lambda r, d: Load.poisson(r, requests=None, duration_s=d, warmup_requests=0),
        st.floats(1, 200),
        st.floats(0.1, 3),
    ),
    st.builds(
        lambda s: Load.staged(Stage(1, rate=5), Stage(1, rate=40, ramp=True), seed=s, warmup_requests=1),
        st.integers(0, 9),
    ),
)


@given(load=open_loads, workers=st.integers(1, 8), repetition=st.integers(0, 3))
def test_open_arrivals_are_one_global_schedule_dealt_out(load, workers, repetition):
    specs = _specs(load.warmup_requests + (load.requests or 400))
    shares = partition(load, specs, workers, repetition)
    union = sorted((at, spec.prompt) for share in shares for spec, at in share.arrivals)
    one = partition(load, specs, 1, repetition)[0].arrivals
    assert union == sorted((at, spec.prompt) for spec, at in one)
    assert one == tuple(global_schedule(load, specs[load.warmup_requests :], repetition))
    assert [s.warmup for s in shares] == [tuple(specs[: load.warmup_requests][w::workers]) for w in range(workers)]
    for share in shares:  # each worker's part is in time order and spread over the whole schedule
        times = [at for _, at in share.arrivals]
        assert times == sorted(times)
    assert partition(load, specs, workers, repetition) == shares  # deterministic from the seed


def test_a_trace_is_split_at_its_own_times():
    load = Load.replay(2.0)
    specs = _specs(9, at=True)
    shares = partition(load, specs, 2, 0)
    assert [at for _, at in shares[0].arrivals] == [0.0, 0.25, 0.5, 0.75, 1.0]  # 0.5 s apart / 2
    assert [at for _, at in shares[1].arrivals] == [0.125, 0.375, 0.625, 0.875]


@given(users=st.integers(1, 64), requests=st.integers(1, 500), workers=st.integers(1, 8))
def test_closed_loop_users_and_requests_are_split_across_workers(users, requests, workers):
    if users < workers:
        with pytest.raises(UsageError, match=f"{users} users are split across workers"):
            partition(Load.closed(users, requests=requests), _specs(8 + requests), workers, 0)
        return
    specs = _specs(8 + requests)
    shares = partition(Load.closed(users, requests=requests), specs, workers, 0)
    assert sorted(u for s in shares for u in s.users) == list(range(users))
    assert sum(s.requests for s in shares) == requests
    assert sorted(x.prompt for s in shares for x in s.specs) == sorted(x.prompt for x in specs[8:])
    assert all(len(s.specs) >= s.requests for s in shares)


def test_a_staged_closed_loop_keeps_each_users_global_index():
    load = Load.staged(Stage(2, concurrency=2), Stage(2, concurrency=5))
    shares = partition(load, _specs(100), 2, 0)
    assert [s.users for s in shares] == [(0, 2, 4), (1, 3)]
    assert all(s.cycle for s in shares)  # a staged load ends with its stages


def test_a_cap_on_requests_in_flight_is_divided_and_cannot_be_below_the_workers():
    load = Load.poisson(10.0, requests=20, concurrency=5)
    assert [s.concurrency for s in partition(load, _specs(28), 2, 0)] == [3, 2]
    with pytest.raises(UsageError, match="cap of 5 requests in flight"):
        partition(load, _specs(28), 6, 0)


def test_sessions_and_bad_worker_counts_are_refused_by_name():
    with pytest.raises(UsageError, match="sessions_of.*workers=2.*run sessions with workers=1"):
        Load.sessions_of(2, 4, workers=2)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(UsageError, match="workers="):
            partition(Load.closed(2), _specs(80), bad, 0)


def test_a_share_survives_json():
    import json

    for load in (Load.closed(3, requests=10), Load.poisson(4.0, requests=10, concurrency=4)):
        for share in partition(load, _specs(30, at=True), 2, 1):
            assert Share.from_dict(json.loads(json.dumps(share.to_dict()))) == share
