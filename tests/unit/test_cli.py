"""The perfsuite command: cost arithmetic and approving results files (no server needed)."""

import json
from pathlib import Path

import pytest

from perfsuite.baseline import baseline_path, history_dir, load_baseline
from perfsuite.cli import main
from perfsuite.hardware import resolve_profile

from test_measurement import HARDWARE, MACHINE  # isort: skip


def _measurement(test_id="tests/perf/test_x.py::test_chat[vllm]", rps=20.0, error_rate=0.0):
    return {
        "test_id": test_id,
        "profile": "cpu",
        "device_kind": "cpu",
        "metrics": {
            "request_throughput": rps,
            "output_throughput": rps * 64,
            "ttft_p50_ms": 15.0,
            "error_rate": error_rate,
            "memory_utilization": 0.1,
        },
        "repetitions": [{"request_throughput": rps * f} for f in (0.98, 1.0, 1.02)],
        "provenance": {
            "git_commit": "abc123",
            "model": "tiny",
            "workload": {"name": "chat"},
            "load": {},
            "hardware": dict(HARDWARE),
        },
        "verdict": "regression",
    }


def _results(tmp_path, *measurements):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "profile": "cpu", "measurements": list(measurements)}))
    return path


def test_cost_worked_example(capsys):
    assert main(["cost", "--price-per-hour", "4.10", "--rps", "140", "--output-tokens", "512"]) == 0
    out = capsys.readouterr().out
    assert "$8.13" in out
    assert "$0.0159" in out  # 4.10 / (140 * 512 * 3600) * 1e6


def test_approve_writes_baselines_from_a_results_file(tmp_path, capsys):
    results = _results(tmp_path, _measurement())
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 0
    doc = load_baseline(baseline_path(tmp_path / "b", "cpu", "tests/perf/test_x.py::test_chat[vllm]", machine=MACHINE))
    assert doc["metrics"]["request_throughput"]["value"] == 20.0
    assert doc["metrics"]["request_throughput"]["repetitions"] == pytest.approx([19.6, 20.0, 20.4])
    floor = resolve_profile("cpu").min_tolerance["req/s"]
    assert doc["metrics"]["request_throughput"]["tolerance"] >= floor > 0  # the cpu profile's noise floor
    assert doc["metrics"]["ttft_p50_ms"]["tolerance"] >= 0.5
    assert doc["metrics"]["memory_utilization"]["gated"] is False  # process memory on the CPU: not gated
    assert doc["provenance"]["git_commit"] == "abc123"
    assert "wrote" in capsys.readouterr().out


def test_approve_keeps_the_gated_choice_of_the_old_baseline(tmp_path):
    results = _results(tmp_path, _measurement())
    main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")])
    path = baseline_path(tmp_path / "b", "cpu", "tests/perf/test_x.py::test_chat[vllm]", machine=MACHINE)
    doc = json.loads(path.read_text())
    doc["metrics"]["ttft_p50_ms"]["gated"] = False
    path.write_text(json.dumps(doc))
    main(["approve", str(_results(tmp_path, _measurement(rps=25.0))), "--baseline-dir", str(tmp_path / "b")])
    doc = load_baseline(path)
    assert doc["metrics"]["request_throughput"]["value"] == 25.0
    assert doc["metrics"]["ttft_p50_ms"]["gated"] is False


def test_approve_dry_run_writes_nothing(tmp_path, capsys):
    results = _results(tmp_path, _measurement())
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b"), "--dry-run"]) == 0
    assert not (tmp_path / "b").exists()
    assert "would write" in capsys.readouterr().out


def test_approve_skips_runs_with_failed_requests(tmp_path, capsys):
    results = _results(tmp_path, _measurement(error_rate=0.25))
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b").exists()
    assert "skipped: the run had failed requests" in capsys.readouterr().out


