"""The gate's decision rule (perfsuite.decision): properties over generated repetitions, and examples."""

import math
import time

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from perfsuite.decision import Decision, change_interval, decide, median_interval

RANK = {"regression": 0, "inconclusive": 1, "unchanged": 2, "improvement": 3}

# Repetitions as the gate sees them: a few positive values of one metric (req/s, ms, $).
VALUE = st.floats(min_value=0.5, max_value=1e4, allow_nan=False)
REPS = st.lists(VALUE, min_size=1, max_size=9)
TOL = st.floats(min_value=0.0, max_value=0.5)
BETTER = st.sampled_from(["higher", "lower"])


def interval_in_better_direction(d: Decision, better: str) -> tuple[float, float]:
    return (d.low, d.high) if better == "higher" else (-d.high, -d.low)


# ---------------------------------------------------------------- properties


@given(REPS, REPS, TOL, BETTER)
def test_never_a_regression_while_the_interval_reaches_no_change(base, now, tol, better):
    d = decide(base, now, better, tol)
    low, high = interval_in_better_direction(d, better)
    if high >= -tol:  # the interval holds a change the tolerance calls "no change"
        assert d.verdict != "regression"
    if d.verdict == "regression":
        assert high < -tol and high < 0  # the whole interval is worse than the tolerance, and than 0


@given(REPS, REPS, TOL, BETTER)
def test_the_interval_holds_the_estimate_and_the_verdict_matches_it(base, now, tol, better):
    d = decide(base, now, better, tol)
    assert d.low <= d.change <= d.high
    low, high = interval_in_better_direction(d, better)
    expected = (
        "regression" if high < -tol else "improvement" if low > tol else "unchanged" if low >= -tol else "inconclusive"
    )
    # The rule's edge slack (1e-9) may keep a change of exactly the tolerance inside it.
    if all(abs(abs(x) - tol) > 1e-8 for x in (low, high)):
        assert d.verdict == expected
    assert d.tolerance == tol


@given(REPS, REPS, TOL, BETTER, st.floats(min_value=0.3, max_value=3.0), st.floats(min_value=0.3, max_value=3.0))
def test_monotone_in_the_effect(base, now, tol, better, k1, k2):
    """Scaling now's repetitions up never makes a higher-is-better verdict worse (and mirrored for
    lower-is-better): regression < inconclusive < unchanged < improvement."""
    lo_k, hi_k = sorted((k1, k2))
    v_lo = RANK[decide(base, [x * lo_k for x in now], better, tol).verdict]
    v_hi = RANK[decide(base, [x * hi_k for x in now], better, tol).verdict]
    assert (v_lo <= v_hi) if better == "higher" else (v_lo >= v_hi)


@given(REPS, REPS, TOL)
def test_higher_and_lower_is_better_mirror_each_other(base, now, tol):
    """The same numbers negated, with the other direction, give the same verdict and a mirrored interval."""
    up = decide(base, now, "higher", tol)
    down = decide([-x for x in base], [-x for x in now], "lower", tol)
    assert up.verdict == down.verdict
    assert down.change == pytest.approx(-up.change, abs=1e-12)
    assert (down.low, down.high) == pytest.approx((-up.high, -up.low), rel=1e-9, abs=1e-9)  # float noise scales


@given(st.integers(min_value=10, max_value=10**5), st.lists(st.integers(-50, 50), min_size=1, max_size=7), TOL)
def test_a_gain_and_the_same_loss_of_a_lower_is_better_metric_mirror(base, deltas, tol):
    """Throughput up by x% and latency down by x% (around one baseline value) are judged alike."""
    up = decide([base], [base * (100 + d) / 100 for d in deltas], "higher", tol)
    down = decide([base], [base * (100 - d) / 100 for d in deltas], "lower", tol)
    assert up.verdict == down.verdict


@given(REPS, TOL, BETTER)
def test_the_same_repetitions_are_unchanged(reps, tol, better):
    d = decide(reps, reps, better, tol)
    assert d.change == 0
    assert d.verdict in ("unchanged", "inconclusive")
    if max(reps) <= min(reps) * (1 + tol):  # no resample can differ by more than the tolerance
        assert d.verdict == "unchanged"


@given(st.floats(min_value=1e-3, max_value=1e6), st.floats(min_value=1e-3, max_value=1e6), TOL, BETTER)
def test_single_values_are_the_plain_threshold_rule(base, now, tol, better):
    d = decide([base], [now], better, tol)
    assert d.low == d.high == d.change
    gain = (now - base) / base * (1 if better == "higher" else -1)
    assume(abs(abs(gain) - tol) > 1e-8)
    assert d.verdict == ("regression" if gain < -tol else "improvement" if gain > tol else "unchanged")


