"""Baselines: the comparison that gates a build, thresholds, and files on disk."""

import json
import math
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from perfsuite.baseline import (
    MAX_TOLERANCE,
    SCHEMA_VERSION,
    baseline_path,
    check_thresholds,
    compare,
    load_baseline,
    make_baseline,
    parse_threshold,
    write_baseline,
)
from perfsuite.errors import BaselineError
from perfsuite.measurement import Measurement
from perfsuite.metrics import METRICS
from perfsuite.verdict import Verdict

from test_measurement import HARDWARE  # isort: skip


def entry(value, better="higher", tolerance=0.10, gated=True, **extra):
    return {"value": value, "better": better, "tolerance": tolerance, "gated": gated, **extra}


def doc(**metrics):
    return {
        "schema": SCHEMA_VERSION,
        "test_id": "tests/perf/test_x.py::test_serving[chat]",
        "profile": "cpu",
        "metrics": metrics,
        "provenance": {"git": "abc123", "hardware": HARDWARE},
    }


def verdict(better, base, now, tol, gated=True):
    rows = compare(doc(m=entry(base, better, tol, gated)), {"m": now})
    assert len(rows) == 1
    return rows[0].verdict


# ---------------------------------------------------------------- compare: direction and edges


@pytest.mark.parametrize(
    "better, base, now, expected",
    [
        ("higher", 100, 80, "regression"),
        ("higher", 100, 120, "improvement"),
        ("higher", 100, 95, "unchanged"),
        ("lower", 100, 120, "regression"),
        ("lower", 100, 80, "improvement"),
        ("lower", 100, 105, "unchanged"),
        ("higher", 100, 100, "unchanged"),
        ("lower", 100, 100, "unchanged"),
    ],
)
def test_direction(better, base, now, expected):
    assert verdict(better, base, now, 0.10) == expected


@pytest.mark.parametrize(
    "better, base, tol, at_edge, beyond",
    [
        ("higher", 100, 0.10, 90, 89.99),
        ("lower", 100, 0.10, 110, 110.01),
        ("lower", 100, 0.15, 115, 115.01),  # 100 * 1.15 is 114.99999999999999 in floats
        ("higher", 140, 0.10, 126, 125.99),
        ("lower", 200, 0.15, 230, 230.01),
        ("higher", 7, 0.05, 6.65, 6.6499),
        ("lower", 7, 0.05, 7.35, 7.3501),
        ("lower", 0.7, 0.10, 0.77, 0.7701),  # decimal values that floats cannot hold exactly
        ("higher", 0.3, 0.50, 0.15, 0.1499),
    ],
)
def test_tolerance_edges(better, base, tol, at_edge, beyond):
    assert verdict(better, base, at_edge, tol) == "unchanged", "exactly at the tolerance is within it"
    assert verdict(better, base, beyond, tol) == "regression"


@pytest.mark.parametrize(
    "better, base, tol, at_edge, beyond",
    [
        ("higher", 100, 0.10, 110, 110.01),
        ("lower", 100, 0.15, 85, 84.99),
    ],
)
def test_improvement_edges(better, base, tol, at_edge, beyond):
    assert verdict(better, base, at_edge, tol) == "unchanged"
    assert verdict(better, base, beyond, tol) == "improvement"


def test_zero_tolerance():
    assert verdict("higher", 100, 100, 0.0) == "unchanged"
    assert verdict("higher", 100, 99.999, 0.0) == "regression"
    assert verdict("lower", 100, 100.001, 0.0) == "regression"


def test_zero_baseline():
    # error_rate-like: any increase from 0 is worse for a lower-better metric.
    assert verdict("lower", 0, 0, 0.10) == "unchanged"
    assert verdict("lower", 0, 0.01, 0.10) == "regression"
    rows = compare(doc(m=entry(0, "lower")), {"m": 0})
    assert rows[0].change_pct == 0.0
    rows = compare(doc(m=entry(0, "lower")), {"m": 1})
    assert rows[0].change_pct is None


