"""percentiles() and summarize() against numbers worked out by hand."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite.loadgen import RequestRecord
from perfsuite.metrics import METRICS, percentiles, summarize
from perfsuite.slo import SLO


def ref_percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default), written out."""
    xs = sorted(values)
    rank = p / 100 * (len(xs) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (rank - lo) * (xs[hi] - xs[lo])


def ok_record(send, first, end, chunks, prompt, output):
    return RequestRecord(
        send=send,
        expected_input=prompt,
        expected_output=output,
        first_token=first,
        end=end,
        chunk_times=list(chunks),
        prompt_tokens=prompt,
        output_tokens=output,
    )


def failed_record(send, end, error="HTTP 500: boom"):
    return RequestRecord(send=send, expected_input=10, expected_output=5, end=end, error=error)


# ---------------------------------------------------------------- percentiles


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 2, 3, 4], {50: 2.5, 90: 3.7, 99: 3.97}),
        ([5, 1, 3], {50: 3.0, 90: 4.6, 99: 4.96}),  # order does not matter
        ([10], {50: 10.0, 90: 10.0, 99: 10.0}),
        ([0, 100], {50: 50.0, 90: 90.0, 99: 99.0}),
        ([7, 7, 7, 7], {50: 7.0, 90: 7.0, 99: 7.0}),
    ],
)
def test_percentiles_hand_computed(values, expected):
    got = percentiles(values)
    assert set(got) == {50, 90, 99}
    for p, v in expected.items():
        assert got[p] == pytest.approx(v, rel=1e-12, abs=1e-12)


def test_percentiles_custom_pcts():
    assert percentiles([1, 2, 3, 4, 5], pcts=(0, 25, 100)) == pytest.approx({0: 1.0, 25: 2.0, 100: 5.0})


def test_percentiles_of_nothing_are_nan():
    got = percentiles([])
    assert set(got) == {50, 90, 99}
    assert all(math.isnan(v) for v in got.values())


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@given(st.lists(finite, min_size=1, max_size=60))
def test_percentiles_monotone_and_bounded(values):
    got = percentiles(values)
    assert min(values) <= got[50] <= got[90] <= got[99] <= max(values)


@given(st.lists(finite, min_size=1, max_size=60))
def test_percentiles_match_reference(values):
    got = percentiles(values)
    for p in (50, 90, 99):
        assert got[p] == pytest.approx(ref_percentile(values, p), rel=1e-9, abs=1e-6)


# ---------------------------------------------------------------- summarize

# Times are binary fractions so that every difference below is exact.
R1 = ok_record(send=0.0, first=0.25, end=1.25, chunks=[0.25, 0.5, 1.25], prompt=10, output=5)
R2 = ok_record(send=1.0, first=1.5, end=2.0, chunks=[1.5, 1.75, 2.0], prompt=20, output=3)
R3 = failed_record(send=0.5, end=0.75)


def test_summarize_counts_and_throughput():
    out = summarize([R1, R2, R3], wall_s=4.0)
    assert out["requests"] == 3
    assert out["requests_ok"] == 2
    assert out["error_rate"] == pytest.approx(1 / 3)
    assert out["duration_s"] == 4.0
    assert out["request_throughput"] == pytest.approx(2 / 4)  # failed requests do not count
    assert out["output_throughput"] == pytest.approx((5 + 3) / 4)
    assert out["total_token_throughput"] == pytest.approx((5 + 3 + 10 + 20) / 4)
    assert out["mean_input_tokens"] == pytest.approx(15)
    assert out["mean_output_tokens"] == pytest.approx(4)


def test_summarize_latencies_in_ms():
    out = summarize([R1, R2, R3], wall_s=4.0)
    # TTFT: 250 and 500 ms.
    assert out["ttft_p50_ms"] == pytest.approx(375)
    assert out["ttft_p90_ms"] == pytest.approx(475)
    assert out["ttft_p99_ms"] == pytest.approx(497.5)
    assert out["ttft_mean_ms"] == pytest.approx(375)
    # TPOT: (1250-250)/(5-1) = 250 and (2000-1500)/(3-1) = 250 ms.
    assert out["tpot_p50_ms"] == pytest.approx(250)
    assert out["tpot_p99_ms"] == pytest.approx(250)
    assert out["tpot_mean_ms"] == pytest.approx(250)
    # ITL: gaps 250, 750 and 250, 250 ms -> sorted 250, 250, 250, 750.
    assert out["itl_p50_ms"] == pytest.approx(250)
    assert out["itl_p90_ms"] == pytest.approx(600)
    assert out["itl_p99_ms"] == pytest.approx(735)
    assert out["itl_mean_ms"] == pytest.approx(375)
    # E2E: 1250 and 1000 ms.
    assert out["e2e_p50_ms"] == pytest.approx(1125)
    assert out["e2e_mean_ms"] == pytest.approx(1125)