def test_approve_selects_tests(tmp_path):
    results = _results(tmp_path, _measurement(), _measurement(test_id="tests/perf/test_x.py::test_rag[vllm]"))
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b"), "--test", "test_rag"]) == 0
    written = [p.name for p in (tmp_path / "b" / "cpu" / MACHINE).iterdir()]
    assert written == ["tests.perf.test_x.py--test_rag[vllm].json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON at line 1"),
        ('{"schema": 1}', "no 'measurements' list"),
        ('{"measurements": [{"test_id": "x", "profile": "cpu"}]}', "measurements[0] has no field 'metrics'"),
    ],
)
def test_approve_rejects_bad_results_files(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    assert main(["approve", str(path), "--baseline-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    assert not (tmp_path / "b").exists()


def test_approve_missing_file(tmp_path, capsys):
    assert main(["approve", str(tmp_path / "nope.json")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_load_needs_an_existing_tokenizer_folder(tmp_path, capsys):
    code = main(["load", "--url", "http://127.0.0.1:9", "--model", "m", "--tokenizer", str(tmp_path / "none")])
    assert code == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_approve_keeps_the_replaced_baseline_in_history(tmp_path):
    from perfsuite.baseline import history_dir

    first = _measurement(rps=20.0)
    first["provenance"]["date"] = "2026-11-01T10:00:00+00:00"
    main(["approve", str(_results(tmp_path, first)), "--baseline-dir", str(tmp_path / "b")])
    main(["approve", str(_results(tmp_path, _measurement(rps=25.0))), "--baseline-dir", str(tmp_path / "b")])
    path = baseline_path(tmp_path / "b", "cpu", "tests/perf/test_x.py::test_chat[vllm]", machine=MACHINE)
    kept = list(history_dir(path).iterdir())
    assert [k.name for k in kept] == ["20261101T1000000000-abc123.json"]
    assert load_baseline(kept[0])["metrics"]["request_throughput"]["value"] == 20.0
    assert load_baseline(path)["metrics"]["request_throughput"]["value"] == 25.0


def test_compare_fails_on_a_regression_and_lists_unmatched_tests(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"measurements": [_measurement(rps=40.0), _measurement(test_id="t::gone")]}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"measurements": [_measurement(rps=20.0), _measurement(test_id="t::added")]}))
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "only in new" in out and "only in old" in out


# ---------------------------------------------------------------- compare, approve, merge on a real run's results

REAL_RUN = Path(__file__).parents[1] / "data" / "results-cpu-vllm-real-run.json"


def _real(tmp_path, name="real.json", edit=None):
    """A copy of the real run's results (tests/data), optionally edited."""
    data = json.loads(REAL_RUN.read_text())
    for m in data["measurements"]:  # taken before fingerprints: say which machine, as a new run would
        m["provenance"]["hardware"] = dict(HARDWARE)
    if edit:
        edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _faster(factor):
    """Claim `factor` x the throughput (and 1/factor the cost) in every measurement and repetition."""

    def edit(data):
        for m in data["measurements"]:
            for d in (m["metrics"], *m["repetitions"]):
                for k in ("request_throughput", "output_throughput"):
                    if k in d:
                        d[k] *= factor
                if "cost_per_1m_requests" in d:
                    d["cost_per_1m_requests"] /= factor

    return edit


def test_compare_a_real_run_with_itself_passes_and_shows_intervals(tmp_path, capsys):
    real = _real(tmp_path)
    assert main(["compare", str(real), str(real)]) == 0
    out = capsys.readouterr().out
    assert "interval (90%)" in out and "REGRESSION" not in out
    assert "test_throughput[vllm] on cpu: pass" in out
    assert "unchanged" in out and "+0.0%" in out


def test_compare_a_real_run_against_one_a_third_faster_fails_with_the_interval(tmp_path, capsys):
    old, new = _real(tmp_path, "old.json", _faster(1.5)), _real(tmp_path, "new.json")
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "test_throughput[vllm] on cpu: regression" in out
    line = next(x for x in out.splitlines() if x.startswith("request_throughput") and "REGRESSION" in x)
    assert "-33.3%" in line and " to -" in line  # the point and an interval wholly below the tolerance
    assert "request_throughput: -33.3% (interval" in out
    # and the other way round it is an improvement, which passes and says to approve
    capsys.readouterr()
    assert main(["compare", str(new), str(old)]) == 0
    out = capsys.readouterr().out
    assert "test_throughput[vllm] on cpu: improved" in out and "perfsuite approve" in out


def test_approve_a_real_run_keeps_history_and_then_judges_it_unfailed(tmp_path):
    from perfsuite.judge import judge
    from perfsuite.measurement import Measurement

    base_dir = tmp_path / "b"
    first = _real(tmp_path, "first.json", _faster(1.5))
    assert main(["approve", str(first), "--baseline-dir", str(base_dir), "--test", "test_throughput"]) == 0
    real = _real(tmp_path)
    assert main(["approve", str(real), "--baseline-dir", str(base_dir), "--test", "test_throughput"]) == 0
    measured = next(m for m in json.loads(real.read_text())["measurements"] if "test_throughput" in m["test_id"])
    path = baseline_path(base_dir, "cpu", measured["test_id"], machine=MACHINE)
    [kept] = list(history_dir(path).glob("*.json"))  # the first approval, replaced by the second
    assert load_baseline(kept)["metrics"]["request_throughput"]["value"] == pytest.approx(
        1.5 * measured["metrics"]["request_throughput"]
    )
    approved = load_baseline(path)
    assert approved["metrics"]["request_throughput"]["repetitions"] == [
        r["request_throughput"] for r in measured["repetitions"]
    ]
    again = Measurement.from_dict(measured)
    assert not judge(again, approved).fails


def test_merge_real_runs_from_two_runners(tmp_path, capsys):
    def as_h100(data):
        for m in data["measurements"]:
            m["profile"] = "h100"

    a, b = _real(tmp_path, "a.json"), _real(tmp_path, "b.json", as_h100)
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    merged = json.loads(out.read_text())
    n = len(json.loads(REAL_RUN.read_text())["measurements"])
    assert len(merged["measurements"]) == 2 * n
    assert sorted({r["profile"] for r in merged["matrix"]}) == ["cpu", "h100"]
    assert merged["merged_from"] == [str(a), str(b)]
    assert main(["merge", str(a), str(a), "-o", str(tmp_path / "twice.json")]) == 2


def _files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_approve_refuses_a_profile_that_points_outside_the_baseline_folder(tmp_path, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    bad = _measurement()
    bad["profile"] = "../../outside"
    results = _results(work, _measurement("tests/perf/test_x.py::test_ok[vllm]"), bad)
    before = _files_under(tmp_path)
    assert main(["approve", str(results), "--baseline-dir", str(work / "baselines")]) != 0
    assert _files_under(tmp_path) == before  # nothing written, not even the good measurement's baseline
    assert "measurements[1].profile" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["approve", "compare", "merge", "report"])
def test_results_with_infinity_are_refused_naming_file_and_field(tmp_path, capsys, command):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "measurements": [_measurement()]}).replace("20.0", "Infinity", 1))
    (tmp_path / "o").mkdir()
    other = _results(tmp_path / "o", _measurement("tests/perf/test_x.py::test_other[vllm]"))
    argv = {
        "approve": ["approve", str(path), "--baseline-dir", str(tmp_path / "b")],
        "compare": ["compare", str(other), str(path)],
        "merge": ["merge", str(other), str(path), "-o", str(tmp_path / "merged.json")],
        "report": ["report", str(path), "--out", str(tmp_path / "out")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "measurements[0].metrics.request_throughput is Infinity" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "merged.json").exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://127.0.0.1:8000", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("127.0.0.1:8000", "http or https"),
        ("http://", "no host"),
        ("http://127.0.0.1:99999", "port"),
        ("http://user:s3cr3t-token@127.0.0.1:8000", "$PERFSUITE_API_KEY"),
        ("https://s3cr3t-token@example.com", "$PERFSUITE_API_KEY"),
        ("http://127.0.0.1:8000/?api_key=s3cr3t-token", "query"),
    ],
)
def test_load_refuses_a_bad_url_and_never_prints_credentials(tmp_path, capsys, url, message):
    argv = ["load", "--url", url, "--model", "m", "--tokenizer", str(tmp_path), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 2
    out = capsys.readouterr()
    assert message in out.err
    assert "s3cr3t" not in out.out + out.err
    assert not (tmp_path / "r.json").exists()
