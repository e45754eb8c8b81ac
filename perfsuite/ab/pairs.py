"""The order of an A/B run's repetitions, and the verdict from its pairs.

Order: ABBA. Pair i gives base and head one repetition each with the same prompt seed; even pairs run
base first, odd pairs head first (A B, B A, A B, ...). A drift that is linear in time (a neighbour
warming up, a thermal slope) then hits both sides equally over every two pairs, and the order is
fixed, so that the same commits give the same schedule. Randomised pairs cancel drift only on average
and need more pairs to; ABBA also switches servers only every other repetition.

Verdict: each gated metric by perfsuite.decision.decide_paired (the median of the pairs' relative
changes, a bootstrap interval over pairs), read against the tolerance with the stored-baseline gate's
rule (regression only when the whole interval is worse than the tolerance). The tolerance is
AB_TOLERANCE by unit: no noise floor for another session is added, because both sides share the
session (docs/regression-gate.md measures the false alarms and detection this gives).
"""

from __future__ import annotations

import math

from perfsuite.baseline import check_thresholds
from perfsuite.decision import decide_paired
from perfsuite.measurement import Measurement
from perfsuite.metrics import METRICS
from perfsuite.verdict import Judgement, Row, Verdict

__all__ = ["abba", "judge_pairs", "AB_TOLERANCE"]

# Relative tolerance by metric unit in `perfsuite ab` (docs/regression-gate.md, "A/B on one machine").
AB_TOLERANCE = {"req/s": 0.05, "tok/s": 0.05, "$": 0.05, "ms": 0.10, "ratio": 0.05}


def abba(pairs: int) -> list[tuple[int, str]]:
    """(pair index, side) in the order they run: base, head, head, base, base, head, ..."""
    order = []
    for i in range(pairs):
        sides = ("base", "head") if i % 2 == 0 else ("head", "base")
        order += [(i, s) for s in sides]
    return order


def _gated(name: str, device_kind: str) -> bool:
    spec = METRICS[name]
    return spec.gated and (spec.gated_on_cpu or device_kind != "cpu")


def _rows(base: Measurement, head: Measurement) -> list[Row]:
    rows = []
    for name, spec in METRICS.items():
        b = [r.get(name) for r in base.repetitions]
        h = [r.get(name) for r in head.repetitions]
        bm, hm = base.metrics.get(name), head.metrics.get(name)
        if not (_finite(bm) and _finite(hm)) or len(b) != len(h):
            continue
        tol = AB_TOLERANCE.get(spec.unit, spec.tolerance)
        gated = _gated(name, head.device_kind)
        change = (hm - bm) / abs(bm) * 100 if bm else None
        try:
            d = decide_paired(b, h, spec.better, tol)
        except ValueError:  # a zero or missing base value: shown, not judged
            rows.append(Row(name, bm, hm, change, f"{tol:.0%}", "info"))
            continue
        verdict = d.verdict if gated else "info"
        note = d.reason if gated and verdict != "unchanged" else ""
        rows.append(Row(name, bm, hm, d.change * 100, f"{tol:.0%}", verdict, d.low * 100, d.high * 100, note))
    return sorted(rows, key=lambda r: r.verdict == "info")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _error(m: Measurement, side: str) -> str | None:
    if m.too_many_failed_requests:
        return (
            f"{side}: {m.error_count or 'some'} request(s) failed (error rate {m.error_rate:.1%}, "
            f"{m.allowed_error_rate:.1%} allowed); first: {list(m.errors[:3])}"
        )
    if m.client_saturation:
        return f"{side}: {m.client_saturation}"
    return None


def judge_pairs(base: Measurement, head: Measurement, thresholds: dict[str, str] | None = None) -> Judgement:
    """The verdict on head against base, both measured in the same pairs (their repetitions line up)."""
    problems = [p for p in (_error(base, "base"), _error(head, "head")) if p]
    if problems:
        return Judgement(Verdict.ERRORS, True, notes=tuple(problems))
    notes = []
    if (base.workload, base.load) != (head.workload, head.load):
        notes.append("the workload or load differs between base and head: that change is part of what is measured")
    if base.engine != head.engine:
        changed = sorted(k for k in head.engine if head.engine.get(k) != base.engine.get(k))
        notes.append(
            "engine settings differ: "
            + ", ".join(f"{k} {base.engine.get(k)!r} -> {head.engine.get(k)!r}" for k in changed)
        )
    if base.framework_version != head.framework_version:
        notes.append(f"framework version: {base.framework_version} -> {head.framework_version}")
    compared = _rows(base, head)
    limits = check_thresholds(dict(thresholds or {}), head.metrics)
    rows = tuple(compared + list(limits))
    fails = False
    verdict = Verdict.PASS
    if any(r.verdict == "inconclusive" for r in compared):
        verdict = Verdict.INCONCLUSIVE
        notes += [f"{r.metric} inconclusive: {r.note}" for r in compared if r.verdict == "inconclusive"]
    elif any(r.verdict == "improvement" for r in compared):
        verdict = Verdict.IMPROVED
    if any(r.fails for r in compared):
        verdict, fails = Verdict.REGRESSION, True
    if any(r.fails for r in limits):
        verdict = verdict if verdict is Verdict.REGRESSION else Verdict.BREACH
        fails = True
    return Judgement(verdict, fails, rows, tuple(notes))