def test_row_fields_and_change_pct():
    [row] = compare(doc(request_throughput=entry(100.0, "higher", 0.10)), {"request_throughput": 80.0})
    assert row.metric == "request_throughput"
    assert row.baseline == 100.0 and row.now == 80.0
    assert row.change_pct == pytest.approx(-20.0)
    assert row.tolerance == "10%"
    assert row.verdict == "regression" and row.fails
    assert row.as_dict()["verdict"] == "regression"


def test_improvement_and_ok_do_not_fail():
    rows = compare(doc(a=entry(100), b=entry(100)), {"a": 200, "b": 100})
    assert [r.verdict for r in rows] == ["improvement", "unchanged"]
    assert not any(r.fails for r in rows)


def test_ungated_metric_is_information_only():
    rows = compare(doc(m=entry(100, "higher", 0.10, gated=False)), {"m": 1})
    assert rows[0].verdict == "info"
    assert not rows[0].fails


@pytest.mark.parametrize("now", [{}, {"m": math.nan}, {"m": math.inf}, {"m": None}, {"m": "12"}])
def test_gated_metric_missing_now_fails(now):
    [row] = compare(doc(m=entry(100)), now)
    assert row.verdict == "missing"
    assert row.fails
    assert row.now is None


@pytest.mark.parametrize("now", [{}, {"m": math.nan}])
def test_ungated_metric_missing_now_is_info(now):
    [row] = compare(doc(m=entry(100, gated=False)), now)
    assert row.verdict == "info"
    assert not row.fails


def test_new_gated_metric_is_reported_not_failed():
    rows = compare(
        doc(request_throughput=entry(10.0)),
        {
            "request_throughput": 10.0,
            "ttft_p50_ms": 50.0,
            "goodput": 3.0,
            "made_up": 1.0,
            "output_throughput": math.nan,
        },
    )
    by_name = {r.metric: r for r in rows}
    assert METRICS["ttft_p50_ms"].gated
    assert by_name["ttft_p50_ms"].verdict == "new"
    assert by_name["ttft_p50_ms"].baseline is None and by_name["ttft_p50_ms"].now == 50.0
    assert not by_name["ttft_p50_ms"].fails
    assert "goodput" not in by_name  # not gated
    assert "made_up" not in by_name  # not a metric perfsuite knows
    assert "output_throughput" not in by_name  # gated, but no value to show


def test_only_gated():
    rows = compare(doc(a=entry(1), b=entry(1, gated=False)), {"a": 1, "b": 1}, only_gated=True)
    assert [r.metric for r in rows] == ["a"]


# ---------------------------------------------------------------- compare: properties

TOL_PCTS = st.integers(min_value=0, max_value=50)
BASES = st.integers(min_value=1, max_value=10**6)


@given(BASES, TOL_PCTS, st.data(), st.sampled_from(["higher", "lower"]))
def test_change_within_tolerance_never_fails(base, tol_pct, data, better):
    # Integers keep the change exact: |now - base| / base <= tol exactly.
    max_d = base * tol_pct // 100
    d = data.draw(st.integers(min_value=-max_d, max_value=max_d))
    assert verdict(better, base, base + d, tol_pct / 100) == "unchanged"


@given(
    st.floats(min_value=1e-6, max_value=1e9),
    st.floats(min_value=0, max_value=0.5),
    st.floats(min_value=-0.999, max_value=0.999),
    st.sampled_from(["higher", "lower"]),
)
def test_float_change_inside_tolerance_never_fails(base, tol, frac, better):
    now = base * (1 + frac * tol)
    assert verdict(better, base, now, tol) != "regression"


@given(BASES, TOL_PCTS, st.data())
def test_higher_better_mirrors_lower_better(base, tol_pct, data):
    tol = tol_pct / 100
    edge = base * tol_pct // 100  # the largest change within tolerance; draw around it often
    d = data.draw(
        st.one_of(st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from([-edge - 1, -edge, edge, edge + 1]))
    )
    higher = verdict("higher", base, base + d, tol)
    lower = verdict("lower", base, base - d, tol)
    assert higher == lower


