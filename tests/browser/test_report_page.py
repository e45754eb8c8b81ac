"""The HTML report in a real browser (Debian's chromium driven by Playwright): the calculator on the page
shows what perfsuite.calculator computes, to the cent, for every hardware profile x API model.

Needs /usr/bin/chromium (scripts/setup installs it; $PERFSUITE_CHROMIUM to point elsewhere). Playwright's
own browsers are not used. A screenshot and the page are kept in $PERFSUITE_ARTIFACTS (default: the
test's temporary folder); the path is printed.
"""

import json
import os
import re
from pathlib import Path

import pytest

from perfsuite.calculator import Traffic, calculate, capacity_from_results, load_catalogs
from perfsuite.errors import UsageError
from perfsuite.report_html import write_reports
from perfsuite.slo import SLO

CHROMIUM = Path(os.environ.get("PERFSUITE_CHROMIUM", "/usr/bin/chromium"))
REAL = Path(__file__).parents[1] / "data" / "results-cpu-vllm-real-run.json"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUTS = {
    "tput": "out-tput",
    "replicas": "out-replicas",
    "monthly": "out-monthly",
    "per1m": "out-per1m",
    "per1mtok": "out-per1mtok",
    "fullutil": "out-fullutil",
    "api_monthly": "out-api-monthly",
    "delta": "out-delta",
    "delta_pct": "out-delta-pct",
    "breakeven": "out-breakeven",
    "error": "calc-error",
    "basis": "capacity-basis",
}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: install Debian's chromium (scripts/setup does it)"
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = Path(os.environ.get("PERFSUITE_ARTIFACTS") or tmp_path_factory.mktemp("browser-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def report(artifacts):
    results = json.loads(REAL.read_text())
    _, page = write_reports(results, artifacts, baseline_dir=Path(__file__).parents[2] / "baselines")
    return page, results


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1200, "height": 900},
        )
        yield ctx
        ctx.close()


@pytest.fixture
def page(context, report):
    """The report opened from file://, failing the test on any script error or any network request."""
    pg = context.new_page()
    problems = []
    pg.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    pg.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(f"request: {r.url}"))
    pg.goto(report[0].as_uri())
    pg.wait_for_selector("#out-monthly")
    yield pg
    pg.close()
    assert not problems


def shown(pg) -> dict:
    return pg.evaluate(
        "(ids) => Object.fromEntries(Object.entries(ids).map("
        "([k, id]) => [k, document.getElementById(id).textContent]))",
        OUTPUTS,
    )


def number(text: str) -> float | None:
    """'$1,234.56', '-$5.00', '12.5%', '319,375 requests per month' -> the number; 'never ...' / '-' -> None."""
    m = re.match(r"^([-+]?)\$?([\d,]+(?:\.\d+)?)", text.strip())
    return None if m is None else float(m.group(1) + m.group(2).replace(",", ""))


def inputs(pg) -> dict:
    return pg.evaluate("() => window.perfsuiteCalculator.user_selections")


def expected(pg, results, hw, api, throughput=None):
    """What perfsuite.calculator gives for the page's current inputs."""
    sel, catalogs = inputs(pg), load_catalogs()
    slo = SLO(float(sel["ttft"]), float(sel["tpot"]), int(sel["pct"]))
    if throughput is None:
        measured = {m["profile"] for m in results["measurements"] if m["framework"] == sel["fw"]}
        throughput = capacity_from_results(results, sel["fw"], hw if hw in measured else None, slo)["throughput_rps"]
    t = Traffic.of(
        float(sel["rpm"]) if sel["rpm"] else None,
        float(sel["peak"]) if sel["peak"] else None,
        float(sel["in"]),
        float(sel["out"]),
    )
    r = calculate(t, throughput, catalogs.hardware[hw]["price_per_hour"], catalogs.api_models, int(sel["dev"]))
    return r, throughput


def check(got: dict, r: dict, api: str, throughput: float) -> None:
    s, a = r["self_hosted"], r["api"][api]
    assert number(got["tput"]) == pytest.approx(throughput, abs=5e-5)  # shown to 4 decimals
    assert int(got["replicas"]) == s["replicas"]
    assert number(got["monthly"]) == s["monthly_cost"]
    assert number(got["per1m"]) == s["cost_per_1m_requests"]
    assert number(got["per1mtok"]) == s["cost_per_1m_tokens"]
    assert number(got["fullutil"]) == s["full_utilization_cost_per_1m_requests"]
    assert number(got["api_monthly"]) == a["monthly_cost"]
    assert number(got["delta"]) == a["delta"]
    assert number(got["delta_pct"]) == a["delta_pct"]
    assert number(got["breakeven"]) == a["break_even_requests_per_month"]


