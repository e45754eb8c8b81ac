"""Tables for people: the verdict of every measurement and the selection matrix (tabulate)."""

from __future__ import annotations

import math

from tabulate import tabulate

from perfsuite.verdict import MEASUREMENT_ERRORS

__all__ = [
    "trustworthy",
    "selection_matrix",
    "matrix_table",
    "verdict_table",
    "comparison_table",
    "metrics_table",
    "claims_table",
    "markdown_report",
]

# The matrix takes each column from the workload that measures it best: capacity and cost from the
# fixed-length throughput workload, latency from the chat workload. When a framework was not
# measured on that workload, the column falls back to any workload it was measured on.
CAPACITY_WORKLOAD = "throughput"
LATENCY_WORKLOAD = "chat"


def _best(ms: list[dict], workload: str) -> dict | None:
    # A load sweep's measurement is at the rate the sweep chose, not the workload's standard load: it
    # gives the "at SLO" figures of the HTML report, and these columns only when nothing else was measured.
    ms = [m for m in ms if "sweep" not in m] or ms
    # Likewise a closed loop of users is the workload's standard load; open (Poisson) arrivals above
    # capacity measure queueing, so their latency stands in only when no closed loop was measured.
    ms = [m for m in ms if m.get("load", {}).get("arrival", "closed") == "closed"] or ms
    chosen = [m for m in ms if m["workload"]["name"] == workload] or ms
    return max(chosen, key=lambda m: m["metrics"].get("request_throughput", 0)) if chosen else None


def trustworthy(m: dict) -> bool:
    """False for a measurement error (failed requests, above the physical bound, a saturated client):
    its numbers reach no matrix, report figure or calculator."""
    return m.get("verdict") not in {v.value for v in MEASUREMENT_ERRORS}