def test_every_reported_latency_metric_is_declared():
    out = summarize([R1, R2], wall_s=2.0)
    for name in out:
        if name.endswith("_ms") and "_mean_" not in name:
            assert name in METRICS, name
    for name in ("request_throughput", "output_throughput", "total_token_throughput", "goodput", "error_rate"):
        assert name in out and name in METRICS


def test_goodput_slo_edges_count_as_met():
    # R1: TTFT 250, TPOT 250. R2: TTFT 500, TPOT 250. Exactly equal to the SLO meets it.
    out = summarize([R1, R2, R3], wall_s=4.0, slo=SLO(ttft_ms=500, tpot_ms=250))
    assert out["goodput"] == pytest.approx(2 / 4)
    assert out["goodput_ratio"] == pytest.approx(2 / 3)  # out of every request sent, failed ones included


def test_goodput_just_over_ttft_slo_misses():
    out = summarize([R1, R2, R3], wall_s=4.0, slo=SLO(ttft_ms=499.999, tpot_ms=250))
    assert out["goodput"] == pytest.approx(1 / 4)  # R2 misses by a microsecond


def test_goodput_just_over_tpot_slo_misses():
    out = summarize([R1, R2, R3], wall_s=4.0, slo=SLO(ttft_ms=500, tpot_ms=249.999))
    assert out["goodput"] == 0.0
    assert out["goodput_ratio"] == 0.0


def test_failed_requests_never_count_as_good():
    out = summarize([R3, failed_record(0.0, 0.01)], wall_s=1.0, slo=SLO(ttft_ms=1e9, tpot_ms=1e9))
    assert out["goodput"] == 0.0
    assert out["request_throughput"] == 0.0
    assert out["error_rate"] == 1.0
    assert math.isnan(out["ttft_p50_ms"]) and math.isnan(out["mean_output_tokens"])


def test_single_token_output_has_no_tpot_but_can_be_good():
    r = ok_record(send=0.0, first=0.125, end=0.125, chunks=[0.125], prompt=4, output=1)
    out = summarize([r], wall_s=1.0, slo=SLO(ttft_ms=125, tpot_ms=0))
    assert math.isnan(out["tpot_p50_ms"])  # TPOT is undefined for one token
    assert math.isnan(out["itl_p50_ms"])  # one chunk: no gaps
    assert out["ttft_p50_ms"] == pytest.approx(125)
    assert out["goodput"] == pytest.approx(1.0)


def test_no_records():
    out = summarize([], wall_s=1.0)
    assert out["requests"] == 0
    assert math.isnan(out["error_rate"])
    assert out["request_throughput"] == 0.0
    assert out["goodput"] == 0.0
    assert math.isnan(out["e2e_p99_ms"])


def test_zero_wall_time_gives_zero_throughput_not_a_crash():
    out = summarize([R1], wall_s=0.0)
    assert out["request_throughput"] == 0.0
    assert out["goodput"] == 0.0


@st.composite
def record_lists(draw):
    records = []
    for _ in range(draw(st.integers(min_value=0, max_value=20))):
        send = draw(st.floats(min_value=0, max_value=100, allow_nan=False))
        if draw(st.booleans()) and draw(st.booleans()):
            records.append(failed_record(send, send + draw(st.floats(min_value=0, max_value=5))))
            continue
        ttft = draw(st.floats(min_value=0.001, max_value=5))
        out_tokens = draw(st.integers(min_value=1, max_value=50))
        gaps = draw(st.lists(st.floats(min_value=0, max_value=0.5), min_size=0, max_size=out_tokens - 1))
        chunks = [send + ttft]
        for g in gaps:
            chunks.append(chunks[-1] + g)
        records.append(ok_record(send, chunks[0], chunks[-1], chunks, draw(st.integers(1, 500)), out_tokens))
    return records


@given(
    record_lists(),
    st.floats(min_value=0.01, max_value=1000),
    st.floats(min_value=0, max_value=5000),
    st.floats(min_value=0, max_value=500),
)
def test_goodput_never_exceeds_throughput(records, wall_s, ttft_ms, tpot_ms):
    out = summarize(records, wall_s, SLO(ttft_ms=ttft_ms, tpot_ms=tpot_ms))
    assert 0.0 <= out["goodput"] <= out["request_throughput"]
    if records:
        assert 0.0 <= out["goodput_ratio"] <= 1.0 - out["error_rate"] + 1e-12


@given(record_lists(), st.floats(min_value=0.01, max_value=1000))
def test_summary_percentiles_monotone(records, wall_s):
    out = summarize(records, wall_s)
    for m in ("ttft", "tpot", "itl", "e2e"):
        p50, p90, p99 = out[f"{m}_p50_ms"], out[f"{m}_p90_ms"], out[f"{m}_p99_ms"]
        if math.isnan(p50):
            assert math.isnan(p90) and math.isnan(p99)
        else:
            assert p50 <= p90 <= p99


