"""The Markdown and HTML reports, from a real run's results file (tests/data) and from crafted ones."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite.baseline import baseline_path, history_dir
from perfsuite.cli import main
from perfsuite.report_html import render_html, report_data, write_reports

REAL = Path(__file__).parents[1] / "data" / "results-cpu-vllm-real-run.json"


def _payload(page: str) -> dict:
    """The page's data, parsed the strict way a browser's JSON.parse does (no NaN)."""
    text = re.search(r'<script type="application/json" id="perfsuite-data">(.*?)</script>', page, re.S).group(1)

    def no_constants(name):
        raise AssertionError(f"{name} in the page's JSON")

    return json.loads(text, parse_constant=no_constants)


def test_markdown_and_html_from_a_real_run(tmp_path):
    results = json.loads(REAL.read_text())
    md, page = write_reports(results, tmp_path)
    assert (md.name, page.name) == ("perf-report.md", "perf-report.html")
    text = md.read_text()
    assert "### Verdicts" in text
    assert "### Selection matrix" in text
    assert "| framework   | gpu   | req/s" in text  # tabulate's github format
    assert "test_sweep[vllm]" in text
    sweep = next(m for m in results["measurements"] if "sweep" in m)
    assert f"| {sweep['sweep']['rate']:g} " in text.split("Capacity under the SLO")[1]
    data = _payload(page.read_text())
    assert data["sweeps"][0]["points"] == sweep["sweep"]["points"]
    assert data["catalogs"]["hardware"]["a100-80gb"]["price_per_hour"] == 4.10
    assert {m["test_id"] for m in data["measurements"]} == {m["test_id"] for m in results["measurements"]}
    assert all(m["distributions"]["ttft_ms"]["counts"] for m in data["measurements"])


def test_the_page_needs_no_network(tmp_path):
    _, page = write_reports(json.loads(REAL.read_text()), tmp_path)
    html = page.read_text()
    assert "{{" not in html
    assert not re.search(r"<(script|img|iframe)[^>]*\bsrc=", html)
    assert not re.search(r"<link\b", html)
    assert "@import" not in html
    assert not re.search(r"""(fetch|XMLHttpRequest|import)\s*\(\s*['"]https?:""", html)


def test_nan_and_markup_in_the_data_cannot_break_the_page():
    evil = "tests/x.py::test_</script><script>alert(1)</script>"
    results = {
        "profile": "cpu",
        "measurements": [
            {
                "test_id": evil,
                "framework": "vllm",
                "profile": "cpu",
                "workload": {"name": "chat"},
                "metrics": {"request_throughput": 10.0, "tpot_p50_ms": float("nan"), "requests_ok": 5},
            }
        ],
    }
    page = render_html(report_data(results))
    assert "</script><script>alert(1)" not in page
    data = _payload(page)
    assert data["measurements"][0]["test_id"] == evil
    assert data["measurements"][0]["metrics"]["tpot_p50_ms"] is None


def test_baseline_trends_come_from_the_history(tmp_path):
    test_id = "tests/perf/test_x.py::test_chat[vllm]"
    current = baseline_path(tmp_path, "cpu", test_id)
    for path, date, rps in (
        (history_dir(current) / "old.json", "2026-01-01T00:00:00+00:00", 20.0),
        (current, "2026-02-01T00:00:00+00:00", 25.0),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "provenance": {"date": date, "git_commit": "abcdef1234"},
            "metrics": {"request_throughput": {"value": rps}},
        }
        path.write_text(json.dumps(doc))
    results = {"measurements": [{"test_id": test_id, "profile": "cpu", "framework": "vllm", "metrics": {}}]}
    trend = report_data(results, baseline_dir=tmp_path)["trends"][f"{test_id} (cpu)"]
    assert [(p["request_throughput"], p["current"], p["commit"]) for p in trend] == [
        (20.0, False, "abcdef12"),
        (25.0, True, "abcdef12"),
    ]


def test_report_command(tmp_path, capsys):
    assert main(["report", str(REAL), "--out", str(tmp_path / "out")]) == 0
    assert "perf-report.html" in capsys.readouterr().out
    assert (tmp_path / "out" / "perf-report.md").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["report", str(bad), "--out", str(tmp_path / "out2")]) == 2
    assert "no 'measurements' list" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--perf-report", "--perf-prices"])
def test_report_options_through_pytest(pytester, monkeypatch, option):
    pytester.makepyfile("def test_x(): pass")
    if option == "--perf-report":
        summary = pytester.path / "step-summary.md"
        summary.write_text("earlier step\n")
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))  # as GitHub Actions sets it
        result = pytester.runpytest("--perf-report=out")
        result.assert_outcomes(passed=1)
        assert (pytester.path / "out" / "perf-report.html").exists()
        assert "### Verdicts" in (pytester.path / "out" / "perf-report.md").read_text()
        assert summary.read_text().startswith("earlier step\n## perfsuite on")
    else:
        (pytester.path / "prices.json").write_text('{"hardware": {"h100": {"price_per_hour": "a lot"}}}')
        result = pytester.runpytest("--perf-prices=prices.json", "--perf-report=out")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*prices.json: field hardware.h100.price_per_hour: 'a lot' is not of type*"])