def selection_matrix(measurements: list[dict], unmeasured: dict[str, str] | None = None) -> list[dict]:
    """One row per (framework, hardware profile) measured, and the uses it is best at among them;
    then one row per framework in `unmeasured` ({name: why it was not measured here}). Measurement
    errors are left out."""
    measurements = [m for m in measurements if trustworthy(m)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for m in measurements:
        if m.get("metrics", {}).get("requests_ok"):
            groups.setdefault((m["framework"], m["profile"]), []).append(m)
    rows = []
    for (framework, profile), ms in sorted(groups.items()):
        cap, lat = _best(ms, CAPACITY_WORKLOAD), _best(ms, LATENCY_WORKLOAD)
        mem = [m["metrics"].get("memory_utilization") for m in ms if m["metrics"].get("memory_utilization")]
        rows.append(
            {
                "framework": framework,
                "profile": profile,
                "request_throughput": cap["metrics"].get("request_throughput"),
                "output_throughput": cap["metrics"].get("output_throughput"),
                "capacity_workload": cap["workload"]["name"],
                "ttft_p50_ms": lat["metrics"].get("ttft_p50_ms"),
                "ttft_p99_ms": lat["metrics"].get("ttft_p99_ms"),
                "latency_workload": lat["workload"]["name"],
                "memory_utilization": max(mem) if mem else None,
                "cost_per_1m_requests": cap["metrics"].get("cost_per_1m_requests"),
                "cost_per_1m_output_tokens": cap["metrics"].get("cost_per_1m_output_tokens"),
                "efficiency": cap["metrics"].get("efficiency"),
                "best_for": [],
                "uses": sorted({m["workload"]["name"] + ":" + m["workload"].get("use", "") for m in ms}),
            }
        )
    # Best for: per workload, the framework with the highest goodput (requests/s meeting the SLO).
    by_workload: dict[str, list[dict]] = {}
    for m in measurements:
        if m.get("metrics", {}).get("requests_ok") and "sweep" not in m:
            by_workload.setdefault(m["workload"]["name"], []).append(m)
    for workload, ms in sorted(by_workload.items()):
        if len({m["framework"] for m in ms}) < 2:
            continue  # a use is only "best" against another framework measured on it
        top = max(ms, key=lambda m: m["metrics"].get("goodput", m["metrics"].get("request_throughput", 0)))
        for row in rows:
            if row["framework"] == top["framework"] and row["profile"] == top["profile"]:
                row["best_for"].append(top["workload"].get("use", workload))
    for row in rows:
        del row["uses"]
    measured = {r["framework"] for r in rows}
    profile = rows[0]["profile"] if rows else None
    for name, why in sorted((unmeasured or {}).items()):
        if name not in measured:
            empty = dict.fromkeys(MATRIX_NUMBERS)
            rows.append({"framework": name, "profile": profile, **empty, "best_for": [], "not_measured": why})
    return rows


MATRIX_NUMBERS = (
    "request_throughput",
    "output_throughput",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "memory_utilization",
    "cost_per_1m_requests",
    "cost_per_1m_output_tokens",
    "efficiency",
)


def _fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    return str(v)


def _pct(v) -> str:
    """Efficiency (measured / physical bound) as a percentage; '-' when there is no bound."""
    return "-" if v is None or not math.isfinite(v) else f"{v:.1%}"


def matrix_table(rows: list[dict], fmt: str = "simple") -> str:
    headers = [
        "framework",
        "gpu",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "mem util",
        "$/1M req",
        "$/1M out tok",
        "eff.",
        "best for",
    ]
    body = [
        [
            r["framework"],
            r["profile"],
            _fmt(r["request_throughput"]),
            _fmt(r["output_throughput"], 0),
            _fmt(r["ttft_p50_ms"], 1),
            _fmt(r["ttft_p99_ms"], 1),
            "-" if r["memory_utilization"] is None else f"{r['memory_utilization']:.1%}",
            _fmt(r["cost_per_1m_requests"]),
            _fmt(r["cost_per_1m_output_tokens"], 4),
            _pct(r.get("efficiency")),
            f"not measured: {r['not_measured']}"
            if r.get("not_measured")
            else "; ".join(r["best_for"]) or ("-" if len(rows) > 1 else "(needs 2+ frameworks)"),
        ]
        for r in rows
    ]
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def verdict_table(measurements: list[dict], fmt: str = "simple") -> str:
    headers = ["test", "verdict", "req/s", "out tok/s", "eff.", "TTFT p50 ms", "TPOT p50 ms", "errors", "note"]
    body = []
    for m in measurements:
        x = m["metrics"]
        body.append(
            [
                m["test_id"].split("::")[-1],
                m.get("verdict", "-"),
                _fmt(x.get("request_throughput")),
                _fmt(x.get("output_throughput"), 0),
                _pct(x.get("efficiency")),
                _fmt(x.get("ttft_p50_ms"), 1),
                _fmt(x.get("tpot_p50_ms"), 2),
                _fmt(x.get("error_rate")),
                "; ".join(m.get("notes", []))[:80],
            ]
        )
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def _interval(r: dict) -> str:
    low, high = r.get("low_pct"), r.get("high_pct")
    if low is None or high is None:
        return "-"
    return f"{low:+.1f}% to {high:+.1f}%"


def comparison_table(rows: list[dict], fmt: str = "simple", sides: tuple[str, str] = ("baseline", "now")) -> str:
    """Baseline, now, change with its interval, and verdict for every compared metric; below the table,
    why each regression, improvement or inconclusive verdict was given (and what would settle it)."""
    body = []
    for r in rows:
        change = "-" if r["change_pct"] is None else f"{r['change_pct']:+.1f}%"
        body.append(
            [
                r["metric"],
                _fmt(r["baseline"], 3),
                _fmt(r["now"], 3),
                change,
                _interval(r),
                r["tolerance"],
                r["verdict"].upper() if r["verdict"] in ("regression", "missing", "breach") else r["verdict"],
            ]
        )
    table = tabulate(
        body,
        headers=["metric", *sides, "change", "interval (90%)", "tolerance", "verdict"],
        tablefmt=fmt,
        disable_numparse=True,
    )
    notes = [f"{r['metric']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join([table, *notes])


def metrics_table(metrics: dict[str, float], fmt: str = "simple") -> str:
    keys = [
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "goodput",
        "error_rate",
        *[f"{m}_p{p}_ms" for m in ("ttft", "tpot", "itl", "e2e") for p in (50, 90, 99)],
        "memory_utilization",
        "memory_used_peak_gb",
        "kv_cache_usage_peak",
        "queue_depth_peak",
        "prefix_cache_hit_rate",
        "cost_per_1m_requests",
        "cost_per_1m_output_tokens",
        "efficiency",
    ]
    body = [[k, _fmt(metrics[k], 4)] for k in keys if k in metrics]
    return tabulate(body, headers=["metric", "value"], tablefmt=fmt, disable_numparse=True)


def claims_table(claims: list[dict], fmt: str = "simple") -> str:
    """The source article's claims, each with what it came to on this hardware and the numbers."""
    body = [[c["claim"], c["verdict"], c["evidence"]] for c in claims]
    return tabulate(body, headers=["claim", "verdict", "evidence"], tablefmt=fmt, disable_numparse=True)


def markdown_report(measurements: list[dict], matrix: list[dict], claims: list[dict] = ()) -> str:
    """The summary for a CI job page ($GITHUB_STEP_SUMMARY) or a PR comment: verdicts, matrix, claims."""
    failed = [m for m in measurements if m.get("failed")]
    profiles = ", ".join(sorted({m["profile"] for m in measurements})) or "-"
    head = f"## perfsuite on {profiles}: " + (
        f"{len(failed)} of {len(measurements)} measurements failed"
        if failed
        else f"{len(measurements)} measurements, none failed"
    )
    parts = [
        head,
        "### Verdicts",
        verdict_table(measurements, fmt="github"),
        "### Selection matrix",
        matrix_table(matrix, fmt="github"),
    ]
    if claims:
        parts += ["### The source article's claims", claims_table(list(claims), fmt="github")]
    return "\n\n".join(parts) + "\n"
