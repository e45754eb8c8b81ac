"""The cost calculator: hand-computed cases, properties of the arithmetic, catalogs and price files."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite.calculator import (
    SECONDS_PER_MONTH,
    ApiModel,
    Traffic,
    calculate,
    capacity_from_results,
    cents,
    load_catalogs,
)
from perfsuite.cli import main
from perfsuite.errors import UsageError
from perfsuite.slo import SLO, meets_slo, sustainable_point

MINI = ApiModel("gpt-4o-mini", "OpenAI", "gpt-4o-mini", "balanced", 0.15, 0.60, "2024-10-10", "test")


def test_the_articles_example_costs_8_13_per_million_requests():
    """140 req/s on one A100 80GB at $4.10/h, the article's traffic running all month."""
    t = Traffic.of(peak_rps=140, input_tokens=4096, output_tokens=512)
    r = calculate(t, 140, 4.10, [MINI])["self_hosted"]
    assert r["replicas"] == 1
    assert r["monthly_cost"] == 2993.00  # 4.10 x 730
    assert r["cost_per_1m_requests"] == 8.13  # 2993 / (140 x 2,628,000) x 1e6 = 8.1349...
    assert r["full_utilization_cost_per_1m_requests"] == 8.13


def test_a_small_month_by_hand():
    """1M requests a month, 512 in / 256 out, one $1/h device serving 10 req/s."""
    t = Traffic.of(requests_per_month=1_000_000, input_tokens=512, output_tokens=256)
    r = calculate(t, 10.0, 1.0, [MINI])
    s, a = r["self_hosted"], r["api"]["gpt-4o-mini"]
    assert s["replicas"] == 1
    assert s["monthly_cost"] == 730.00
    assert s["cost_per_1m_requests"] == 730.00
    assert s["cost_per_1m_tokens"] == 0.9505  # 730 / 768M tokens x 1e6 = 0.95052...
    assert a["monthly_cost"] == 230.40  # 512 x 0.15 + 256 x 0.60 = 230.4 $/1M requests
    assert a["delta"] == 499.60
    assert a["delta_pct"] == 216.8
    assert a["cheaper"] == "api"
    assert a["break_even_requests_per_month"] == 3_168_403  # ceil(730 / 0.0002304)


def test_replicas_are_sized_for_the_peak():
    t = Traffic.of(requests_per_month=10_000_000, peak_rps=25, input_tokens=100, output_tokens=100)
    s = calculate(t, 10.0, 2.0, [MINI], devices=2)["self_hosted"]
    assert s["replicas"] == 3
    assert s["monthly_cost"] == 3 * 2 * 2.0 * 730


def test_no_break_even_when_the_api_is_cheaper_even_at_full_utilization():
    t = Traffic.of(requests_per_month=1_000_000, input_tokens=100, output_tokens=10)
    a = calculate(t, 0.5, 4.10, [MINI])["api"]["gpt-4o-mini"]
    assert a["break_even_requests_per_month"] is None
    assert a["cheaper"] == "api"


@pytest.mark.parametrize(
    ("x", "rounded"), [(0.125, 0.13), (-0.125, -0.13), (0.124999, 0.12), (2993.0, 2993.0), (1e-9, 0.0)]
)
def test_cents_round_half_away_from_zero(x, rounded):
    assert cents(x) == rounded


