"""The gate across hardware, through pytester: a perf test with a fake load run (no server), judged
against a baseline whose fingerprint says another CPU took it."""

import json

PERF_TEST = """
import pytest
from perfsuite.frameworks import EngineSettings, RunningServer
from perfsuite.loadgen import Endpoint
from perfsuite.plugin import PerfFixture
from perfsuite.recorder import Recorder
from perfsuite.runner import Run


class FakeProcess:
    def tree(self):
        return []

    def check_alive(self, during=""):
        pass


def run(*args, **kwargs):
    reps = tuple({"request_throughput": v, "error_rate": 0.0, "requests": 16.0, "requests_ok": 16.0}
                 for v in (10.0, 10.1, 9.9))
    metrics = {"request_throughput": 10.0, "error_rate": 0.0, "requests": 48.0, "requests_ok": 48.0}
    return Run(metrics, reps, {"reason": "fixed"}, (), (), {}, (), 0, None)


@pytest.mark.perf
def test_chat(perf_session, request):
    perf_session.prompts = lambda seed=0: None
    server = RunningServer(framework="fake", version="fake 1", settings=EngineSettings(),
                           endpoint=Endpoint("http://127.0.0.1:9", "m"), process=FakeProcess(),
                           metrics_url=None, metric_names=None)
    PerfFixture(Recorder(perf_session, request.node.nodeid, run=run)).measure(server, "chat")
"""
ARGS = ("--perf-model=org/model", "--perf-results=results.json", "-p", "no:cacheprovider")


def _verdicts(pytester):
    return [m["verdict"] for m in json.loads((pytester.path / "results.json").read_text())["measurements"]]


def test_a_baseline_from_another_cpu_passes_visibly_as_other_hardware_and_strict_fails_it(pytester):
    pytester.makepyfile(test_p=PERF_TEST)
    pytester.runpytest(*ARGS, "--perf-update-baselines").assert_outcomes(passed=1)
    [written] = (pytester.path / "baselines" / "cpu").glob("*/*.json")
    results = json.loads((pytester.path / "results.json").read_text())
    assert results["hardware"]["cpu_model"] and results["measurements"][0]["provenance"]["hardware"]

    doc = json.loads(written.read_text())
    assert doc["provenance"]["hardware"] == results["hardware"]
    doc["provenance"]["hardware"]["cpu_model"] = "Some Other CPU 9000"
    written.write_text(json.dumps(doc))

    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1)
    assert _verdicts(pytester) == ["other-hardware"]
    result.stdout.fnmatch_lines(["*other-hardware*", "other-hardware: 1 measurement(s) had a baseline taken on other*"])
    notes = json.loads((pytester.path / "results.json").read_text())["measurements"][0]["notes"]
    assert any("CPU model was 'Some Other CPU 9000', now " in n for n in notes)

    strict = pytester.runpytest(*ARGS, "--perf-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*perf other-hardware*", "*CPU model was 'Some Other CPU 9000'*"])


def test_a_flat_baseline_from_before_fingerprints_says_to_re_take_it(pytester):
    pytester.makepyfile(test_p=PERF_TEST)
    pytester.runpytest(*ARGS, "--perf-update-baselines").assert_outcomes(passed=1)
    [written] = (pytester.path / "baselines" / "cpu").glob("*/*.json")
    doc = json.loads(written.read_text())
    del doc["provenance"]["hardware"]
    (pytester.path / "baselines" / "cpu" / written.name).write_text(json.dumps(doc))  # the older, flat layout
    written.unlink()
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1)
    assert _verdicts(pytester) == ["other-hardware"]
    notes = json.loads((pytester.path / "results.json").read_text())["measurements"][0]["notes"]
    assert any("baseline has no hardware fingerprint: re-take it" in n for n in notes)


def test_only_another_machines_baseline_is_other_hardware_not_no_baseline(pytester):
    """A machine with no folder of its own is told that baselines exist for another one, and what differs
    (measured: on an AMD EPYC model 17 the committed model-1 baselines read "no baseline" before). The
    test id holds brackets, as parametrized ids do (a glob pattern would read them as a character class)."""
    bracketed = PERF_TEST.replace("def test_chat(", '@pytest.mark.parametrize("x", ["vllm"])\ndef test_chat(x, ')
    pytester.makepyfile(test_p=bracketed)
    pytester.runpytest(*ARGS, "--perf-update-baselines").assert_outcomes(passed=1)
    [written] = (pytester.path / "baselines" / "cpu").glob("*/*.json")
    doc = json.loads(written.read_text())
    doc["provenance"]["hardware"]["cpu_model"] = "Some Other CPU 9000"
    other = written.parent.parent / "some-other-cpu-9000-2c"
    other.mkdir()
    (other / written.name).write_text(json.dumps(doc))
    written.unlink()
    pytester.runpytest(*ARGS).assert_outcomes(passed=1)
    assert _verdicts(pytester) == ["other-hardware"]
    notes = json.loads((pytester.path / "results.json").read_text())["measurements"][0]["notes"]
    assert any("CPU model was 'Some Other CPU 9000', now " in n for n in notes)
    # Updating writes this machine's own folder and leaves the other machine's baseline as it was.
    pytester.runpytest(*ARGS, "--perf-update-baselines").assert_outcomes(passed=1)
    assert written.exists() and json.loads((other / written.name).read_text()) == doc