# ---------------------------------------------------------------- reasoning models

# The metric set of a run without reasoning, as before reasoning models were measured: stored baselines
# and results stay comparable only while it does not change.
PLAIN_KEYS = {
    "requests",
    "requests_ok",
    "error_rate",
    "duration_s",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "mean_input_tokens",
    "mean_output_tokens",
    *(f"{m}_{s}_ms" for m in ("ttft", "tpot", "itl", "e2e") for s in ("p50", "p90", "p99", "mean")),
    "goodput",
    "goodput_ratio",
}
REASONING_KEYS = {"ttfat_p50_ms", "ttfat_p90_ms", "ttfat_p99_ms", "ttfat_mean_ms"} | {
    "mean_reasoning_tokens",
    "mean_answer_tokens",
}


def thinker(send, answer, output, chunks=0, reported=None):
    r = ok_record(send=send, first=send + 0.125, end=send + 2.0, chunks=[send + 0.125], prompt=10, output=output)
    r.first_answer, r.reasoning_chunks, r.reasoning_tokens = answer, chunks, reported
    return r


def test_runs_without_reasoning_keep_their_metric_set():
    plain = ok_record(send=0.0, first=0.25, end=1.25, chunks=[0.25, 0.5, 1.25], prompt=10, output=5)
    plain.first_answer = 0.5  # the first answer chunk after an empty role chunk: no reasoning, no TTFAT
    reported_zero = ok_record(send=0.0, first=0.25, end=1.0, chunks=[0.25, 1.0], prompt=10, output=2)
    reported_zero.reasoning_tokens = 0  # a server that always reports reasoning_tokens, 0 here
    for records in ([R1, R2, R3], [plain, reported_zero], [], [R3]):
        assert set(summarize(records, wall_s=4.0)) == PLAIN_KEYS


def test_reasoning_run_adds_ttfat_and_token_split():
    a = thinker(0.0, answer=0.5, output=8, chunks=5)  # TTFAT 500 ms; 5 reasoning chunks, no server count
    b = thinker(1.0, answer=2.0, output=10, chunks=4, reported=7)  # TTFAT 1000 ms; the server says 7
    c = thinker(2.0, answer=None, output=6, chunks=6)  # never answered: no TTFAT
    out = summarize([a, b, c, R3], wall_s=4.0)
    assert set(out) == PLAIN_KEYS | REASONING_KEYS
    assert out["ttfat_p50_ms"] == pytest.approx(750)
    assert out["ttfat_p90_ms"] == pytest.approx(950)
    assert out["ttfat_mean_ms"] == pytest.approx(750)
    assert out["ttft_p50_ms"] == pytest.approx(125)  # TTFT still the first chunk of any kind
    assert out["mean_reasoning_tokens"] == pytest.approx((5 + 7 + 6) / 3)
    assert out["mean_answer_tokens"] == pytest.approx((3 + 3 + 0) / 3)
    assert out["mean_reasoning_tokens"] + out["mean_answer_tokens"] == pytest.approx(out["mean_output_tokens"])
    for name in REASONING_KEYS - {"ttfat_mean_ms", "mean_reasoning_tokens", "mean_answer_tokens"}:
        assert name in METRICS and not METRICS[name].gated


def test_reasoning_tokens_prefer_the_servers_count_and_never_exceed_the_output():
    assert thinker(0.0, 0.5, output=8, chunks=5).reasoning_output_tokens == 5  # chunks: no count given
    assert thinker(0.0, 0.5, output=8, chunks=5, reported=6).reasoning_output_tokens == 6  # the server's
    assert thinker(0.0, 0.5, output=8, chunks=5, reported=0).reasoning_output_tokens == 5  # 0: not counted
    assert thinker(0.0, None, output=4, chunks=5).reasoning_output_tokens == 4  # capped at the output
    assert thinker(0.0, None, output=4, chunks=5).answer_output_tokens == 0
    only_reported = thinker(0.0, 0.5, output=8, reported=3)  # a server that counts but streams no thinking
    assert only_reported.reasoned
    assert (only_reported.reasoning_output_tokens, only_reported.answer_output_tokens) == (3, 5)
    assert not failed_record(0.0, 1.0).reasoned and failed_record(0.0, 1.0).answer_output_tokens == 0


def test_combined_repetitions_keep_a_metric_only_some_repetitions_have():
    """Failed before the fix: the keys came from the first repetition, so a time to first answer token
    measured only in later repetitions (the model reasoned there) was dropped."""
    from perfsuite.runner import _combine

    base = {"requests": 4.0, "requests_ok": 4.0, "request_throughput": 2.0}
    combined = _combine([dict(base), dict(base, ttfat_p50_ms=30.0), dict(base, ttfat_p50_ms=50.0)])
    assert combined["ttfat_p50_ms"] == 40.0 and combined["request_throughput"] == 2.0
    assert combined["requests"] == 12.0
