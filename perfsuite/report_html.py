"""The report people open: a Markdown summary (CI job summary, PR comment) and one self-contained HTML
file with the selection matrix, plots and the interactive cost calculator.

The HTML needs no network: the page is perfsuite/data/report.html with report.css and report.js inlined
and the data as a JSON script element; the plots are SVG drawn by report.js. The calculator in report.js
is perfsuite.calculator's arithmetic, operation by operation (tests/browser checks they agree).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from importlib import resources
from pathlib import Path

from perfsuite import jsonfile
from perfsuite.baseline import history_dir
from perfsuite.calculator import Catalogs, load_catalogs
from perfsuite.errors import PerfsuiteError
from perfsuite.report import markdown_report, selection_matrix, trustworthy
from perfsuite.slo import SLO, sustainable_point

__all__ = ["report_data", "render_html", "write_reports"]

# What the trend plot draws from each baseline in baselines/<profile>/ and its history.
TREND_METRICS = ("request_throughput", "ttft_p50_ms", "cost_per_1m_requests")


def _trend(baseline_dir: Path, m: dict, where: str = "") -> list[dict]:
    """One point per stored baseline of measurement `m`'s test (the history, then the current one),
    oldest first, from the folder of the machine it was measured on (the older flat folder without a
    fingerprint). A path that would lead outside `baseline_dir` is a BaselineError naming `where`."""
    from perfsuite.baseline import baseline_path, measurement_path
    from perfsuite.measurement import Measurement

    current = baseline_path(baseline_dir, m["profile"], m["test_id"], where=where)
    if (m.get("provenance") or {}).get("hardware") is not None:
        try:
            measured = Measurement.from_dict(m)
        except (ValueError, TypeError):
            measured = None
        if measured is not None:
            current = measurement_path(baseline_dir, measured, where=where)
    files = sorted(history_dir(current).glob("*.json")) if history_dir(current).is_dir() else []
    if current.exists():
        files.append(current)
    points = []
    for f in files:
        try:
            doc = jsonfile.load(f, "baseline")
        except PerfsuiteError:
            continue  # the report is for reading; the gate itself reports a broken baseline
        prov = doc.get("provenance", {})
        values = {k: doc.get("metrics", {}).get(k, {}).get("value") for k in TREND_METRICS}
        points.append(
            {"date": prov.get("date"), "commit": str(prov.get("git_commit", ""))[:8], "current": f == current, **values}
        )
    return sorted(points, key=lambda p: (p["current"], str(p["date"])))


def report_data(results: dict, catalogs: Catalogs | None = None, baseline_dir: str | os.PathLike | None = None) -> dict:
    """The compact data the page draws from: matrix, verdicts, sweeps, distributions, memory series,
    baseline trends and the catalogs."""
    catalogs = catalogs or load_catalogs()
    ms = results.get("measurements", [])
    measurements = []
    for m in ms:
        # A measurement error's numbers are not drawn: its verdict is listed, nothing else.
        x = m.get("metrics", {}) if trustworthy(m) else {}
        measurements.append(
            {
                "test_id": m["test_id"],
                "framework": m.get("framework", "?"),
                "profile": m["profile"],
                "workload": m.get("workload", {}).get("name", "?"),
                "verdict": m.get("verdict", "-"),
                "metrics": {
                    k: x.get(k)
                    for k in (
                        "request_throughput",
                        "output_throughput",
                        "ttft_p50_ms",
                        "ttft_p99_ms",
                        "tpot_p50_ms",
                        "itl_p50_ms",
                        "error_rate",
                        "memory_used_peak_gb",
                        "cost_per_1m_requests",
                    )
                },
                "distributions": m.get("distributions", {}) if trustworthy(m) else {},
                "memory_series": m.get("memory_series", []) if trustworthy(m) else [],
            }
        )
    sweeps = [
        {
            "test_id": m["test_id"],
            "framework": m.get("framework", "?"),
            "profile": m["profile"],
            "workload": m.get("workload", {}).get("name", "?"),
            "slo": m["sweep"]["slo"],
            "points": m["sweep"]["points"],
            "rate": m["sweep"].get("rate"),
        }
        for m in ms
        if (m.get("sweep") or {}).get("points") and trustworthy(m)
    ]
    # Recomputed: a results file's own matrix may predate this version.
    matrix = selection_matrix(ms, results.get("unmeasured"))
    peak = {}
    for row in matrix:
        peak.setdefault(row["framework"], {})[row["profile"]] = row["request_throughput"]
    trends = {}
    if baseline_dir is not None:
        for i, m in enumerate(ms):
            points = _trend(Path(baseline_dir), m, where=f"measurements[{i}]")
            if points:
                trends[f"{m['test_id']} ({m['profile']})"] = points
    return jsonfile.finite(
        {
            "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "profile": results.get("profile"),
            "model": next((m.get("model") for m in ms if m.get("model")), None),
            "matrix": matrix,
            "claims": results.get("claims", []),
            "measurements": measurements,
            "sweeps": sweeps,
            "peak_rps": peak,
            "trends": trends,
            "catalogs": catalogs.to_dict(),
            "default_slo": sweeps[0]["slo"] if sweeps else {"ttft_ms": 1000.0, "tpot_ms": 100.0, "percentile": 90},
        }
    )


def _asset(name: str) -> str:
    return resources.files("perfsuite").joinpath(f"data/{name}").read_text()


# Inside a <script> element, `</script`, and `<!--` followed by `<script`, change where the element ends:
# the data holds no <, > or & at all (JSON.parse reads the escapes back as the same characters).
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def render_html(data: dict, title: str = "perfsuite report") -> str:
    """The page: template + inlined CSS, JS and data (a JSON script element, <, > and & escaped)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_SAFE)
    values = {"TITLE": html.escape(title), "CSS": _asset("report.css"), "DATA": payload, "JS": _asset("report.js")}
    # One pass, so a placeholder-like string inside the data is never substituted.
    return re.sub(r"\{\{(TITLE|CSS|DATA|JS)\}\}", lambda m: values[m.group(1)], _asset("report.html"))