@given(
    rpm=st.floats(1e3, 1e10),
    tput=st.floats(0.01, 1e4),
    price=st.floats(0.0, 100.0),
    tokens_in=st.integers(0, 10_000),
    tokens_out=st.integers(1, 4_000),
    devices=st.integers(1, 8),
)
def test_properties(rpm, tput, price, tokens_in, tokens_out, devices):
    t = Traffic.of(requests_per_month=rpm, input_tokens=tokens_in, output_tokens=tokens_out)
    r = calculate(t, tput, price, [MINI], devices=devices)
    s, a = r["self_hosted"], r["api"]["gpt-4o-mini"]
    assert s["replicas"] == max(1, math.ceil(t.peak_rps / tput))
    assert s["replicas"] * tput >= t.peak_rps  # enough capacity
    assert (s["replicas"] - 1) * tput < t.peak_rps or s["replicas"] == 1  # and no more than needed
    # The delta is the difference of the numbers shown, to the cent.
    assert round(a["delta"] * 100) == round(s["monthly_cost"] * 100) - round(a["monthly_cost"] * 100)
    be = a["break_even_requests_per_month"]
    if be:  # (0 when the hardware is free)
        # At the break-even traffic one replica serves it and costs no more than the API.
        at = Traffic.of(requests_per_month=be, input_tokens=tokens_in, output_tokens=tokens_out)
        per_request = MINI.cost_per_request(tokens_in, tokens_out)
        assert devices * price * 730 <= be * per_request * (1 + 1e-12)
        assert at.peak_rps <= tput * (1 + 1e-12)


def test_traffic_needs_something_to_size():
    with pytest.raises(UsageError, match="requests per month .* or a peak rate"):
        Traffic.of(input_tokens=10, output_tokens=10)
    with pytest.raises(UsageError, match="below the month's average"):
        Traffic.of(requests_per_month=SECONDS_PER_MONTH * 10, peak_rps=5, input_tokens=1, output_tokens=1)
    with pytest.raises(UsageError, match="both 0"):
        Traffic.of(requests_per_month=100, input_tokens=0, output_tokens=0)
    with pytest.raises(UsageError, match="must be > 0"):
        calculate(Traffic.of(peak_rps=1, input_tokens=1, output_tokens=1), 0, 1.0, [MINI])


def test_the_catalogs_have_the_articles_prices_and_models():
    c = load_catalogs()
    assert c.hardware["a100-40gb"]["price_per_hour"] == 3.27
    assert c.hardware["a100-80gb"]["price_per_hour"] == 4.10
    assert c.hardware["h100"]["price_per_hour"] == 8.00
    assert {"h200", "l4", "l40s"} <= set(c.hardware)
    for h in c.hardware.values():
        assert h["price_source"] and h["price_date"]
        if h["kind"] == "gpu":
            assert h["memory_gb"] and h["bandwidth_tb_s"] and h["bf16_tflops"]
    tiers = {k: (m.tier, m.input_per_1m, m.output_per_1m) for k, m in c.api_models.items()}
    assert tiers["claude-3-5-sonnet"] == ("general", 3.0, 15.0)
    assert tiers["gpt-4o-mini"] == ("balanced", 0.15, 0.60)
    assert tiers["claude-3-5-haiku"] == ("throughput", 0.80, 4.0)


def test_a_prices_file_overrides_the_catalogs(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(
        json.dumps(
            {
                "hardware": {"a100-80gb": {"price_per_hour": 2.5}, "mi300x": {"price_per_hour": 3.9}},
                "api_models": {"gpt-4o-mini": {"input_per_1m": 0.1, "refreshed": "2026-01-02"}},
            }
        )
    )
    c = load_catalogs(f)
    assert c.hardware_price("a100-80gb") == 2.5
    assert c.hardware["a100-80gb"]["price_source"] == "user prices file prices.json"
    assert c.hardware_price("mi300x") == 3.9
    assert c.api_models["gpt-4o-mini"].input_per_1m == 0.1
    assert c.api_models["gpt-4o-mini"].output_per_1m == 0.60  # what the file does not name stays
    assert c.api_models["gpt-4o-mini"].refreshed == "2026-01-02"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"hardware": {"a100-80gb": {"price_per_hour": "cheap"}}}', "field hardware.a100-80gb.price_per_hour"),
        ('{"hardware": {"a100-80gb": {"price_per_hour": -1}}}', "is less than the minimum"),
        ('{"hardware": {"tpu": {"price_source": "x"}}}', "hardware.tpu is not in the catalog, so it needs price"),
        ('{"api_models": {"new-model": {"input_per_1m": 1}}}', "api_models.new-model .* needs provider"),
        ('{"gpus": {}}', "Additional properties are not allowed"),
    ],
)
def test_a_bad_prices_file_says_what_and_where(tmp_path, content, message):
    f = tmp_path / "prices.json"
    f.write_text(content)
    with pytest.raises(UsageError, match=message) as exc:
        load_catalogs(f)
    assert str(f) in str(exc.value)