@given(
    st.floats(min_value=-1e9, max_value=1e9),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=-1e9, max_value=1e9),
    st.floats(min_value=0, max_value=1e9),
    st.sampled_from(["higher", "lower"]),
)
def test_worse_than_a_regression_is_a_regression(base, tol, n1, extra, better):
    assume(verdict(better, base, n1, tol) == "regression")
    n2 = n1 - extra if better == "higher" else n1 + extra
    assert verdict(better, base, n2, tol) == "regression"


@given(
    st.floats(min_value=1e-6, max_value=1e9),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=2e9),
    st.sampled_from(["higher", "lower"]),
)
def test_gate_verdicts_are_exclusive_and_consistent_with_change(base, tol, now, better):
    v = verdict(better, base, now, tol)
    assert v in ("unchanged", "regression", "improvement")
    if now == base:
        assert v == "unchanged"
    elif v == "regression":
        assert (now < base) if better == "higher" else (now > base)
    elif v == "improvement":
        assert (now > base) if better == "higher" else (now < base)


# ---------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    "text, expected",
    [("<= 10", ("<=", 10.0)), (">=0.8", (">=", 0.8)), ("  < 1e3 ", ("<", 1000.0)), ("> -2.5", (">", -2.5))],
)
def test_parse_threshold(text, expected):
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["10", "about 10", "== 5", "<= ", "<= ten", "=< 3", "<= 1.2.3", "<= e", ">= --1", ""])
def test_parse_threshold_rejects_bad_text(text):
    with pytest.raises(BaselineError, match="threshold"):
        parse_threshold(text)


def test_check_thresholds():
    rows = check_thresholds(
        {
            "cost_per_1m_requests": "<= 10",
            "memory_utilization": ">= 0.8",
            "ttft_p99_ms": "< 200",
            "goodput": "> 5",
            "error_rate": "<= 0",
        },
        {"cost_per_1m_requests": 10.0, "memory_utilization": 0.79, "ttft_p99_ms": 200.0, "goodput": math.nan},
    )
    by_name = {r.metric: r for r in rows}
    assert by_name["cost_per_1m_requests"].verdict == "ok"  # equal meets '<='
    assert by_name["memory_utilization"].verdict == "breach"
    assert by_name["ttft_p99_ms"].verdict == "breach"  # equal does not meet '<'
    assert by_name["goodput"].verdict == "missing"
    assert by_name["error_rate"].verdict == "missing"
    assert by_name["memory_utilization"].tolerance == ">= 0.8"
    assert [r.fails for r in rows] == [False, True, True, True, True]


def test_check_thresholds_bad_text_raises():
    with pytest.raises(BaselineError):
        check_thresholds({"goodput": "at least 5"}, {"goodput": 6.0})


# ---------------------------------------------------------------- files


def valid_doc():
    return doc(
        request_throughput=entry(12.5, "higher", 0.1, True, unit="req/s", cv=0.02, repetitions=[12.0, 12.5, 13.0]),
        ttft_p50_ms=entry(80.0, "lower", 0.15, True, unit="ms"),
    )


def test_baseline_path_is_per_profile_and_safe():
    p = baseline_path("baselines", "a100-80gb", "tests/perf/test_vllm_serving.py::test_serving[chat]")
    assert p == Path("baselines/a100-80gb/tests.perf.test_vllm_serving.py--test_serving[chat].json")
    odd = baseline_path("b", "cpu", "t.py::test[a b/c*?]")
    assert odd.parent == Path("b/cpu") and " " not in odd.name and "*" not in odd.name and "?" not in odd.name


def test_load_missing_file_is_none(tmp_path):
    assert load_baseline(tmp_path / "nope.json") is None


def test_load_valid(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(valid_doc()))
    assert load_baseline(path) == valid_doc()


