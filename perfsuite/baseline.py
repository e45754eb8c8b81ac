"""Baselines on disk and the comparison that gates a build.

One JSON file per (hardware profile, machine, test id) under <baseline dir>/<profile>/<machine>/, where
<machine> is perfsuite.fingerprint.machine_slug() of the machine that took it; files directly under
<profile>/ (from before machine folders) are still read. Files are validated
against a JSON schema on read and written atomically (temporary file, then rename); only
`--perf-update-baselines` and `perfsuite approve` write them, both through promote(), which first
files the baseline being replaced under history/ so that trends can be drawn.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema

from perfsuite import jsonfile
from perfsuite.decision import decide
from perfsuite.errors import BaselineError
from perfsuite.fingerprint import MACHINE_SLUG, Fingerprint, machine_slug
from perfsuite.fingerprint import SCHEMA as FINGERPRINT_SCHEMA
from perfsuite.metrics import METRICS
from perfsuite.verdict import Row

if TYPE_CHECKING:
    from perfsuite.measurement import Measurement

__all__ = [
    "Row",
    "baseline_path",
    "measurement_path",
    "load_baseline",
    "write_baseline",
    "promote",
    "successor",
    "history_dir",
    "make_baseline",
    "compare",
    "check_thresholds",
    "parse_threshold",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1
_NUMBER_LIST = {"type": "array", "items": {"type": "number"}}
SCHEMA = {
    "type": "object",
    "required": ["schema", "test_id", "profile", "metrics", "provenance"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "test_id": {"type": "string"},
        "profile": {"type": "string"},
        "metrics": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["value", "better", "tolerance", "gated"],
                "properties": {
                    "value": {"type": "number"},
                    "better": {"enum": ["higher", "lower"]},
                    "tolerance": {"type": "number", "minimum": 0},
                    "gated": {"type": "boolean"},
                    "repetitions": _NUMBER_LIST,
                    "cv": {"type": "number", "minimum": 0},
                    "unit": {"type": "string"},
                },
            },
        },
        "provenance": {"type": "object", "properties": {"hardware": FINGERPRINT_SCHEMA}},
    },
}

# A rerun's spread can be larger than a few repetitions show: tolerances are at least this many
# coefficients of variation of the repetitions, and never tighter than the metric's default.
CV_FACTOR = 3.0
MAX_TOLERANCE = 0.5


def _safe_name(test_id: str) -> str:
    name = test_id.replace("/", ".").replace("::", "--")
    return re.sub(r"[^A-Za-z0-9._\-\[\],=+]", "_", name)


# A profile name from a user's own catalog: lower case, no path separator, not starting with a dot.
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _known_profiles() -> set[str]:
    from perfsuite.hardware import load_catalog

    profiles, aliases = load_catalog()
    return {*profiles, *aliases}


def baseline_path(
    baseline_dir: str | os.PathLike, profile: str, test_id: str, where: str = "", machine: str | None = None
) -> Path:
    """<baseline_dir>/<profile>/<machine>/<test id made a file name>.json (without `machine`, the older
    <baseline_dir>/<profile>/<file>.json), never outside `baseline_dir`.

    `profile`, `test_id` and the fingerprint `machine` is named from may come from a results file: a
    profile must be a catalog name (or alias) or look like one (lower case letters, digits, '.', '_',
    '-'; not starting with a dot), a machine must look like one too and not be 'history', and the path
    must stay inside `baseline_dir`. Otherwise a BaselineError names the field, as `where` + ".profile"
    (e.g. where="measurements[3]").
    """
    field = f"{where}." if where else ""
    if not isinstance(profile, str) or not (profile in _known_profiles() or _PROFILE_NAME.fullmatch(profile)):
        raise BaselineError(
            f"{field}profile {profile!r}: not a hardware profile name (lower case letters, digits, '.', '_', '-'); "
            "refused: it would choose a path outside the baseline folder"
        )
    if not isinstance(test_id, str) or not test_id:
        raise BaselineError(f"{field}test_id {test_id!r}: not a test id")
    if machine is not None and (
        not isinstance(machine, str) or not MACHINE_SLUG.fullmatch(machine) or machine == "history"
    ):
        raise BaselineError(
            f"{field}provenance.hardware: machine folder {machine!r} is not a machine name (lower case letters, "
            "digits, '.', '_', '-'; not 'history'); refused: it would choose a path outside the baseline folder"
        )
    root = Path(baseline_dir)
    path = root / profile / (machine or "") / f"{_safe_name(test_id)}.json"
    inside = Path(os.path.abspath(root)).resolve()
    if not Path(os.path.abspath(path)).resolve().is_relative_to(inside):
        raise BaselineError(f"{field}profile {profile!r}, {field}test_id {test_id!r}: the path leaves {root}; refused")
    return path


def measurement_path(baseline_dir: str | os.PathLike, m: Measurement, where: str = "") -> Path:
    """Where `m` is written as a baseline: its profile's folder for the machine it was measured on.
    BaselineError when it carries no readable hardware fingerprint (measured by an older perfsuite)."""
    field = f"{where}: " if where else ""
    raw = m.provenance.get("hardware")
    if raw is None:
        raise BaselineError(f"{field}{m.test_id}: no hardware fingerprint (measured by an older perfsuite); re-run it")
    try:
        fp = Fingerprint.from_dict(raw)
    except ValueError as exc:
        raise BaselineError(f"{field}{m.test_id}: {exc}") from None
    return baseline_path(baseline_dir, m.profile, m.test_id, where, machine=machine_slug(fp, m.device_kind))


def load_baseline(path: str | os.PathLike) -> dict | None:
    """The baseline at `path`, None if there is none; BaselineError naming the file and field if bad
    (NaN and infinities included: they are not JSON)."""
    path = Path(path)
    if not path.exists():
        return None
    hint = "fix it, or delete it and rerun with --perf-update-baselines"
    data = jsonfile.load(path, "baseline", BaselineError, hint=hint)
    try:
        jsonschema.validate(data, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise BaselineError(f"{path}: field {where}: {exc.message}; {hint}") from exc
    return data


def write_baseline(path: str | os.PathLike, data: dict) -> Path:
    """Validate and write `data` to `path` atomically: a reader sees the old file or the new, never half.
    Strict JSON: a non-finite number is null, so one where the schema wants a number is refused."""
    path = Path(path)
    try:
        jsonschema.validate(jsonfile.finite(data), SCHEMA)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise BaselineError(f"{path}: not written, field {where}: {exc.message}") from exc
    return jsonfile.write_atomic(path, data, sort_keys=True)


def history_dir(path: str | os.PathLike) -> Path:
    """Where the baselines that `path` replaced are kept: history/<file stem>/ beside the file
    (<profile>/<machine>/history/<file stem>/, or <profile>/history/<file stem>/ for an older flat one)."""
    path = Path(path)
    return path.parent / "history" / path.stem


def successor(measurement: Measurement, old: dict | None, min_tolerance: dict[str, float] | None = None) -> dict:
    """The baseline that replaces `old` with `measurement`: it keeps old's choice of gated metrics."""
    gated = {name for name, m in (old or {}).get("metrics", {}).items() if m["gated"]} or None
    return make_baseline(measurement, gated, min_tolerance)


