"""cost_per_million: the worked example, the edges, and the arithmetic's shape."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite.cost import cost_per_million

prices = st.floats(min_value=0.01, max_value=1000.0, allow_nan=False, allow_infinity=False)
rates = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_worked_example_to_the_cent():
    # 140 req/s on an A100 at $4.10/h: 4.10 / (140 * 3600) * 1e6 = 8.1349... dollars per 1M requests.
    cost = cost_per_million(4.10, 140)
    assert round(cost, 2) == 8.13
    assert cost == pytest.approx(4.10 * 1e6 / 504_000, rel=1e-12)


def test_one_request_per_second_at_one_dollar_per_hour():
    # 1M requests take 1e6 s = 277.78 h.
    assert cost_per_million(1.0, 1.0) == pytest.approx(1e6 / 3600)


def test_zero_rate_costs_infinity():
    assert cost_per_million(4.10, 0) == math.inf
    assert cost_per_million(4.10, 0.0) == math.inf


def test_free_hardware_costs_nothing():
    assert cost_per_million(0.0, 140) == 0.0


@pytest.mark.parametrize(
    "price, rate",
    [(-1.0, 140), (4.10, -1.0), (-0.01, -0.01), (math.nan, 140), (4.10, math.nan), (math.nan, math.nan)],
)
def test_negative_or_nan_raises(price, rate):
    with pytest.raises(ValueError, match="non-negative"):
        cost_per_million(price, rate)


@given(prices, rates, st.floats(min_value=0.01, max_value=100.0))
def test_linear_in_price(price, rate, k):
    assert cost_per_million(price * k, rate) == pytest.approx(k * cost_per_million(price, rate), rel=1e-9)


@given(prices, rates, rates)
def test_inverse_in_rate(price, r1, r2):
    # cost * rate is the price of 1M seconds' worth of hours: the same for every rate.
    assert cost_per_million(price, r1) * r1 == pytest.approx(cost_per_million(price, r2) * r2, rel=1e-9)
    assert cost_per_million(price, r1) * r1 == pytest.approx(price * 1e6 / 3600, rel=1e-9)


@given(prices, rates, st.integers(min_value=1, max_value=10_000))
def test_per_token_cost_consistent_with_per_request_cost(price, req_rate, tokens_per_request):
    per_request = cost_per_million(price, req_rate)
    per_token = cost_per_million(price, req_rate * tokens_per_request)
    # 1M tokens are 1M / tokens_per_request requests.
    assert per_token == pytest.approx(per_request / tokens_per_request, rel=1e-9)


@given(prices, rates, rates)
def test_faster_is_never_more_expensive(price, r1, r2):
    lo, hi = sorted((r1, r2))
    assert cost_per_million(price, hi) <= cost_per_million(price, lo)