@given(REPS, REPS, TOL, BETTER)
def test_deterministic(base, now, tol, better):
    assert decide(base, now, better, tol) == decide(list(base), list(now), better, tol)


@given(st.lists(VALUE, min_size=1, max_size=15))
def test_median_interval_holds_the_median(values):
    med, low, high = median_interval(values)
    assert min(values) <= low <= med <= high <= max(values)


# ---------------------------------------------------------------- examples


def test_a_20_percent_throughput_loss_with_real_noise_is_a_regression():
    # Shapes of the CPU default's repetitions (benchmarks/data): about 2% spread within a run.
    d = decide([16.4, 16.0, 16.8], [13.1, 12.8, 13.4], "higher", 0.10)
    assert d.verdict == "regression"
    assert d.high < -0.10
    assert "interval" in d.reason and "-20." in d.reason


def test_noise_alone_is_unchanged():
    d = decide([16.4, 16.0, 16.8], [16.2, 16.6, 15.9], "higher", 0.10)
    assert d.verdict == "unchanged" and d.reason.endswith("within tolerance")


def test_latency_up_is_a_regression_and_down_an_improvement():
    assert decide([10.0, 10.2, 9.9], [14.0, 14.1, 13.8], "lower", 0.15).verdict == "regression"
    up = decide([10.0, 10.2, 9.9], [7.0, 7.1, 6.9], "lower", 0.15)
    assert up.verdict == "improvement" and "perfsuite approve" in up.reason


def test_a_noisy_run_is_inconclusive_and_says_what_would_settle_it():
    d = decide([30.0, 27.0, 32.0], [25.0, 31.0, 21.0], "higher", 0.10)
    assert d.verdict == "inconclusive"
    assert d.low < -0.10 <= d.high
    assert "repetitions" in d.reason


def test_more_repetitions_narrow_the_interval():
    few = change_interval([10.0, 11.0, 9.0], [10.0, 11.0, 9.0])
    many = change_interval([10.0, 11.0, 9.0] * 4, [10.0, 11.0, 9.0] * 4)
    assert many[2] - many[1] < few[2] - few[1]


def test_median_interval_of_three_is_their_range():
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"better": "faster"}, "better="),
        ({"tolerance": -0.1}, "tolerance="),
        ({"tolerance": math.nan}, "tolerance="),
        ({"baseline": []}, "no finite values"),
        ({"candidate": [math.nan, None]}, "no finite values"),
        ({"baseline": [0.0, 0.0, 1.0]}, "median is 0"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    args = {"baseline": [1.0, 1.1], "candidate": [1.0], "better": "higher", "tolerance": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        decide(**args)


def test_a_baseline_that_crosses_zero_gives_an_unbounded_interval():
    change, low, high = change_interval([-1.0, 2.0, 3.0], [2.0])
    assert change == 0 and low == -math.inf and high == math.inf
    assert decide([-1.0, 2.0, 3.0], [1.0], "higher", 0.1).verdict == "inconclusive"


# ---------------------------------------------------------------- adaptive length (runner._stop_reason)


def _reps(*values):
    return [{"request_throughput": v} for v in values]


def test_without_a_budget_the_repetitions_are_fixed():
    from perfsuite.runner import _stop_reason

    assert _stop_reason(_reps(10.0, 20.0, 30.0), time.monotonic(), None) == "fixed"


def test_a_precise_key_metric_stops_early():
    from perfsuite.runner import PRECISION, _stop_reason

    tight = _reps(16.0, 16.3, 16.5)  # half the range is 1.5% of the median
    assert PRECISION >= (16.5 - 16.0) / 2 / 16.3
    assert _stop_reason(tight, time.monotonic(), 600) == "precision"


def test_a_noisy_key_metric_runs_on_until_the_budget():
    from perfsuite.runner import _stop_reason

    noisy = _reps(27.0, 32.0, 30.0)
    assert _stop_reason(noisy, time.monotonic() - 3.0, 600) is None  # 1 s a repetition, plenty left
    assert _stop_reason(noisy, time.monotonic() - 9.0, 11) == "budget"  # the next would end at ~12 s
    assert _stop_reason(_reps(*range(1, 31)), time.monotonic(), 600) == "max repetitions"


def test_more_repetitions_of_moderate_noise_reach_the_precision():
    from perfsuite.runner import _stop_reason

    rng = np.random.default_rng(1)
    values = [15.0, 17.0, 16.0, *(16 * (1 + 0.04 * rng.standard_normal(27)))]  # +-6% after three
    reached = next(n for n in range(3, 31) if _stop_reason(_reps(*values[:n]), time.monotonic(), 600))
    assert 3 < reached < 30
