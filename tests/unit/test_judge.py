"""perfsuite.judge: the one function that gives a measurement its verdict."""

from dataclasses import replace

import pytest
from test_measurement import measurement

from perfsuite.baseline import make_baseline
from perfsuite.judge import judge
from perfsuite.verdict import Verdict

REPS = ({"request_throughput": 10.0}, {"request_throughput": 10.1}, {"request_throughput": 9.9})


def base_measurement(**kw):
    kw.setdefault("metrics", {"request_throughput": 10.0, "cost_per_1m_requests": 2.0, "error_rate": 0.0})
    kw.setdefault("repetitions", tuple({**r, "cost_per_1m_requests": 20 / r["request_throughput"]} for r in REPS))
    return measurement(**kw)


@pytest.fixture
def baseline():
    m = base_measurement()
    doc = make_baseline(m)
    doc["provenance"] = {
        "model": m.model,
        "workload": m.workload,
        "load": m.load,
        "engine": m.engine,
        "price_per_hour": m.price_per_hour,
        "hardware": m.provenance["hardware"],
    }
    return doc


def test_one_failed_repetition_fails_the_test_even_when_the_median_looks_clean(baseline):
    # Three repetitions of 48; the second failed every request. Summed: 48 of 144 failed.
    m = base_measurement(error_count=48, metrics={"request_throughput": 10.0, "error_rate": 48 / 144})
    j = judge(m, baseline)
    assert j.verdict is Verdict.ERRORS and j.fails
    assert "48 request(s) failed" in j.notes[0]


def test_an_allowed_error_rate_is_allowed(baseline):
    m = base_measurement(error_count=1, allowed_error_rate=0.05)
    m = replace(m, metrics={**m.metrics, "error_rate": 1 / 144})
    assert judge(m, baseline).verdict is Verdict.PASS


def test_updating_baselines_does_not_waive_a_breached_threshold(baseline):
    m = base_measurement()
    j = judge(m, baseline, {"request_throughput": ">= 50"}, updating=True)
    assert j.verdict is Verdict.BREACH and j.fails


def test_updating_baselines_waives_only_the_comparison_with_the_replaced_baseline(baseline):
    slow = base_measurement()
    slow = replace(
        slow,
        metrics={**slow.metrics, "request_throughput": 5.0, "cost_per_1m_requests": 4.0},
        repetitions=tuple(
            {"request_throughput": r["request_throughput"] / 2, "cost_per_1m_requests": 40 / r["request_throughput"]}
            for r in REPS
        ),
    )
    assert judge(slow, baseline).fails
    j = judge(slow, baseline, updating=True)
    assert j.verdict is Verdict.REGRESSION and not j.fails


def test_other_engine_settings_make_a_baseline_stale(baseline):
    m = base_measurement(engine={"max_num_seqs": 4})
    j = judge(m, baseline)
    assert j.verdict is Verdict.STALE_BASELINE and not j.fails
    assert "engine was" in j.notes[0]
    assert judge(m, baseline, strict=True).fails


def test_a_price_change_is_reported_and_costs_are_compared_at_the_baselines_price(baseline):
    dearer = base_measurement(price_per_hour=0.2)
    dearer = replace(
        dearer,
        metrics={**dearer.metrics, "cost_per_1m_requests": 4.0},
        repetitions=tuple({**r, "cost_per_1m_requests": 40 / r["request_throughput"]} for r in REPS),
    )
    j = judge(dearer, baseline)
    assert j.verdict is Verdict.PASS, j
    assert any("price per hour changed from $0.1 to $0.2" in n and "+100%" in n for n in j.notes)


@pytest.mark.parametrize(
    "field, value, verdict",
    [
        ("client_saturation", "send lag p99 900 ms", Verdict.CLIENT_SATURATED),
        ("above_bound", "beyond", Verdict.ABOVE_BOUND),
    ],
)
def test_measurement_errors_fail_whatever_the_baseline_says(baseline, field, value, verdict):
    j = judge(base_measurement(**{field: value}), baseline)
    assert j.verdict is verdict and j.fails and value in j.notes[0]


def test_no_baseline_passes_unless_strict():
    assert judge(base_measurement(), None).verdict is Verdict.NO_BASELINE
    assert not judge(base_measurement(), None).fails
    assert judge(base_measurement(), None, strict=True).fails


def test_a_baseline_above_the_bound_is_refused_also_when_updating(baseline):
    for updating in (False, True):
        j = judge(base_measurement(), baseline, baseline_problem="too fast", updating=updating)
        assert j.verdict is Verdict.BASELINE_REFUSED and j.fails
