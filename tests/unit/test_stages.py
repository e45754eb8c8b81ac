"""Staged loads (perfsuite.stages, Load.staged): the rate and user curves, the thinned Poisson arrivals,
the per-stage numbers, and the errors for stages that cannot run."""

import statistics

import pytest

from perfsuite import Load, Stage, UsageError
from perfsuite.loadgen import RequestRecord, _until_active
from perfsuite.stages import arrival_offsets, rate_at, stage_breakdown, stage_of, users_at

STEP = (Stage(10, rate=2), Stage(10, rate=10, ramp=True), Stage(5, rate=20))


def test_rates_step_and_ramp_linearly():
    assert rate_at(STEP, 0) == 2 and rate_at(STEP, 9.99) == 2
    assert rate_at(STEP, 10) == 2 and rate_at(STEP, 15) == pytest.approx(6)
    assert rate_at(STEP, 19.99) == pytest.approx(10, 0.01)
    assert rate_at(STEP, 20) == 20 and rate_at(STEP, 25) == 0  # after the last stage: nothing


def test_users_ramp_one_at_a_time():
    stages = (Stage(4, concurrency=4, ramp=True), Stage(2, concurrency=1))
    assert [users_at(stages, t) for t in (0, 0.99, 1, 2.5, 3.99, 4, 5.9)] == [0, 0, 1, 2, 3, 1, 1]


def test_a_waiting_user_wakes_when_its_stage_lets_it_in():
    stages = (Stage(4, concurrency=4, ramp=True), Stage(2, concurrency=1))
    assert _until_active(stages, 0, 0.0) == pytest.approx(1.0, abs=0.011)
    assert _until_active(stages, 2, 0.5) == pytest.approx(2.5, abs=0.011)
    assert _until_active(stages, 0, 4.5) == 0  # user 0 stays in the one-user stage
    assert _until_active(stages, 3, 4.5) is None  # user 3 is never active again


def test_arrivals_follow_the_rate_curve_and_are_seeded():
    counts = []
    for rep in range(20):
        times = list(arrival_offsets(STEP, seed=0, repetition=rep))
        assert times == sorted(times) and all(0 <= t < 25 for t in times)
        counts.append([sum(1 for t in times if lo <= t < hi) for lo, hi in ((0, 10), (10, 20), (20, 25))])
    expected = (20, 60, 100)  # 2/s x 10 s, the ramp's mean 6/s x 10 s, 20/s x 5 s
    for stage, want in enumerate(expected):
        assert statistics.mean(c[stage] for c in counts) == pytest.approx(want, rel=0.12)
    assert list(arrival_offsets(STEP, 0, 3)) == list(arrival_offsets(STEP, 0, 3))
    assert list(arrival_offsets(STEP, 0, 3)) != list(arrival_offsets(STEP, 0, 4))


def test_breakdown_groups_requests_by_the_stage_they_were_sent_in():
    start = 100.0

    def rec(send, ttft, ok=True):
        r = RequestRecord(send=start + send, expected_input=10, expected_output=5)
        if ok:
            r.first_token, r.end, r.output_tokens = start + send + ttft, start + send + ttft + 0.4, 5
        else:
            r.error = "HTTP 500"
        return r

    stages = (Stage(2, rate=1), Stage(2, rate=4))
    rows = stage_breakdown(stages, [rec(0.1, 0.05), rec(1.5, 0.07), rec(2.2, 0.2), rec(3.0, 0.3, ok=False)], start)
    assert [r["requests"] for r in rows] == [2, 2] and [r["requests_ok"] for r in rows] == [2, 1]
    assert rows[0]["request_throughput"] == 1.0 and rows[1]["request_throughput"] == 0.5
    assert rows[0]["ttft_p50_ms"] == pytest.approx(60) and rows[1]["ttft_p50_ms"] == pytest.approx(200)
    assert rows[0]["tpot_p50_ms"] == pytest.approx(100)
    assert rows[1]["rate"] == 4 and stage_of(stages, 99) == 1


def test_a_staged_load_describes_itself_and_keeps_other_loads_unchanged():
    load = Load.staged(*STEP)
    assert load.phase_seconds() == 25 and not load.closed_loop and load.concurrency is None
    assert load.to_dict()["stages"][1] == {"duration_s": 10, "rate": 10, "ramp": True}
    assert load.label() == "staged-rate-3x-25s"
    users = Load.staged(Stage(5, concurrency=2), Stage(5, concurrency=6))
    assert users.closed_loop and users.concurrency == 6 and users.label() == "staged-users-2x-10s"
    assert "stages" not in Load.closed(8, requests=48).to_dict()  # stored baselines stay comparable


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ((), "give at least one Stage"),
        ((Stage(0, rate=1),), "stage 1: duration_s=0 must be"),
        ((Stage(1),), "stage 1: give rate=R"),
        ((Stage(1, rate=1, concurrency=2),), "not both or neither"),
        ((Stage(1, rate=-1),), "rate=-1 must be a finite number >= 0"),
        ((Stage(1, rate=1), Stage(1, concurrency=2)), "not a mix"),
        ((Stage(1, rate=0),), "every stage has rate 0"),
        ((Stage(1, concurrency=0),), "every stage has concurrency 0"),
    ],
)
def test_stages_that_cannot_run_are_refused(stages, message):
    with pytest.raises(UsageError, match=message):
        Load.staged(*stages)


def test_stages_only_on_a_staged_load():
    with pytest.raises(UsageError, match="only a staged load"):
        Load(arrival="poisson", rate=2, requests=4, stages=(Stage(1, rate=1),))


@pytest.mark.parametrize(
    "load",
    [
        Load.closed(8, requests=48),
        Load.poisson(4.0, requests=16, seed=3),
        Load.replay(2.0, requests=10),
        Load.staged(Stage(2, rate=1), Stage(3, rate=4, ramp=True)),
        Load.staged(Stage(2, concurrency=1), Stage(2, concurrency=3)),
        Load.sessions_of(4, 8, think_time_s=0.5),
    ],
    ids=lambda load: load.label(),
)
def test_every_load_is_rebuilt_from_its_description(load):
    """Failed before the fix for staged loads: perfsuite ab rebuilt a planned load with Load(**dict),
    which passed its stages as dicts."""
    assert Load.from_dict(load.to_dict()) == load


def test_a_workload_read_from_a_file_is_not_rebuilt_from_its_description(tmp_path):
    from perfsuite import Workload

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "Hello there.", "output_tokens": 4}\n')
    described = Workload.from_file(path).to_dict()
    with pytest.raises(UsageError, match="d.jsonl: use Workload.from_file"):
        Workload.from_dict(described)
    synthetic = Workload("s", "", "", "chat", (8, 8), (4, 4), turns=3)
    assert Workload.from_dict(synthetic.to_dict()).turns == 3