def test_frameworks_that_could_not_run_stay_in_the_matrix():
    results = json.loads(REAL.read_text())
    results["unmeasured"] = {"tgi": "no container image here"}
    matrix = report_data(results)["matrix"]
    assert [r["framework"] for r in matrix] == ["vllm", "tgi"]
    assert matrix[1]["not_measured"] == "no container image here"
    assert matrix[1]["request_throughput"] is None


@given(st.lists(st.floats(0.01, 1e5), min_size=1, max_size=300))
def test_latency_histograms_keep_every_value(values):
    from perfsuite.runner import histogram

    h = histogram(values)
    assert sum(h["counts"]) == h["n"] == len(values)
    assert len(h["edges"]) == len(h["counts"]) + 1
    assert h["edges"] == sorted(h["edges"])
    assert h["edges"][0] == pytest.approx(min(values), rel=1e-3)
    assert histogram([]) == {} and histogram([float("nan")]) == {}


def test_report_refuses_a_profile_that_points_outside_the_baseline_folder(tmp_path, capsys):
    outside = tmp_path / "outside" / "history" / "x"
    outside.mkdir(parents=True)
    results = tmp_path / "results.json"
    m = {"test_id": "x", "profile": "../outside", "framework": "vllm", "metrics": {}}
    results.write_text(json.dumps({"schema": 1, "measurements": [m]}))
    base = tmp_path / "baselines"
    assert main(["report", str(results), "--out", str(tmp_path / "out"), "--baseline-dir", str(base)]) != 0
    assert "measurements[0].profile" in capsys.readouterr().err


def _script_text(page: str, start_tag: str) -> str:
    """The text of the script element opened by `start_tag`, ended where an HTML parser ends it: the
    WHATWG tokenizer's script data states, in which `<!--` then `<script` ("double escaped") hide the
    next `</script>` (html.spec.whatwg.org, 13.2.5.15-13.2.5.31; Python's html.parser skips them)."""
    begin = page.index(start_tag) + len(start_tag)
    low = page.lower()

    def tag_at(i: int, name: str = "script") -> bool:
        return low.startswith(name, i) and i + len(name) < len(low) and low[i + len(name)] in " \t\n\f/>"

    state, i = "data", begin
    while i < len(page):
        if state == "data":
            if page.startswith("</", i) and tag_at(i + 2):
                return page[begin:i]
            if page.startswith("<!--", i):
                state, i = "escaped", i + 4
                continue
        elif state == "escaped":
            if page.startswith("-->", i):
                state, i = "data", i + 3
                continue
            if page.startswith("</", i) and tag_at(i + 2):
                return page[begin:i]
            if page[i] == "<" and tag_at(i + 1):
                state, i = "double", i + 7
                continue
        elif state == "double":
            if page.startswith("-->", i):
                state, i = "data", i + 3
                continue
            if page.startswith("</", i) and tag_at(i + 2):
                state, i = "escaped", i + 8
                continue
        i += 1
    raise AssertionError("the script element never ends: the rest of the page is inside it")


@pytest.mark.parametrize("evil", ["</script><!--<script>", "<!--<script>", "a & b > c <!-- <script x>"])
def test_markup_in_any_string_survives_in_the_page_data(evil):
    results = {
        "profile": "cpu",
        "claims": [{"claim": evil, "verdict": "held", "evidence": evil}],
        "measurements": [
            {
                "test_id": f"tests/x.py::test_{evil}",
                "framework": "vllm",
                "profile": "cpu",
                "workload": {"name": evil},
                "notes": [evil],
                "metrics": {"request_throughput": 10.0},
            }
        ],
    }
    data = report_data(results)
    page = render_html(data)
    text = _script_text(page, '<script type="application/json" id="perfsuite-data">')
    assert json.loads(text) == json.loads(json.dumps(data))
    assert "<" not in text and ">" not in text and "&" not in text


@pytest.mark.parametrize("verdict", ["errors", "above bound", "client saturated"])
def test_a_measurement_error_reaches_no_matrix_figure_or_calculator(verdict):
    from perfsuite.calculator import capacity_from_results
    from perfsuite.errors import UsageError

    results = json.loads(REAL.read_text())
    for m in results["measurements"]:
        m["verdict"] = verdict
    data = report_data(results)
    assert data["matrix"] == [] and data["sweeps"] == []
    assert all(set(m["metrics"].values()) == {None} for m in data["measurements"])  # the verdict stays listed
    assert all(m["verdict"] == verdict and not m["distributions"] for m in data["measurements"])
    with pytest.raises(UsageError, match="no measurement of vllm"):
        capacity_from_results(results, "vllm")
