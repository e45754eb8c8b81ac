"""The regression gate's rule for one metric: effect size, noise and an interval, in pure functions.

A serving benchmark's repetition is a whole load run, so a CI run has only a few of them, and a
baseline taken in one CI run is compared with a candidate from another (a new server, a new machine
state). The rule therefore combines three things:

1. An effect-size threshold: the metric's relative tolerance (in the baseline file: the largest of the
   metric's default, 3 x the repetitions' coefficient of variation, and the hardware profile's noise
   floor). It stands for the run-to-run noise that repetitions inside one run cannot show.
2. The noise of both runs: a percentile-bootstrap interval of the relative change of the medians
   ((now - baseline) / |baseline|), resampling the baseline's recorded repetitions and the candidate's
   independently, with a fixed seed (the same inputs always give the same verdict).
3. A verdict from where that interval lies against the tolerance, in the metric's better direction:

   - regression:   the whole interval is worse than the tolerance (so never when the interval reaches
                   a change the tolerance calls "no change");
   - improvement:  the whole interval is better than the tolerance;
   - unchanged:    the interval is nowhere worse than the tolerance;
   - inconclusive: the interval holds both a change within tolerance and one worse than it; the reason
                   says about how many repetitions would settle it.

With one value on each side (no repetitions recorded) the interval is the point itself and the rule is
the plain threshold rule perfsuite had before. docs/regression-gate.md measures the false-alarm and
detection rates of this rule on real vLLM servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Decision",
    "decide",
    "decide_paired",
    "change_interval",
    "paired_change_interval",
    "median_interval",
    "CONFIDENCE",
]

# Two-sided confidence of the intervals. 90%: a regression needs the upper end (95% one-sided) of the
# interval beyond the tolerance.
CONFIDENCE = 0.90
RESAMPLES = 4000
SEED = 20240601
# Relative slack on the tolerance edge: a change of exactly the tolerance (e.g. 100 -> 115 at 15%) is
# within it, even where float rounding puts it a hair beyond.
EDGE = 1e-9
MAX_SUGGESTED_REPETITIONS = 50


@dataclass(frozen=True)
class Decision:
    """The verdict on one metric and the numbers behind it (changes are relative: -0.2 is -20%)."""

    verdict: str  # regression, improvement, unchanged, inconclusive
    change: float  # (median now - median baseline) / |median baseline|
    low: float  # the interval of that change
    high: float
    tolerance: float
    reason: str


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        raise ValueError("no finite values to judge")
    return arr


def _boot_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of `resamples` resamples with replacement (the value itself when there is one)."""
    if values.size == 1:
        return np.full(resamples, values[0])
    idx = rng.integers(0, values.size, size=(resamples, values.size))
    return np.median(values[idx], axis=1)


