"""Planning for perfsuite ab (--perf-ab-plan), through pytester: each perf test's measure call is
recorded as it was made (engine marker, workload, load, thresholds, variant) and the test stops there;
sweeps, offline runs and claims are listed as not paired; no server starts."""

import json

PERF_TESTS = """
import pytest
from perfsuite import Load

pytestmark = pytest.mark.perf


@pytest.mark.engine(max_num_seqs=4)
def test_throughput(serving, perf):
    perf.measure(serving, "throughput", Load.closed(8, requests=16, seed=3), thresholds={"ttft_p99_ms": "<= 900"},
                 variant="short", repetitions=5)
    raise AssertionError("a planned test stops at its measure call")


def test_sweep(serving, perf):
    perf.sweep(serving, "chat")


def test_offline(perf):
    perf.measure_offline("vllm")


@pytest.fixture(scope="module")
def measured_once(perf_session, perf_servers, request):
    from perfsuite.frameworks import EngineSettings
    from perfsuite.plugin import PerfFixture
    from perfsuite.recorder import Recorder

    recorder = PerfFixture(Recorder(perf_session, request.node.nodeid))
    server = perf_servers.get(perf_session.frameworks["vllm"], "model", EngineSettings())
    return recorder.measure(server, "chat", Load.poisson(4.0, requests=16), variant="poisson-vllm")


def test_from_a_module_fixture(measured_once):
    raise AssertionError("a planned fixture stops at its measure call")


def test_from_the_pool(perf, perf_session, perf_servers):
    from perfsuite.frameworks import EngineSettings

    server = perf_servers.get(perf_session.frameworks["vllm"], "model", EngineSettings(enable_prefix_caching=True))
    perf.measure(server, "rag", Load.closed(8, requests=48), variant="on")
"""


def test_planning_records_every_measure_call_and_starts_nothing(pytester):
    pytester.makepyfile(test_perf=PERF_TESTS)
    result = pytester.runpytest("--frameworks=vllm", "--perf-ab-plan=plan.json", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=5)
    plan = json.loads((pytester.path / "plan.json").read_text())
    assert plan["profile"] == "cpu"
    m, fixture, pooled = plan["measurements"]
    # A module fixture that builds its own Recorder (as the claims' Poisson fixture does) is planned too.
    assert fixture["test_id"] == "test_perf.py@poisson-vllm" and fixture["load"]["arrival"] == "poisson"
    # A test that takes its server from the pool itself (as the claims tests do) is planned too.
    assert pooled["test_id"] == "test_perf.py::test_from_the_pool@on" and pooled["engine"]["enable_prefix_caching"]
    assert m["test_id"] == "test_perf.py::test_throughput[vllm]@short"
    assert m["framework"] == "vllm" and m["engine"]["max_num_seqs"] == 4
    assert m["workload"]["name"] == "throughput" and m["load"]["requests"] == 16 and m["load"]["seed"] == 3
    assert m["thresholds"] == {"ttft_p99_ms": "<= 900"} and m["repetitions"] == 5
    assert set(plan["not_compared"]) == {"test_perf.py::test_sweep[vllm]", "test_perf.py::test_offline"}
    assert "not paired by perfsuite ab" in plan["not_compared"]["test_perf.py::test_sweep[vllm]"]
    # Nothing was started: no server log folder, no results.
    assert not list(pytester.path.glob("perfsuite-logs-*")) and "server logs" not in result.stdout.str()


def test_planning_with_nothing_selected_writes_an_empty_plan(pytester):
    pytester.makepyfile(test_perf=PERF_TESTS)
    result = pytester.runpytest("--frameworks=vllm", "--perf-ab-plan=plan.json", "-k", "nothing_matches")
    assert result.ret == 5
    assert json.loads((pytester.path / "plan.json").read_text())["measurements"] == []


SIZED = """
import pytest

pytestmark = pytest.mark.perf


def test_chat(serving, perf):
    perf.measure(serving, "chat", perf.sized_load())


@pytest.mark.engine(max_num_seqs=4)
def test_capped(serving, perf):
    perf.measure(serving, "chat", perf.sized_load("poisson"))
"""


def test_a_gpu_profiles_default_load_and_engine_are_sized_for_it(pytester, monkeypatch):
    """perf.sized_load() and the profile's engine settings (perfsuite.loads), seen in the plan: nothing starts."""
    pytester.makepyfile(test_sized=SIZED)
    # Planning starts nothing, so the A100 only has to be seen by the profile check (in-process pytester:
    # the patch reaches the inner run and is undone after; a conftest's patch outlived this test).
    monkeypatch.setattr("perfsuite.hardware.detect_gpus", lambda: ["NVIDIA A100-SXM4-80GB"])
    for gpu, users, seqs in (("a100-80gb", 256, 256), ("cpu", 8, 32)):  # cpu: EngineSettings' default
        out = f"plan-{gpu}.json"
        args = ("--frameworks=vllm", f"--gpu={gpu}", f"--perf-ab-plan={out}", "-p", "no:cacheprovider")
        result = pytester.runpytest(*args)
        result.assert_outcomes(skipped=2)
        chat, capped = json.loads((pytester.path / out).read_text())["measurements"]
        assert chat["load"]["concurrency"] == users and chat["engine"].get("max_num_seqs") == seqs
        assert capped["engine"]["max_num_seqs"] == 4  # the test's marker wins over the profile
        assert capped["load"]["arrival"] == "poisson"
