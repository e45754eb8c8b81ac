"""What a measurement came to: a `Verdict`, whether it fails the test, and the rows that explain it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

__all__ = ["Verdict", "Row", "Judgement", "MEASUREMENT_ERRORS", "parse_verdict"]


class Verdict(str, Enum):
    """The verdict on one measurement. Its value is the exact string results files record."""

    PASS = "pass"  # compared with its baseline: nothing beyond tolerance
    IMPROVED = "improved"  # better beyond tolerance somewhere, worse nowhere: `perfsuite approve` it
    INCONCLUSIVE = "inconclusive"  # an interval straddles the tolerance: reported, not failed
    REGRESSION = "regression"  # a gated metric worse beyond tolerance, or missing
    BREACH = "breach"  # one of the test's own absolute thresholds missed
    NO_BASELINE = "no baseline"
    STALE_BASELINE = "stale baseline"  # the baseline measured something else (model, workload, load, engine)
    OTHER_HARDWARE = "other-hardware"  # the baseline was taken on other hardware (perfsuite.fingerprint)
    REPORTED = "reported, not gated"  # a kind of measurement that is reported only (a load sweep)
    # perfsuite ab (base against head in one run): a test that could not be paired.
    ONLY_IN_BASE = "only in base"  # removed or deselected in head
    ONLY_IN_HEAD = "only in head"  # new in head: nothing to pair it with
    NOT_PAIRED = "not paired"  # a sweep, an offline run, a claim, or a framework that cannot run here
    # Measurement errors: the numbers are not a measurement of the server, and reach no matrix or report.
    ERRORS = "errors"  # requests failed beyond what the test allows
    ABOVE_BOUND = "above bound"  # faster than the hardware's physical bound
    CLIENT_SATURATED = "client saturated"  # the load generator could not keep up
    BASELINE_REFUSED = "baseline refused"  # the stored baseline is above the physical bound

    def __str__(self) -> str:
        return self.value


# Verdicts whose numbers must not be used: not in the matrix, the report's figures, the calculator,
# nor as a baseline.
MEASUREMENT_ERRORS = frozenset({Verdict.ERRORS, Verdict.ABOVE_BOUND, Verdict.CLIENT_SATURATED})


def parse_verdict(text: str) -> Verdict:
    """A verdict as stored; older results files wrote suffixes ("pass -> baseline written",
    "no baseline (strict)"), which are dropped. ValueError for anything else."""
    head = text.split(" -> ")[0].removesuffix(" (strict)").strip()
    return Verdict(head)


@dataclass(frozen=True)
class Row:
    """One line of the verdict table."""

    metric: str
    baseline: float | None
    now: float | None
    change_pct: float | None
    tolerance: str
    verdict: str  # unchanged, regression, improvement, inconclusive, missing, new, breach, info, ok (threshold met)
    low_pct: float | None = None  # the interval of the change, in percent (perfsuite.decision)
    high_pct: float | None = None
    note: str = ""  # why, for a regression, improvement or inconclusive verdict

    @property
    def fails(self) -> bool:
        return self.verdict in ("regression", "missing", "breach")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Row:
        return cls(
            **{k: d.get(k) for k in ("metric", "baseline", "now", "change_pct", "tolerance", "verdict")},
            low_pct=d.get("low_pct"),
            high_pct=d.get("high_pct"),
            note=d.get("note") or "",
        )


@dataclass(frozen=True)
class Judgement:
    """A measurement's verdict, whether it fails its test, the rows behind it and notes for people."""

    verdict: Verdict
    fails: bool
    rows: tuple[Row, ...] = ()
    notes: tuple[str, ...] = ()