def median_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float, float]:
    """(median, low, high): a percentile-bootstrap interval of the median of `values`.

    With three values it is their range (each value is the resampled median often enough); it narrows
    as repetitions are added. The runner uses it to decide when a measurement has enough repetitions.
    """
    arr = _clean(values)
    meds = _boot_medians(arr, resamples, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(meds, [alpha, 1 - alpha])
    return float(np.median(arr)), float(low), float(high)


def change_interval(
    baseline: Sequence[float],
    candidate: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(change, low, high) of (median(candidate) - median(baseline)) / |median(baseline)|, by percentile
    bootstrap.

    The two groups are resampled independently (they come from different runs). The point estimate
    always lies inside the interval. The baseline's median must not be zero.
    """
    b, c = _clean(baseline), _clean(candidate)
    mb, mc = float(np.median(b)), float(np.median(c))
    if mb == 0:
        raise ValueError("the baseline's median is 0: a relative change is not defined")
    change = (mc - mb) / abs(mb)
    rng = np.random.default_rng(seed)
    boot_b, boot_c = _boot_medians(b, resamples, rng), _boot_medians(c, resamples, rng)
    if np.any(boot_b == 0) or np.any(np.sign(boot_b) != np.sign(mb)):
        # Resamples reach 0 or cross it: the relative change is unbounded.
        return change, -math.inf, math.inf
    alpha = (1 - confidence) / 2
    with np.errstate(over="ignore", invalid="ignore"):  # tiny baselines overflow to inf: kept as such
        ratios = (boot_c - boot_b) / np.abs(boot_b)
        low, high = np.quantile(ratios, [alpha, 1 - alpha])
    low = float(np.min(ratios)) if math.isnan(low) else low
    high = float(np.max(ratios)) if math.isnan(high) else high
    return change, float(min(low, change)), float(max(high, change))


def paired_change_interval(
    base: Sequence[float],
    head: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(change, low, high) for pairs measured side by side (`perfsuite ab`): the change is the median of
    the pairs' relative changes (head_i - base_i) / |base_i|, and the interval a percentile bootstrap
    that resamples whole pairs, so that what the two sides of a pair shared (the machine's state at
    that moment) cancels. With three pairs the 90% interval is the pairs' range: a regression needs
    every pair beyond the tolerance."""
    if len(base) != len(head):
        raise ValueError(f"{len(base)} base values and {len(head)} head values: pairs need one of each")
    pairs = [(b, h) for b, h in zip(base, head) if _finite_pair(b, h)]
    if not pairs:
        raise ValueError("no pair with finite values on both sides")
    if any(b == 0 for b, _ in pairs):
        raise ValueError("a base value is 0: a relative change is not defined")
    changes = np.asarray([(h - b) / abs(b) for b, h in pairs], dtype=float)
    change = float(np.median(changes))
    meds = _boot_medians(changes, resamples, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(meds, [alpha, 1 - alpha])
    return change, float(min(low, change)), float(max(high, change))


def _finite_pair(b, h) -> bool:
    return all(v is not None and math.isfinite(v) for v in (b, h))


def _settle(gain: float, low: float, high: float, tolerance: float, n: int, more: str = "--perf-repetitions") -> str:
    """What would turn an inconclusive verdict into a clear one."""
    half = (high - low) / 2
    distance = abs(gain + tolerance)  # from the estimate to the tolerance edge
    if not math.isfinite(half) or distance < 0.02 * max(tolerance, 0.01) or n < 1:
        return (
            "the change sits at the tolerance edge: more repetitions will not settle it soon; "
            "rerun, or approve or fix it knowingly"
        )
    needed = math.ceil(n * (half / distance) ** 2)
    what = "pairs" if more == "--pairs" else "repetitions"
    if needed > MAX_SUGGESTED_REPETITIONS:
        return f"more than {MAX_SUGGESTED_REPETITIONS} {what} would be needed; rerun on a quieter machine"
    return f"about {max(needed, n + 1)} {what} ({more}) would narrow the interval enough"


def decide(
    baseline: Sequence[float],
    candidate: Sequence[float],
    better: str,
    tolerance: float,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Decision:
    """The verdict on one metric: the repetitions of its baseline and of now, its direction ("higher"
    or "lower" is better), and its relative tolerance (0.1 = 10%). See the module docstring."""
    _check(better, tolerance)
    change, low, high = change_interval(baseline, candidate, confidence, resamples, seed)
    n = min(_clean(baseline).size, _clean(candidate).size)
    return _verdict(change, low, high, better, tolerance, confidence, n, "--perf-repetitions")


def decide_paired(
    base: Sequence[float],
    head: Sequence[float],
    better: str,
    tolerance: float,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Decision:
    """The verdict on one metric from pairs measured side by side (base_i, head_i): the same rule as
    decide(), on paired_change_interval()."""
    _check(better, tolerance)
    change, low, high = paired_change_interval(base, head, confidence, resamples, seed)
    n = sum(1 for b, h in zip(base, head) if _finite_pair(b, h))
    return _verdict(change, low, high, better, tolerance, confidence, n, "--pairs")


def _check(better: str, tolerance: float) -> None:
    if better not in ("higher", "lower"):
        raise ValueError(f"better={better!r}: expected 'higher' or 'lower'")
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance={tolerance!r}: expected a finite number >= 0")


def _verdict(
    change: float, low: float, high: float, better: str, tolerance: float, confidence: float, n: int, more: str
) -> Decision:
    """Where the interval of a change lies against the tolerance, in the metric's better direction."""
    # In the better direction: a gain > 0 is good, whatever the metric.
    gain, glow, ghigh = (change, low, high) if better == "higher" else (-change, -high, -low)
    edge = tolerance + EDGE
    shown = f"{change:+.1%} (interval {low:+.1%} to {high:+.1%}, {confidence:.0%}), tolerance {tolerance:.0%}"
    if ghigh < -edge:
        return Decision("regression", change, low, high, tolerance, f"{shown}: worse beyond tolerance")
    if glow > edge:
        return Decision(
            "improvement",
            change,
            low,
            high,
            tolerance,
            f"{shown}: better beyond tolerance; approve it (perfsuite approve) to make it the baseline",
        )
    if glow >= -edge:
        return Decision("unchanged", change, low, high, tolerance, f"{shown}: within tolerance")
    return Decision(
        "inconclusive",
        change,
        low,
        high,
        tolerance,
        f"{shown}: the interval holds both no change and a regression; "
        + _settle(gain, glow, ghigh, tolerance, n, more),
    )