def promote(path: str | os.PathLike, doc: dict, old: dict | None) -> Path:
    """Make `doc` the baseline at `path`; `old`, the one it replaces (as read from `path`), moves to
    history_dir(path), named by its date and commit."""
    if old is not None:
        prov = old.get("provenance", {})
        stamp = re.sub(r"[^0-9A-Za-z]", "", str(prov.get("date", "undated")))
        commit = re.sub(r"[^0-9A-Za-z]", "", str(prov.get("git_commit", "unknown")))[:12]
        target = history_dir(path) / f"{stamp}-{commit}.json"
        n = 1
        while target.exists():
            n += 1
            target = history_dir(path) / f"{stamp}-{commit}-{n}.json"
        write_baseline(target, old)
    return write_baseline(path, doc)


def _cv(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.stdev(values) / abs(mean) if mean else 0.0


def _round_up(x: float, digits: int = 4) -> float:
    """x rounded to `digits` decimals, not below x beyond float noise (a stored tolerance is never
    tighter than the policy: round(0.26145, 4) would be)."""
    r = round(x, digits)
    return r if r >= x or math.isclose(r, x, rel_tol=1e-9) else round(r + 10.0**-digits, digits)


def make_baseline(
    measurement: Measurement, gated: set[str] | None = None, min_tolerance: dict[str, float] | None = None
) -> dict:
    """A baseline document from one measurement (as stored in the results JSON).

    `gated` keeps an existing baseline's choice of gated metrics; `min_tolerance` is the hardware
    profile's noise floor by metric unit (e.g. {"ms": 0.5}: no latency gated tighter than 50%).
    The tolerance is the largest of the metric's default and CV_FACTOR x the repetitions' CV, capped
    at MAX_TOLERANCE, and of the profile's floor (which may exceed the cap).
    """
    metrics = {}
    on_cpu = measurement.device_kind == "cpu"
    reps = measurement.repetitions
    for name, value in measurement.metrics.items():
        spec = METRICS.get(name)
        if spec is None or value is None or not math.isfinite(value):
            continue
        series = [r[name] for r in reps if name in r and r[name] is not None and math.isfinite(r[name])]
        cv = _cv(series)
        metrics[name] = {
            "value": value,
            "better": spec.better,
            "unit": spec.unit,
            "gated": (name in gated) if gated is not None else spec.gated and (spec.gated_on_cpu or not on_cpu),
            # The profile's floor may exceed the cap: it is measured (docs/regression-gate.md).
            "tolerance": _round_up(
                max(min(MAX_TOLERANCE, max(spec.tolerance, CV_FACTOR * cv)), (min_tolerance or {}).get(spec.unit, 0.0))
            ),
            "cv": round(cv, 4),
            "repetitions": series,
        }
    return {
        "schema": SCHEMA_VERSION,
        "test_id": measurement.test_id,
        "profile": measurement.profile,
        "metrics": metrics,
        "provenance": measurement.provenance,
    }


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _change_pct(base: float, now: float) -> float | None:
    if base == 0:
        return None if now != 0 else 0.0
    return (now - base) / abs(base) * 100.0


# Relative slack on the tolerance edge: a change of exactly the tolerance (e.g. 100 -> 115 at 15%) is
# within it, even where float rounding puts it a hair beyond.
_EDGE = 1e-9


def _beyond_tolerance(base: float, value: float, tol: float, higher: bool) -> tuple[bool, bool]:
    """(worse, better) beyond tolerance, judged on the relative change in the metric's direction."""
    if base == 0:
        gain = value if higher else -value
        return gain < 0, gain > 0
    gain = (value - base) / abs(base)
    if not higher:
        gain = -gain
    return gain < -tol - _EDGE, gain > tol + _EDGE


def _around(series: list, value: float) -> list[float]:
    """The repetitions `series` moved so that their median is `value`, the figure that was stored or
    reported (a person may have edited a baseline's value); just [value] without repetitions."""
    finite = [x for x in series if _finite(x)]
    med = statistics.median(finite) if finite else 0.0
    if med == 0:
        return [value]
    return [x * value / med for x in finite]


def compare(
    baseline: dict, now: dict[str, float], only_gated: bool = False, repetitions: list[dict] | None = None
) -> list[Row]:
    """Rows comparing `now` with every metric of `baseline`, in each metric's own direction.

    Each metric is decided by perfsuite.decision from the baseline's recorded repetitions and now's
    (`repetitions`, the measurement's): a gated metric whose whole interval is worse than its
    tolerance is a regression; one whose interval straddles the tolerance is inconclusive (reported,
    not failed). Missing (or not finite) now, a gated metric is 'missing' and fails. Ungated metrics
    are shown for information. Without repetitions the rule is the plain threshold on the change.
    """
    rows = []
    for name, b in baseline["metrics"].items():
        if only_gated and not b["gated"]:
            continue
        base, tol, higher = b["value"], b["tolerance"], b["better"] == "higher"
        value = now.get(name)
        if not _finite(value):
            rows.append(Row(name, base, None, None, f"{tol:.0%}", "missing" if b["gated"] else "info"))
            continue
        change = _change_pct(base, value)
        if base == 0:  # no relative change: any step the wrong way is worse
            worse, better = _beyond_tolerance(base, value, tol, higher)
            verdict, low, high, note = (
                "regression" if worse else "improvement" if better else "unchanged",
                None,
                None,
                "",
            )
        else:
            now_reps = [r.get(name) for r in repetitions or []]
            d = decide(_around(b.get("repetitions", []), base), _around(now_reps, value), b["better"], tol)
            verdict, low, high, note = d.verdict, d.low * 100, d.high * 100, d.reason
            if verdict == "unchanged":
                note = ""
        if not b["gated"]:
            verdict, note = "info", ""
        rows.append(Row(name, base, value, change, f"{tol:.0%}", verdict, low, high, note))
    for name in sorted(set(now) - set(baseline["metrics"])):
        if name in METRICS and METRICS[name].gated and _finite(now[name]):
            rows.append(Row(name, None, now[name], None, "-", "new"))
    order = {name: i for i, name in enumerate(METRICS)}
    return sorted(rows, key=lambda r: (r.verdict == "info", order.get(r.metric, len(order)), r.metric))


_THRESHOLD = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


def parse_threshold(text: str) -> tuple[str, float]:
    """'>= 0.8' -> ('>=', 0.8)."""
    m = _THRESHOLD.match(str(text))
    if not m:
        raise BaselineError(f"threshold {text!r}: write it as '<= number' or '>= number' (also < and >)")
    try:
        return m.group(1), float(m.group(2))
    except ValueError:
        raise BaselineError(f"threshold {text!r}: {m.group(2)!r} is not a number") from None


def check_thresholds(thresholds: dict[str, str], now: dict[str, float]) -> list[Row]:
    """Absolute limits declared by a test, e.g. {"cost_per_1m_requests": "<= 10"}."""
    rows = []
    for name, text in thresholds.items():
        op, limit = parse_threshold(text)
        value = now.get(name)
        if not _finite(value):
            rows.append(Row(name, None, None, None, f"{op} {limit:g}", "missing"))
            continue
        ok = {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]
        rows.append(Row(name, None, value, None, f"{op} {limit:g}", "ok" if ok else "breach"))
    return rows