def test_every_hardware_and_api_model_matches_python(page, report):
    results, catalogs = report[1], load_catalogs()
    assert len(catalogs.hardware) >= 7 and len(catalogs.api_models) >= 6
    checked = 0
    for hw in catalogs.hardware:
        page.select_option("#hw", hw)
        for api in catalogs.api_models:
            page.select_option("#api", api)
            r, tput = expected(page, results, hw, api)
            check(shown(page), r, api, tput)
            # The comparison table shows every model's numbers at once: the same ones.
            row = page.locator(f'#api-compare tr[data-api="{api}"]')
            assert number(row.locator(".api-monthly").text_content()) == r["api"][api]["monthly_cost"]
            assert number(row.locator(".api-delta").text_content()) == r["api"][api]["delta"]
            checked += 1
    assert checked == len(catalogs.hardware) * len(catalogs.api_models)
    # Hardware the framework was not measured on: the page says whose figure it uses.
    page.select_option("#hw", "a100-80gb")
    assert "vllm was not measured on a100-80gb: using its highest swept rate" in shown(page)["basis"]


def test_the_articles_example_typed_in_and_shared_by_url(page, report, context, artifacts, capsys):
    page.select_option("#hw", "a100-80gb")
    page.select_option("#api", "claude-3-5-sonnet")
    page.fill("#rpm", "")
    page.fill("#peak", "140")
    page.fill("#in", "4096")
    page.fill("#out", "512")
    page.fill("#tput", "140")
    got = shown(page)
    r, _ = expected(page, report[1], "a100-80gb", "claude-3-5-sonnet", throughput=140.0)
    check(got, r, "claude-3-5-sonnet", 140.0)
    assert got["monthly"] == "$2,993.00"
    assert got["per1m"] == "$8.13"  # not the article's $0.82
    state = inputs(page)
    assert widget(page)["calculated_monthly_cost"] == 2993.0
    assert widget(page)["comparison_delta"] == r["api"]["claude-3-5-sonnet"]["delta"]
    shot = artifacts / "report-page.png"
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():  # shown even when the test passes
        print(f"\nscreenshot of the report page: {shot}")
    # The selections live in the address: a second page opened on it shows the same view.
    url = page.url
    assert "#" in url and "hw=a100-80gb" in url and "peak=140" in url
    other = context.new_page()
    other.goto(url)
    other.wait_for_selector("#out-monthly")
    assert inputs(other) == state
    assert shown(other) == got
    other.close()


def widget(pg) -> dict:
    return pg.evaluate("() => window.perfsuiteCalculator")


def test_the_slo_picks_the_sweep_rate(page, report):
    results = report[1]
    sweep = next(m["sweep"] for m in results["measurements"] if "sweep" in m)
    points = sorted(sweep["points"], key=lambda p: p["rate"])
    # An SLO the first point meets exactly, and no more: capacity is that point's throughput.
    first = points[0]
    page.select_option("#slo-pct", "90")
    page.fill("#slo-tpot", "1000")
    page.fill("#slo-ttft", str(first["ttft_p90_ms"]))
    tight = SLO(first["ttft_p90_ms"], 1000, 90)
    want = capacity_from_results(results, "vllm", slo=tight)["throughput_rps"]
    assert number(shown(page)["tput"]) == pytest.approx(want, abs=5e-5)
    # An SLO no point meets: the page says so, as Python does.
    page.fill("#slo-ttft", "0.001")
    with pytest.raises(UsageError, match="no rate of the load sweep met the SLO"):
        capacity_from_results(results, "vllm", slo=SLO(0.001, 1000, 90))
    got = shown(page)
    assert "no swept rate met this SLO" in got["basis"]
    assert "capacity" in got["error"] and got["monthly"] == "-"


def test_bad_traffic_is_explained(page):
    page.fill("#rpm", "1000000000")
    page.fill("#peak", "1")
    with pytest.raises(UsageError, match="below the month's average"):
        Traffic.of(1e9, 1, 512, 256)
    assert "below the month's average" in shown(page)["error"]
