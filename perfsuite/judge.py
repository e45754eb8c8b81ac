"""The one function that judges a measurement: against its own validity, the test's absolute
thresholds and its stored baseline. It returns a Judgement and changes nothing."""

from __future__ import annotations

from collections.abc import Mapping

from perfsuite.baseline import check_thresholds, compare
from perfsuite.fingerprint import Fingerprint, differences
from perfsuite.measurement import Measurement
from perfsuite.verdict import Judgement, Verdict

__all__ = ["judge", "config_mismatch", "hardware_differences", "COST_METRICS"]

COST_METRICS = ("cost_per_1m_requests", "cost_per_1m_output_tokens")
# What a baseline must share with a measurement to be compared with it.
COMPARABLE = ("model", "workload", "load", "engine")


def config_mismatch(baseline: dict, m: Measurement) -> str:
    """What makes a baseline measure something else: another model, workload, load or engine settings."""
    prov = dict(baseline.get("provenance", {}))
    now = {"model": m.model, "workload": m.workload, "load": _served(m.load), "engine": m.engine}
    if isinstance(prov.get("load"), dict):
        prov["load"] = _served(prov["load"])
    return "; ".join(f"{k} was {prov[k]!r}, now {now[k]!r}" for k in COMPARABLE if k in prov and prov[k] != now[k])


def _served(load: dict) -> dict:
    """A load as the server sees it: how many load-generator processes sent it is not part of it."""
    return {k: v for k, v in load.items() if k != "workers"}


def _fingerprint(provenance: dict, whose: str) -> tuple[Fingerprint | None, str | None]:
    """The fingerprint in a provenance, or None and why not."""
    raw = (provenance or {}).get("hardware")
    if raw is None:
        return None, f"{whose} has no hardware fingerprint"
    try:
        return Fingerprint.from_dict(raw), None
    except ValueError as exc:
        return None, f"{whose}'s hardware fingerprint is unreadable ({exc})"


def hardware_differences(baseline: dict, measurement: Measurement) -> tuple[list[str], list[str]]:
    """(deciding, informational) differences between the hardware (and framework version) a baseline
    was taken on and the measurement's (perfsuite.fingerprint.DECIDING names what decides)."""
    then, why = _fingerprint(baseline.get("provenance", {}), "baseline")
    if then is None:
        return [f"{why}: re-take it"], []
    now, why = _fingerprint(measurement.provenance, "the measurement")
    if now is None:
        return [f"{why} (results from an older perfsuite)"], []
    deciding, informational = differences(then, now, measurement.device_kind)
    old_version = baseline.get("provenance", {}).get("framework_version")
    if old_version and measurement.framework_version and old_version != measurement.framework_version:
        informational.append(f"framework version was {old_version!r}, now {measurement.framework_version!r}")
    return deciding, informational


def _at_price(values: dict[str, float], factor: float) -> dict[str, float]:
    return {k: (v * factor if k in COST_METRICS and isinstance(v, (int, float)) else v) for k, v in values.items()}


def _price_change(baseline: dict, m: Measurement) -> tuple[float, str | None]:
    """(factor that puts today's costs at the baseline's price, a note) when the price per hour changed."""
    old = baseline.get("provenance", {}).get("price_per_hour")
    new = m.price_per_hour
    if not isinstance(old, (int, float)) or not old or not new or old == new:
        return 1.0, None
    cost = m.metrics.get("cost_per_1m_requests")
    at_today = f"; at today's price, cost per 1M requests is ${cost:,.2f}" if cost is not None else ""
    return old / new, (
        f"price per hour changed from ${old:g} to ${new:g} ({m.price_source}): {new / old - 1:+.0%} on every cost "
        f"from the price alone; cost metrics are compared at the baseline's price{at_today}"
    )