def _point(rate, ttft, tpot=10.0, errors=0.0):
    return {
        "rate": rate,
        "request_throughput": rate * 0.95,
        "ttft_p90_ms": ttft,
        "tpot_p90_ms": tpot,
        "error_rate": errors,
    }


def test_the_sustainable_rate_is_the_last_before_the_first_miss():
    slo = SLO(ttft_ms=100, tpot_ms=20, percentile=90)
    points = [_point(8, 60), _point(2, 20), _point(4, 30), _point(16, 400), _point(32, 90)]
    assert sustainable_point(points, slo)["rate"] == 8  # 32 met it by luck, past the knee
    assert not meets_slo(_point(2, 20, errors=0.01), slo)
    assert not meets_slo(_point(2, 20, tpot=25), slo)
    assert sustainable_point([_point(2, 500)], slo) is None
    with pytest.raises(UsageError, match="percentile"):
        SLO(percentile=95)


def _results():
    sweep = {"slo": {"ttft_ms": 100, "tpot_ms": 20, "percentile": 90}, "points": [_point(4, 30), _point(8, 200)]}
    return {
        "measurements": [
            {"test_id": "t::sweep", "framework": "vllm", "profile": "cpu", "metrics": {}, "sweep": sweep},
            {"test_id": "t::peak", "framework": "vllm", "profile": "cpu", "metrics": {"request_throughput": 30.0}},
            {"test_id": "t::peak", "framework": "hf-naive", "profile": "cpu", "metrics": {"request_throughput": 5.0}},
        ]
    }


def test_capacity_comes_from_the_sweep_not_the_peak():
    cap = capacity_from_results(_results(), "vllm")
    assert cap["throughput_rps"] == 4 * 0.95
    assert "SLO" in cap["basis"]
    looser = capacity_from_results(_results(), "vllm", slo=SLO(ttft_ms=250, tpot_ms=20))
    assert looser["throughput_rps"] == 8 * 0.95
    assert capacity_from_results(_results(), "hf-naive")["basis"].startswith("peak throughput")
    with pytest.raises(UsageError, match="no measurement of tgi.*it has: hf-naive on cpu, vllm on cpu"):
        capacity_from_results(_results(), "tgi")
    with pytest.raises(UsageError, match="no rate of the load sweep met the SLO"):
        capacity_from_results(_results(), "vllm", slo=SLO(ttft_ms=10, tpot_ms=20))


def test_calc_command_worked_example(capsys):
    argv = ["calc", "--peak-rps", "140", "--input-tokens", "4096", "--output-tokens", "512", "--throughput", "140"]
    assert main([*argv, "--gpu", "a100"]) == 0
    out = capsys.readouterr().out
    assert "$2,993.00" in out
    assert "$8.13" in out
    assert "claude-3-5-sonnet" in out


def test_calc_command_from_a_results_file(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(_results()))
    argv = ["calc", "--requests-per-month", "1e6", "--input-tokens", "512", "--output-tokens", "256"]
    assert main([*argv, "--results", str(f), "--framework", "vllm", "--api", "gpt-4o-mini", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["self_hosted"]["throughput_rps"] == 4 * 0.95
    assert r["self_hosted"]["price_per_hour"] == 0.1008  # the profile it was measured on
    assert list(r["api"]) == ["gpt-4o-mini"]


def test_calc_command_errors(tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text('{"hardware": {"h100": {"price_per_hour": "x"}}}')
    argv = ["calc", "--peak-rps", "1", "--input-tokens", "1", "--output-tokens", "1", "--throughput", "1"]
    assert main([*argv, "--gpu", "h100", "--prices", str(bad)]) == 2
    assert "field hardware.h100.price_per_hour" in capsys.readouterr().err
    assert main([*argv, "--gpu", "tpu"]) == 2
    assert "--gpu=tpu: not in the hardware catalog" in capsys.readouterr().err
    assert main(argv) == 2
    assert "give --gpu PROFILE" in capsys.readouterr().err