def test_load_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "schema": 1,\n  "metrics": {,\n}\n')
    with pytest.raises(BaselineError) as exc:
        load_baseline(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "line 3" in msg


def test_load_schema_invalid_names_file_and_field(tmp_path):
    bad = valid_doc()
    bad["metrics"]["request_throughput"]["value"] = "12.5"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(BaselineError) as exc:
        load_baseline(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "metrics.request_throughput.value" in msg


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(schema=99), "schema"),
        (lambda d: d.pop("provenance"), "(top level)"),
        (lambda d: d["metrics"]["ttft_p50_ms"].update(better="faster"), "metrics.ttft_p50_ms.better"),
        (lambda d: d["metrics"]["ttft_p50_ms"].update(tolerance=-0.1), "metrics.ttft_p50_ms.tolerance"),
        (
            lambda d: d["metrics"]["request_throughput"]["repetitions"].append("x"),
            "metrics.request_throughput.repetitions.3",
        ),
    ],
)
def test_load_schema_errors_name_the_field(tmp_path, mutate, field):
    bad = valid_doc()
    mutate(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(BaselineError, match=re.escape(f"field {field}:")):
        load_baseline(path)


def test_load_undecodable_file(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BaselineError, match=re.escape(str(path))):
        load_baseline(path)


def test_write_creates_folders_and_round_trips(tmp_path):
    path = tmp_path / "cpu" / "sub" / "t.json"
    assert write_baseline(path, valid_doc()) == path
    assert load_baseline(path) == valid_doc()
    assert path.read_text().endswith("\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.json"]


def test_write_schema_invalid_keeps_old_file(tmp_path):
    path = tmp_path / "t.json"
    write_baseline(path, valid_doc())
    before = path.read_bytes()
    bad = valid_doc()
    bad["metrics"]["request_throughput"]["value"] = "fast"
    with pytest.raises(BaselineError, match="metrics.request_throughput.value"):
        write_baseline(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_write_failing_midway_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "t.json"
    write_baseline(path, valid_doc())
    before = path.read_bytes()
    bad = valid_doc()
    bad["metrics"]["request_throughput"]["value"] = math.nan  # JSON cannot hold it: null, not a number
    with pytest.raises(BaselineError, match="field metrics.request_throughput.value"):
        write_baseline(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_write_replaces(tmp_path):
    path = tmp_path / "t.json"
    write_baseline(path, valid_doc())
    new = valid_doc()
    new["metrics"]["request_throughput"]["value"] = 99.0
    write_baseline(path, new)
    assert load_baseline(path)["metrics"]["request_throughput"]["value"] == 99.0
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


# ---------------------------------------------------------------- make_baseline


def measurement(metrics, repetitions) -> Measurement:
    return Measurement.from_dict(
        {
            "test_id": "tests/perf/test_x.py::test_serving[rag]",
            "profile": "cpu",
            "metrics": metrics,
            "repetitions": repetitions,
            "provenance": {"git": "abc", "vllm": "0.11", "hardware": HARDWARE},
        }
    )


def test_make_baseline_tolerances():
    m = measurement(
        {
            "request_throughput": 10.0,
            "ttft_p50_ms": 100.0,
            "output_throughput": 100.0,
            "not_a_metric": 1.0,
            "goodput": math.nan,
            "error_rate": 0.0,
        },
        [
            {"request_throughput": 9.0, "ttft_p50_ms": 100.0, "output_throughput": 1.0},
            {"request_throughput": 10.0, "ttft_p50_ms": 100.0, "output_throughput": 10.0},
            {"request_throughput": 11.0, "ttft_p50_ms": 100.0, "output_throughput": 100.0},
        ],
    )
    b = make_baseline(m)
    assert b["schema"] == SCHEMA_VERSION and b["test_id"] == m.test_id and b["profile"] == "cpu"
    assert b["provenance"] == m.provenance
    assert set(b["metrics"]) == {"request_throughput", "ttft_p50_ms", "output_throughput", "error_rate"}
    rt = b["metrics"]["request_throughput"]
    assert rt["value"] == 10.0 and rt["better"] == "higher" and rt["unit"] == "req/s" and rt["gated"] is True
    assert rt["repetitions"] == [9.0, 10.0, 11.0]
    assert rt["cv"] == pytest.approx(0.1)  # stdev 1 / mean 10
    assert rt["tolerance"] == pytest.approx(0.3)  # 3 cv beats the 10% default
    ttft = b["metrics"]["ttft_p50_ms"]
    assert ttft["cv"] == 0 and ttft["tolerance"] == METRICS["ttft_p50_ms"].tolerance  # the default, no spread
    assert b["metrics"]["output_throughput"]["tolerance"] == MAX_TOLERANCE  # huge spread: capped
    assert b["metrics"]["error_rate"]["gated"] is False
    assert b["metrics"]["error_rate"]["repetitions"] == []


def test_make_baseline_gated_override():
    m = measurement({"request_throughput": 10.0, "goodput": 5.0}, [])
    b = make_baseline(m, gated={"goodput"})
    assert b["metrics"]["goodput"]["gated"] is True
    assert b["metrics"]["request_throughput"]["gated"] is False


@given(st.lists(st.floats(min_value=0.1, max_value=1e4), min_size=2, max_size=8), st.sampled_from(sorted(METRICS)))
def test_make_baseline_tolerance_policy(reps, name):
    m = measurement({name: statistics.median(reps)}, [{name: r} for r in reps])
    b = make_baseline(m)["metrics"][name]
    cv = statistics.stdev(reps) / statistics.fmean(reps)
    assert b["tolerance"] >= METRICS[name].tolerance
    assert b["tolerance"] >= min(MAX_TOLERANCE, 3 * cv) * (1 - 1e-9)  # never tighter, up to float noise
    assert b["tolerance"] == round(b["tolerance"], 4)
    assert b["tolerance"] <= MAX_TOLERANCE


def test_make_baseline_round_trip(tmp_path):
    m = measurement(
        {"request_throughput": 10.25, "ttft_p50_ms": 81.5, "memory_utilization": 0.5},
        [
            {"request_throughput": 10.0, "ttft_p50_ms": 80.0, "memory_utilization": 0.5},
            {"request_throughput": 10.5, "ttft_p50_ms": 83.0, "memory_utilization": 0.5},
        ],
    )
    b = make_baseline(m)
    path = baseline_path(tmp_path, "cpu", m.test_id)
    write_baseline(path, b)
    assert load_baseline(path) == b
    # and a rerun with the same numbers passes its own gate
    assert not any(r.fails for r in compare(load_baseline(path), m.metrics))


# ---------------------------------------------------------------- compare with repetitions (perfsuite.decision)


def reps_of(name, values):
    return [{name: v} for v in values]


def test_compare_uses_both_runs_repetitions_and_shows_the_interval():
    base = doc(request_throughput=entry(16.4, "higher", 0.10, repetitions=[16.0, 16.4, 16.8]))
    [row] = compare(base, {"request_throughput": 13.1}, repetitions=reps_of("request_throughput", [12.8, 13.1, 13.4]))
    assert row.verdict == "regression" and row.fails
    assert row.low_pct < row.change_pct < row.high_pct < -10
    assert "interval" in row.note


def test_a_noisy_comparison_is_inconclusive_and_does_not_fail():
    base = doc(request_throughput=entry(30.0, "higher", 0.10, repetitions=[30.0, 27.0, 32.0]))
    [row] = compare(base, {"request_throughput": 25.0}, repetitions=reps_of("request_throughput", [25.0, 31.0, 21.0]))
    assert row.verdict == "inconclusive" and not row.fails
    assert row.low_pct < -10 <= row.high_pct
    assert "repetitions" in row.note
    # the same point change without repetitions is the plain threshold rule: a regression
    [plain] = compare(base, {"request_throughput": 25.0})
    assert plain.verdict == "inconclusive"  # the baseline's own spread still counts
    [bare] = compare(doc(request_throughput=entry(30.0, "higher", 0.10)), {"request_throughput": 25.0})
    assert bare.verdict == "regression"


def test_an_edited_baseline_value_moves_its_repetitions_with_it():
    # The end-to-end test doubles a baseline's value by hand; its repetitions stay as measured.
    base = doc(request_throughput=entry(32.8, "higher", 0.20, repetitions=[16.0, 16.4, 16.8]))
    [row] = compare(base, {"request_throughput": 16.4}, repetitions=reps_of("request_throughput", [16.0, 16.4, 16.8]))
    assert row.verdict == "regression"
    assert row.change_pct == pytest.approx(-50.0)


def test_judge_reports_inconclusive_without_failing_and_says_why():
    from perfsuite.judge import judge
    from perfsuite.report import comparison_table

    base = doc(request_throughput=entry(30.0, "higher", 0.10, repetitions=[30.0, 27.0, 32.0]))
    m = measurement({"request_throughput": 25.0}, reps_of("request_throughput", [25.0, 31.0, 21.0]))
    j = judge(m, base, strict=True)
    assert j.verdict is Verdict.INCONCLUSIVE and not j.fails
    assert any("request_throughput inconclusive" in n for n in j.notes)
    table = comparison_table([r.as_dict() for r in j.rows])
    assert "interval (90%)" in table and "% to +" in table
    assert "request_throughput: " in table.splitlines()[-1]


def test_judge_says_to_approve_an_improvement():
    from perfsuite.judge import judge

    base = doc(request_throughput=entry(16.4, "higher", 0.10, repetitions=[16.0, 16.4, 16.8]))
    m = measurement({"request_throughput": 20.0}, reps_of("request_throughput", [19.8, 20.0, 20.3]))
    j = judge(m, base)
    assert j.verdict is Verdict.IMPROVED and not j.fails
    assert any("perfsuite approve" in n for n in j.notes)


def test_a_profile_floor_above_the_cap_is_kept():
    # The cap limits what a noisy baseline's CV can do; a measured floor (cpu latency: 100%) is kept.
    m = measurement({"ttft_p50_ms": 30.0, "request_throughput": 16.0}, [])
    b = make_baseline(m, min_tolerance={"ms": 1.0, "req/s": 0.1})
    assert b["metrics"]["ttft_p50_ms"]["tolerance"] == 1.0
    assert b["metrics"]["request_throughput"]["tolerance"] == 0.1


@pytest.mark.parametrize("profile", ["../../outside", "..", "", "/etc", "cpu/../..", ".hidden", "A100", None])
def test_baseline_path_refuses_a_profile_that_is_not_a_profile_name(profile):
    with pytest.raises(BaselineError, match=r"measurements\[3\]\.profile"):
        baseline_path("b", profile, "t.py::test", where="measurements[3]")


@pytest.mark.parametrize("profile", ["cpu", "a100", "a100-80gb", "my-gpu.v2", "rtx_4090"])
def test_baseline_path_takes_catalog_and_user_catalog_names(profile):
    assert baseline_path("b", profile, "t.py::test").parent == Path("b", profile)


def test_baseline_path_never_leaves_the_folder_whatever_the_test_id(tmp_path):
    for test_id in ("../../x", "..", "/etc/passwd", "a/../../../b::c"):
        p = baseline_path(tmp_path, "cpu", test_id)
        assert p.resolve().is_relative_to((tmp_path / "cpu").resolve())


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_load_refuses_non_finite_numbers_naming_file_and_field(tmp_path, constant):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(valid_doc()).replace('"value": 12.5', f'"value": {constant}'))
    with pytest.raises(BaselineError) as exc:
        load_baseline(path)
    assert str(path) in str(exc.value) and "metrics.request_throughput.value" in str(exc.value)


def test_write_is_strict_json(tmp_path):
    doc = valid_doc()
    doc["provenance"] = {"interval": [-math.inf, math.inf]}
    path = write_baseline(tmp_path / "b.json", doc)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))["provenance"] == {
        "interval": [None, None]
    }
