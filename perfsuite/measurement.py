"""The record of one measured run, from the runner to results files, baselines and reports.

A `Measurement` is built once, whole, by perfsuite.recorder; later stages make a new one with
`dataclasses.replace` (efficiency against the bound, the judgement) rather than change it. `to_dict()`
and `from_dict()` are the one place it meets JSON: results files written before this type existed
(free-text verdicts such as "pass -> baseline written" or "no baseline (strict)") still load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from perfsuite.roofline import Bound, check_within_bound
from perfsuite.verdict import MEASUREMENT_ERRORS, Judgement, Row, Verdict, parse_verdict

__all__ = ["Measurement"]


@dataclass(frozen=True)
class Measurement:
    """One measured run of a test: what was measured, the numbers, and (once judged) the verdict."""

    # What was measured, on what, and where the numbers came from.
    test_id: str
    framework: str
    framework_version: str
    model: str
    profile: str
    device_kind: str
    workload: dict[str, Any]
    load: dict[str, Any]
    engine: dict[str, Any]
    price_per_hour: float
    price_source: str
    provenance: dict[str, Any]
    slo: dict[str, Any] | None = None
    # The numbers: medians over repetitions (error counts summed), and each repetition.
    metrics: dict[str, float] = field(default_factory=dict)
    repetitions: tuple[dict[str, float], ...] = ()
    stopping: dict[str, Any] | None = None  # why no more repetitions ran
    client: tuple[dict[str, Any], ...] = ()  # the load generator's self-check, per repetition
    memory_series: tuple[list[dict[str, float]], ...] = ()
    distributions: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # the first failed requests' errors
    error_count: int = 0
    allowed_error_rate: float = 0.0  # what the test allows; above it the run is an error
    client_saturation: str | None = None  # why the load generator, not the server, set the pace
    roofline: dict[str, Any] | None = None  # the physical bound it was checked against
    above_bound: str | None = None  # the arithmetic, when the numbers beat the physical bound
    sweep: dict[str, Any] | None = None  # a load sweep's points and chosen rate
    breakdown: dict[str, Any] = field(default_factory=dict)  # per stage of a staged load, per turn of sessions
    ungated: str | None = None  # why this kind of measurement is reported, never gated
    notes: tuple[str, ...] = ()
    server_notes: tuple[str, ...] = ()  # settings the framework did not honour, and why
    judgement: Judgement | None = None
    baseline_written: str | None = None  # the baseline file this run wrote

    @property
    def verdict(self) -> Verdict | None:
        return self.judgement.verdict if self.judgement else None

    @property
    def failed(self) -> bool:
        return bool(self.judgement and self.judgement.fails)

    @property
    def trustworthy(self) -> bool:
        """False for a measurement error (failed requests, above the bound, a saturated client): its
        numbers reach no matrix, report figure, calculator or baseline."""
        return self.verdict not in MEASUREMENT_ERRORS

    @property
    def error_rate(self) -> float:
        """Failed requests / requests sent, over every repetition (0 when none was recorded)."""
        return self.metrics.get("error_rate") or 0.0

    @property
    def too_many_failed_requests(self) -> bool:
        """Whether more requests failed than the test allows: any at all, unless it allows a rate. An
        older results file's error_rate may be a median that hides a failed repetition: its count counts."""
        failed = bool(self.error_count) or self.error_rate > 0
        return failed and (not self.allowed_error_rate or self.error_rate > self.allowed_error_rate)

    def why_not_a_baseline(self) -> str | None:
        """Why this measurement must not become a baseline, or None."""
        if self.verdict in MEASUREMENT_ERRORS:
            return f"its verdict is {self.verdict.value!r}"
        if self.too_many_failed_requests:
            return (
                f"the run had failed requests ({self.error_count or 'some'} failed, error rate "
                f"{self.error_rate:.1%}, allowed {self.allowed_error_rate:.1%})"
            )
        if self.ungated:
            return f"it is not gated ({self.ungated})"
        return None

    def against_bound(self, bound: Bound, device: str) -> Measurement:
        """This measurement with its efficiency (measured req/s over `bound`'s), the bound it was checked
        against (computed on `device`), and `above_bound` (the arithmetic) when its numbers beat it."""
        metrics = dict(self.metrics)
        if metrics.get("request_throughput") is not None and bound.requests_per_s > 0:
            metrics["efficiency"] = metrics["request_throughput"] / bound.requests_per_s
        return replace(
            self,
            metrics=metrics,
            roofline={**asdict(bound), "device": device},
            above_bound=check_within_bound(metrics, bound),
        )

    def judged(self, judgement: Judgement) -> Measurement:
        return replace(self, judgement=judgement)

    def with_notes(self, *notes: str) -> Measurement:
        return replace(self, notes=(*self.notes, *notes))

    def to_dict(self) -> dict[str, Any]:
        """The results file's form: the fields, with the judgement flattened into verdict, failed,
        comparison and notes. Non-finite numbers are left to the JSON writer (perfsuite.jsonfile)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("judgement", "notes"):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        j = self.judgement
        out["verdict"] = j.verdict.value if j else None
        out["failed"] = self.failed
        out["comparison"] = [r.as_dict() for r in j.rows] if j else []
        out["notes"] = [*self.notes, *(j.notes if j else ())]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        """A measurement as a results file holds it; ValueError naming the field when it cannot be one."""
        if not isinstance(d, dict):
            raise ValueError(f"expected an object, got {type(d).__name__}")
        for key in ("test_id", "profile", "metrics"):
            if key not in d:
                raise ValueError(f"no field {key!r}")
        if not isinstance(d["metrics"], dict):
            raise ValueError("field 'metrics' is not an object")
        known = {f.name for f in fields(cls)} - {"judgement"}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        prov = d.get("provenance") or {}
        kw.setdefault("framework", prov.get("framework", "unknown"))
        kw.setdefault("framework_version", prov.get("framework_version", ""))
        kw.setdefault("model", prov.get("model", ""))
        kw.setdefault("device_kind", "gpu" if d["profile"] != "cpu" else "cpu")
        for key in ("workload", "load", "engine"):  # an older file may keep them in its provenance only
            kw[key] = kw.get(key) or prov.get(key) or {}
        kw["provenance"] = prov
        kw.setdefault("price_per_hour", 0.0)
        kw.setdefault("price_source", "")
        for key in ("repetitions", "client", "memory_series", "errors", "notes", "server_notes"):
            kw[key] = tuple(kw.get(key) or ())
        kw["distributions"] = kw.get("distributions") or {}
        kw["breakdown"] = kw.get("breakdown") or {}
        if isinstance(kw.get("baseline_written"), bool):
            kw["baseline_written"] = None
        verdict = d.get("verdict")
        if verdict is not None:
            try:
                v = parse_verdict(str(verdict))
            except ValueError:
                raise ValueError(f"field 'verdict': unknown verdict {verdict!r}") from None
            if "-> baseline written" in str(verdict):
                kw.setdefault("baseline_written", "(written by an older perfsuite)")
            rows = tuple(Row.from_dict(r) for r in d.get("comparison") or ())
            kw["judgement"] = Judgement(v, bool(d.get("failed")), rows)
        return cls(**kw)