def _measurement_error(m: Measurement) -> Judgement | None:
    """The judgement of numbers that are not a measurement of the server, or None."""
    if m.too_many_failed_requests:
        return Judgement(
            Verdict.ERRORS,
            True,
            notes=(
                f"{m.error_count or 'some'} request(s) failed (error rate {m.error_rate:.1%} over every "
                f"repetition, {m.allowed_error_rate:.1%} allowed); first: {list(m.errors[:3])}",
            ),
        )
    if m.client_saturation:
        return Judgement(Verdict.CLIENT_SATURATED, True, notes=(m.client_saturation,))
    if m.above_bound:
        return Judgement(Verdict.ABOVE_BOUND, True, notes=(m.above_bound,))
    return None


def judge(
    m: Measurement,
    baseline: dict | None,
    thresholds: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
    updating: bool = False,
    baseline_problem: str | None = None,
) -> Judgement:
    """The verdict on `m`, whether it fails its test, and the rows and notes that explain it.

    In order: a measurement error (failed requests beyond what the test allows, a saturated client,
    numbers above the physical bound) fails whatever else holds; a baseline that is itself above the
    bound (`baseline_problem`) is refused, also when updating; the test's thresholds are always
    checked, so a breach fails even with `updating` (--perf-update-baselines), which waives only the
    comparison with the baseline that is being replaced. A baseline taken on other hardware (its
    deciding fingerprint fields differ, or it has none) is never compared: `other-hardware`, like no
    baseline. `strict` fails a test with no comparable baseline.
    """
    if error := _measurement_error(m):
        return error
    if baseline_problem:  # never replaced unseen either: a person looks at a baseline beyond physics
        return Judgement(Verdict.BASELINE_REFUSED, True, notes=(baseline_problem,))
    limits = check_thresholds(dict(thresholds or {}), m.metrics)
    rows = list(limits)
    notes: list[str] = []
    fails = False
    if m.ungated:
        verdict = Verdict.REPORTED
        notes.append(f"not gated: {m.ungated}")
    elif baseline is None:
        verdict, fails = Verdict.NO_BASELINE, strict and not updating
    elif (hardware := hardware_differences(baseline, m))[0]:
        verdict, fails = Verdict.OTHER_HARDWARE, strict and not updating
        notes.append("baseline taken on other hardware, not compared: " + "; ".join(hardware[0]))
        notes += [f"also: {d}" for d in hardware[1]]
    elif mismatch := config_mismatch(baseline, m):
        verdict, fails = Verdict.STALE_BASELINE, strict and not updating
        notes.append(f"baseline not comparable: {mismatch}")
    else:
        notes += [f"hardware: {d} (does not decide)" for d in hardware[1]]
        factor, price_note = _price_change(baseline, m)
        if price_note:
            notes.append(price_note)
        now = _at_price(m.metrics, factor)
        reps = [_at_price(r, factor) for r in m.repetitions]
        compared = compare(baseline, now, repetitions=reps)
        rows = compared + limits
        verdict = Verdict.PASS
        if any(r.verdict == "inconclusive" for r in compared):
            verdict = Verdict.INCONCLUSIVE
            notes += [f"{r.metric} inconclusive: {r.note}" for r in compared if r.verdict == "inconclusive"]
        elif any(r.verdict == "improvement" for r in compared) and not any(r.fails for r in compared):
            verdict = Verdict.IMPROVED
            notes.append("better beyond tolerance: `perfsuite approve <results file>` makes it the baseline")
        if any(r.fails for r in compared):
            verdict = Verdict.REGRESSION
            fails = not updating
            if updating:
                notes.append("worse than the baseline it replaces (--perf-update-baselines)")
    if any(r.fails for r in limits):
        verdict = verdict if verdict is Verdict.REGRESSION else Verdict.BREACH
        return Judgement(verdict, True, tuple(rows), tuple(notes))
    if strict and fails and verdict in (Verdict.NO_BASELINE, Verdict.STALE_BASELINE, Verdict.OTHER_HARDWARE):
        notes.append("--perf-strict: a perf test needs a comparable baseline")
    return Judgement(verdict, fails, tuple(rows), tuple(notes))