def _capacity_rows(data: dict) -> list[dict]:
    rows = []
    for s in data["sweeps"]:
        point = sustainable_point(s["points"], SLO(**s["slo"]))
        rows.append({**s, "point": point})
    return rows


def write_reports(
    results: dict,
    out_dir: str | os.PathLike,
    *,
    prices: str | os.PathLike | None = None,
    baseline_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write perf-report.md and perf-report.html into `out_dir`; returns their paths."""
    catalogs = load_catalogs(prices)
    data = report_data(results, catalogs, baseline_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "perf-report.md", out / "perf-report.html"
    profile = data["profile"] or "?"
    md = markdown_report(results.get("measurements", []), data["matrix"], results.get("claims", []))
    md += _capacity_markdown(_capacity_rows(data), catalogs)
    md += f"\nThe full report, with plots and the cost calculator: `{html_path.name}` (open it in a browser).\n"
    for path, text in ((md_path, md), (html_path, render_html(data, f"perfsuite report: {profile}"))):
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return md_path, html_path


def _capacity_markdown(rows: list[dict], catalogs: Catalogs) -> str:
    """The capacity each sweep found under its SLO, and what a request costs at that rate."""
    if not rows:
        return ""
    from tabulate import tabulate

    from perfsuite.cost import cost_per_million

    body = []
    for r in rows:
        p, slo = r["point"], r["slo"]
        pct = slo["percentile"]
        price = catalogs.hardware.get(r["profile"], {}).get("price_per_hour")
        body.append(
            [
                r["framework"],
                r["profile"],
                f"TTFT p{pct} <= {slo['ttft_ms']:g} ms, TPOT p{pct} <= {slo['tpot_ms']:g} ms",
                ", ".join(f"{x['rate']:g}" for x in r["points"]),
                "-" if p is None else f"{p['rate']:g}",
                "-" if p is None else f"{p['request_throughput']:.2f}",
                "-" if p is None or price is None else f"${cost_per_million(price, p['request_throughput']):,.2f}",
            ]
        )
    table = tabulate(
        body,
        headers=["framework", "gpu", "SLO", "rates swept (req/s)", "max rate meeting SLO", "req/s there", "$/1M req"],
        tablefmt="github",
        disable_numparse=True,
    )
    return "\n### Capacity under the SLO (load sweep)\n\n" + table + "\n"
