"""perfsuite.recorder without pytest or servers: the load sweep's control flow with a fake runner, and
the claims' coverage. (The real sweep runs in tests/perf/test_sweep.py.)"""

import subprocess
import sys

import pytest

from perfsuite.errors import GateFailure
from perfsuite.frameworks import EngineSettings, RunningServer
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Endpoint
from perfsuite.recorder import Recorder, claim_coverage
from perfsuite.runner import Run
from perfsuite.session import PerfOptions, PerfSession
from perfsuite.slo import SLO
from perfsuite.verdict import Verdict

SLO_ = SLO(ttft_ms=250, tpot_ms=50, percentile=90)


class FakeProcess:
    def tree(self):
        return []

    def check_alive(self, during=""):
        pass


def server() -> RunningServer:
    return RunningServer(
        framework="fake",
        version="fake 1",
        settings=EngineSettings(),
        endpoint=Endpoint("http://127.0.0.1:9", "m"),
        process=FakeProcess(),
        metrics_url=None,
        metric_names=None,
    )


def fake_runner(capacity: float, calls: list):
    """Every rate up to `capacity` meets the SLO; above it TTFT p90 is 10 s."""

    def run(target, workload, load, prompts, profile, **kw) -> Run:
        calls.append(load.rate)
        rate = load.rate or 1.0  # a closed loop: one request per second
        ttft = 100.0 if rate <= capacity else 10_000.0
        served = min(rate, capacity)
        metrics = {
            "request_throughput": served,
            "output_throughput": served * 64,
            "goodput": served,
            "error_rate": 0.0,
            "requests": 48.0,
            "requests_ok": 48.0,
            **{f"{m}_p{p}_ms": (ttft if m == "ttft" else 20.0) for m in ("ttft", "tpot", "e2e") for p in (50, 90, 99)},
        }
        return Run(metrics, (metrics,), {"reason": "fixed"}, (), (), {}, (), 0, None)

    return run


@pytest.fixture
def session(tmp_path):
    s = PerfSession(PerfOptions(baseline_dir=tmp_path / "baselines", model="org/model"), resolve_profile("cpu"))
    s.prompts = lambda seed=0: None  # the fake runner builds no prompts
    yield s
    s.finish(tests_failed=False)


def sweep(session, capacity, rates=(2, 4, 8, 16)):
    calls = []
    rec = Recorder(session, "tests/perf/test_sweep.py::test_sweep[fake]", run=fake_runner(capacity, calls))
    return rec.sweep(server(), "chat", rates, slo=SLO_), calls


def test_the_sweep_stops_at_the_knee_and_keeps_the_highest_rate_that_met_the_slo(session):
    m, calls = sweep(session, capacity=5)
    assert calls == [2, 4, 8]  # 8 missed: 16 never ran
    assert m.sweep["rate"] == 4 and m.sweep["knee_found"]
    assert m.metrics["request_throughput"] == 4
    assert m.verdict is Verdict.REPORTED and not m.failed
    assert session.measurements == [m]  # recorded once


def test_a_sweep_where_no_rate_meets_the_slo_is_a_finding_not_a_failure(session):
    m, calls = sweep(session, capacity=1)
    assert calls == [2]
    assert m.sweep["rate"] is None and m.verdict is Verdict.REPORTED
    assert any("capacity is below 2 req/s" in n for n in m.to_dict()["notes"])


def test_a_sweep_where_every_rate_meets_the_slo_says_capacity_is_at_least_the_last(session):
    m, calls = sweep(session, capacity=100)
    assert calls == [2, 4, 8, 16]
    assert m.sweep["rate"] == 16 and not m.sweep["knee_found"]
    assert any("at least 16 req/s" in n for n in m.notes)


def test_a_sweep_threshold_still_applies(session):
    rec = Recorder(session, "t::sweep", run=fake_runner(5, []))
    with pytest.raises(GateFailure, match="breach") as failure:
        rec.sweep(server(), "chat", (2, 4, 8), slo=SLO_, thresholds={"request_throughput": ">= 100"})
    assert failure.value.measurement.verdict is Verdict.BREACH


def test_a_measurement_that_fails_is_recorded_once_and_raises(session):
    def run(*a, **kw):
        metrics = {
            "request_throughput": 1.0,
            "output_throughput": 1.0,
            "error_rate": 1 / 3,
            "requests": 3.0,
            "requests_ok": 2.0,
        }
        return Run(metrics, (metrics,) * 3, {}, (), (), {}, ("HTTP 500",), 1, None)

    rec = Recorder(session, "t::measure", run=run)
    with pytest.raises(GateFailure, match="1 request"):
        rec.measure(server(), "chat")
    assert [m.verdict for m in session.measurements] == [Verdict.ERRORS]


@pytest.mark.parametrize(
    "named, measured, expected",
    [
        (("vllm", "hf-naive"), ("vllm", "hf-naive"), ("held", "")),
        (("vllm", "tgi"), ("vllm",), ("partly measured", "held on what ran; not measured: tgi")),
    ],
)
def test_a_claim_naming_a_framework_that_did_not_run_is_partly_measured(named, measured, expected):
    assert claim_coverage(named, measured, "held") == expected


def test_the_recorder_imports_without_pytest():
    code = "import sys, perfsuite.recorder; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_updating_baselines_does_not_waive_a_breached_threshold_nor_write_the_baseline(session):
    session.options.update_baselines = True
    rec = Recorder(session, "t::update", run=fake_runner(5, []))
    with pytest.raises(GateFailure, match="breach"):
        rec.measure(server(), "chat", thresholds={"request_throughput": ">= 100"})
    [m] = session.measurements
    assert m.verdict is Verdict.BREACH and m.failed and m.baseline_written is None
    assert not session.baseline_file("t::update").exists()
    assert any("baseline not written: the test failed (breach)" in n for n in m.notes)


def test_updating_baselines_writes_a_passing_measurement_once(session):
    session.options.update_baselines = True
    m = Recorder(session, "t::update", run=fake_runner(5, [])).measure(server(), "chat")
    assert m.baseline_written == str(session.baseline_file("t::update"))
    assert session.written == [session.baseline_file("t::update")]
