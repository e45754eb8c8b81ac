"""The pytest plugin: options, fixtures and the report hook. All logic lives in the library; this
module only translates pytest's world into calls to it."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from perfsuite.baseline import load_baseline
from perfsuite.calculator import SLOTarget, load_catalogs, meets_slo, sustainable_point
from perfsuite.cost import add_costs
from perfsuite.errors import PerfsuiteError, UsageError
from perfsuite.frameworks import EngineSettings, RunningServer
from perfsuite.hardware import check_profile, resolve_profile
from perfsuite.loadgen import Load
from perfsuite.metrics import SLO
from perfsuite.report import claims_table, comparison_table, matrix_table, verdict_table
from perfsuite.runner import measure, provenance
from perfsuite.session import PerfOptions, PerfSession
from perfsuite.signals import SigtermAsInterrupt
from perfsuite.workloads import Workload, get_workload

SESSION = pytest.StashKey[PerfSession]()
SIGTERM = pytest.StashKey[SigtermAsInterrupt]()
# What each point of a load sweep keeps (the report plots them; calculator.meets_slo reads them).
SWEEP_KEYS = (
    "request_throughput",
    "output_throughput",
    "goodput",
    "error_rate",
    *(f"{m}_p{p}_ms" for m in ("ttft", "tpot", "e2e") for p in (50, 90, 99)),
)

# (option, ini name, help, kind). Every option can also be set in the ini file / pyproject.
_OPTIONS = [
    ("--gpu", "perf_gpu", "hardware profile from the catalog: cpu (default), a100, a100-40gb, h100, ...", "string"),
    ("--perf-baseline-dir", "perf_baseline_dir", "folder of stored baselines (default: baselines)", "string"),
    ("--perf-update-baselines", "perf_update_baselines", "write this run's measurements as the new baselines", "bool"),
    ("--perf-results", "perf_results", "write every measurement, verdict and the matrix to this JSON file", "string"),
    ("--perf-model", "perf_model", "model folder or id to serve (default: the locally built tiny Llama)", "string"),
    (
        "--frameworks",
        "perf_frameworks",
        "comma-separated frameworks to measure (default: every installed one)",
        "string",
    ),
    ("--perf-strict", "perf_strict", "fail a perf test that has no comparable baseline", "bool"),
    (
        "--perf-repetitions",
        "perf_repetitions",
        "load runs per perf test; metrics are their medians (default 3)",
        "string",
    ),
    ("--perf-start-timeout", "perf_start_timeout", "seconds a server may take to become ready (default 600)", "string"),
    ("--perf-log-dir", "perf_log_dir", "keep server logs in this folder (default: a new temporary folder)", "string"),
    (
        "--perf-budget-s",
        "perf_budget_s",
        "seconds a measurement may take: repetitions are added (beyond --perf-repetitions) until the "
        "request throughput's median is known within 3%, or the budget is spent (default: no extra repetitions)",
        "string",
    ),
    (
        "--perf-report",
        "perf_report",
        "write perf-report.md (job summary) and perf-report.html (matrix, plots, cost calculator) to this folder",
        "string",
    ),
    ("--perf-prices", "perf_prices", "JSON file of your own hardware and API prices (see docs/report.md)", "string"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsuite", "LLM serving performance (perfsuite)")
    for flag, ini, help_, kind in _OPTIONS:
        dest = ini
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=dest, help=help_)
        else:
            group.addoption(flag, action="store", default=None, dest=dest, help=help_)
        parser.addini(ini, help_, type="bool" if kind == "bool" else "string", default=None)


def _get(config: pytest.Config, name: str, default=None):
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return default if value in (None, "") else value


def _int(config: pytest.Config, name: str, default: int, flag: str) -> int:
    raw = _get(config, name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{flag}={raw}: expected a whole number") from None
    if value < 1:
        raise pytest.UsageError(f"{flag}={raw}: must be at least 1")
    return value


def _budget(config: pytest.Config) -> float | None:
    raw = _get(config, "perf_budget_s")
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"--perf-budget-s={raw}: expected a number of seconds") from None
    if not value > 0:
        raise pytest.UsageError(f"--perf-budget-s={raw}: must be more than 0 seconds")
    return value


def options_from_config(config: pytest.Config) -> PerfOptions:
    frameworks = _get(config, "perf_frameworks")
    results = _get(config, "perf_results")
    return PerfOptions(
        gpu=_get(config, "perf_gpu", "cpu"),
        baseline_dir=Path(config.rootpath, _get(config, "perf_baseline_dir", "baselines")),
        update_baselines=bool(_get(config, "perf_update_baselines", False)),
        results=Path(results) if results else None,
        model=_get(config, "perf_model"),
        frameworks=[f.strip() for f in frameworks.split(",") if f.strip()] if frameworks else None,
        strict=bool(_get(config, "perf_strict", False)),
        repetitions=_int(config, "perf_repetitions", 3, "--perf-repetitions"),
        start_timeout_s=float(_int(config, "perf_start_timeout", 600, "--perf-start-timeout")),
        log_dir=Path(config.rootpath, log_dir) if (log_dir := _get(config, "perf_log_dir")) else None,
        budget_s=_budget(config),
        report_dir=Path(config.rootpath, report) if (report := _get(config, "perf_report")) else None,
        prices=Path(config.rootpath, prices) if (prices := _get(config, "perf_prices")) else None,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SIGTERM] = SigtermAsInterrupt()  # SIGTERM (a CI cancel) ends the run as Ctrl-C does
    config.stash[SIGTERM].install()
    config.addinivalue_line("markers", "perf: a performance test that drives real load through a serving framework")
    config.addinivalue_line(
        "markers",
        "engine(**settings): engine settings for the `serving` fixture's server "
        "(max_model_len, max_num_seqs, enable_prefix_caching, ...)",
    )
    try:
        options = options_from_config(config)
        profile = resolve_profile(options.gpu)
        check_profile(profile)
        if options.prices:
            load_catalogs(options.prices)  # a bad prices file is a usage error now, not after the run
        config.stash[SESSION] = PerfSession(options, profile)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    if (sigterm := config.stash.get(SIGTERM, None)) is not None:
        sigterm.uninstall()
    session = config.stash.get(SESSION, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash.get(SESSION, None)
    if s is None:
        return []
    p = s.profile
    return [
        f"perfsuite: gpu={p.name} ({p.description}; ${p.price_per_hour}/h, {p.price_source}, {p.price_date}); "
        f"frameworks={','.join(s.selected)}; baselines={s.options.baseline_dir}"
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses `serving` runs once per selected framework."""
    if "serving" in metafunc.fixturenames and not any(
        "serving" in m.args[0] for m in metafunc.definition.iter_markers("parametrize") if m.args
    ):
        session = metafunc.config.stash[SESSION]
        metafunc.parametrize("serving", session.selected, indirect=True, scope="function")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each test module, run one framework's tests together: one server start per framework
    and module instead of one per test (the pool runs one server at a time). Order is otherwise kept."""

    def framework(item: pytest.Item) -> str:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("serving", "") if callspec else ""

    order: dict[str, int] = {}
    for item in items:
        order.setdefault(framework(item), len(order))
    module_rank: dict[str, int] = {}
    for item in items:
        module_rank.setdefault(item.nodeid.split("::")[0], len(module_rank))
    items.sort(key=lambda it: (module_rank[it.nodeid.split("::")[0]], order[framework(it)]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Read a perf test's baseline before any server starts: a broken file fails fast, naming itself."""
    s = item.config.stash.get(SESSION, None)
    if s is not None and "perf" in getattr(item, "fixturenames", ()):
        problem = None
        try:
            load_baseline(s.baseline_file(item.nodeid))
        except PerfsuiteError as exc:
            problem = str(exc)
        if problem:
            pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def perf_session(pytestconfig: pytest.Config) -> PerfSession:
    """The run's state: profile, options, server pool, measurements."""
    return pytestconfig.stash[SESSION]


@pytest.fixture(scope="session")
def perf_model(perf_session: PerfSession) -> str:
    """The model folder or id being served (the tiny local model unless --perf-model names one)."""
    try:
        return perf_session.model
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def perf_servers(perf_session: PerfSession):
    """The session's server pool: one server at a time, reused across tests with the same settings."""
    yield perf_session.pool
    perf_session.pool.close()


@pytest.fixture
def serving(request: pytest.FixtureRequest, perf_session: PerfSession, perf_servers, perf_model) -> RunningServer:
    """A ready server of the framework this test is parametrized with, with the test's `engine` settings."""
    name = getattr(request, "param", None) or perf_session.selected[0]
    plugin = perf_session.frameworks[name]
    reason = perf_session.why_unavailable(name)
    if reason:
        perf_session.unmeasured[name] = reason
        pytest.skip(f"{name}: {reason}")
    try:
        return perf_servers.get(plugin, perf_model, _engine_settings(request.node))
    except PerfsuiteError as exc:
        pytest.fail(f"{name}: {exc}", pytrace=False)


def _engine_settings(node: pytest.Item) -> EngineSettings:
    """The settings of the test's `engine` marker (the defaults without one)."""
    marker = node.get_closest_marker("engine")
    return EngineSettings.from_kwargs(**marker.kwargs) if marker else EngineSettings()


class PerfRecorder:
    """What a perf test calls: measure a server under a workload and load, judged against its baseline."""

    def __init__(self, node: pytest.Item, session: PerfSession) -> None:
        self.node = node
        self.session = session

    @property
    def profile(self) -> str:
        """The hardware profile's name, for tests whose thresholds depend on it."""
        return self.session.profile.name

    def measure(
        self,
        server: RunningServer,
        workload: str | Workload = "chat",
        load: Load | None = None,
        *,
        thresholds: dict[str, str] | None = None,
        slo: SLO | None = None,
        repetitions: int | None = None,
        max_error_rate: float = 0.0,
        variant: str | None = None,
    ) -> dict:
        """Measure `server`; `variant` names one of several measurements in one test (its own baseline)."""
        s = self.session
        wl = get_workload(workload) if isinstance(workload, str) else workload
        load = load or Load.closed(8, requests=48)
        m = self._run(server, wl, load, slo or SLO(), repetitions or s.options.repetitions)
        self._describe(m, server.framework, server.version, server.settings, variant)
        m["server_notes"] = list(server.notes)
        if m["metrics"]["error_rate"] > max_error_rate:
            m["verdict"], m["failed"] = "errors", True
            s.measurements.append(m)
            pytest.fail(
                f"{m['error_count']} request(s) failed (error rate {m['metrics']['error_rate']:.1%} > "
                f"{max_error_rate:.1%}); first: {m['errors'][:3]}",
                pytrace=False,
            )
        return self._judge(m, thresholds)

    def _run(
        self, server: RunningServer, wl: Workload, load: Load, slo: SLO, repetitions: int, adaptive: bool = True
    ) -> dict:
        """perfsuite.runner.measure against `server`; a measurement error fails the test, naming the framework.
        `adaptive`: --perf-budget-s may add repetitions (not for a sweep's single run per rate)."""
        s = self.session
        try:
            return measure(
                server.endpoint,
                server.protocol(wl.api),
                wl,
                load,
                s.prompts(),
                s.profile,
                repetitions=repetitions,
                slo=slo,
                gpus=server.settings.tensor_parallel_size,
                procs=server.process.tree,
                metrics_url=server.metrics_url,
                metric_names=server.metric_names,
                check_alive=server.process.check_alive,
                client_cpus=server.client_cpus,
                budget_s=s.options.budget_s if adaptive else None,
            )
        except PerfsuiteError as exc:
            pytest.fail(f"{server.framework}: {exc}", pytrace=False)

    def sweep(
        self,
        server: RunningServer,
        workload: str | Workload = "chat",
        rates: tuple[float, ...] = (4, 8, 16, 32),
        *,
        requests: int = 24,
        seconds: float = 3.0,
        warmup_requests: int = 4,
        slo: SLOTarget | None = None,
        thresholds: dict[str, str] | None = None,
    ) -> dict:
        """Poisson arrivals at each rate in turn, lowest first, one run each of `seconds` of arrivals (at
        least `requests` requests): the throughput-latency curve. A fixed handful of requests would not
        do: a short burst above capacity drains before a queue shows. It stops after the first rate that
        misses `slo` (past the knee every rate only queues longer). The measurement kept, and judged
        against the baseline, is the one at the highest rate that met the SLO: that rate, not the peak,
        is what capacity and cost rest on. Every point is in m["sweep"]["points"] for the report."""
        wl = get_workload(workload) if isinstance(workload, str) else workload
        slo = slo or SLOTarget()
        points, runs = [], {}
        for i, rate in enumerate(sorted(rates)):
            count = max(requests, math.ceil(rate * seconds))
            load = Load.poisson(rate, requests=count, warmup_requests=warmup_requests, seed=i)
            run = self._run(server, wl, load, SLO(slo.ttft_ms, slo.tpot_ms), 1, adaptive=False)
            points.append({"rate": rate, **{k: round(run["metrics"][k], 4) for k in SWEEP_KEYS}})
            runs[rate] = run
            if not meets_slo(points[-1], slo):
                break
        best = sustainable_point(points, slo)
        # No rate met the SLO: a finding about the framework (capacity below the lowest rate), not a broken
        # measurement. The lowest rate's run is kept; the sweep says there is no capacity to cost.
        m = runs[(best or points[0])["rate"]]
        m["load"] = {
            "arrival": "poisson-sweep",
            "rates": sorted(rates),
            "requests": requests,
            "seconds": seconds,
            "warmup_requests": warmup_requests,
        }
        m["sweep"] = {
            "slo": asdict(slo),
            "points": points,
            "rate": best and best["rate"],
            "throughput_rps": best and best["request_throughput"],
            "knee_found": best is not points[-1],  # False: every rate met the SLO, capacity is at least this
        }
        self._describe(m, server.framework, server.version, server.settings)
        # Measured on this machine: the sustainable rate moves a whole step (64 <-> 96 req/s for vLLM) from
        # run to run, a 30% swing no tolerance can gate. Thresholds still apply; the report draws it.
        m["ungated"] = "a sweep's sustainable rate moves a whole rate step between runs"
        p = slo.percentile
        if best is None:
            m["notes"].append(
                f"no swept rate met the SLO (TTFT p{p} <= {slo.ttft_ms:g} ms, TPOT p{p} <= {slo.tpot_ms:g} ms): "
                f"capacity is below {points[0]['rate']:g} req/s"
            )
        elif best is points[-1]:
            m["notes"].append(f"the SLO held at every swept rate: capacity is at least {best['rate']:g} req/s offered")
        m["server_notes"] = list(server.notes)
        return self._judge(m, thresholds)

    def measure_offline(
        self,
        framework: str = "vllm",
        workload: str = "throughput",
        requests: int = 64,
        *,
        thresholds: dict[str, str] | None = None,
    ) -> dict:
        """Offline (in-process) throughput of `framework`, e.g. vllm.LLM.generate over a batch of prompts."""
        s = self.session
        plugin = s.frameworks.get(framework)
        if plugin is None or not hasattr(plugin, "offline"):
            pytest.skip(f"{framework}: no offline mode")
        reason = s.why_unavailable(framework)
        if reason:
            pytest.skip(f"{framework}: {reason}")
        s.pool.close()  # the cores are the offline engine's now
        wl = get_workload(workload)
        specs = s.prompts().requests(wl, requests, seed=0)
        out_tokens = wl.output_tokens[1]
        settings = _engine_settings(self.node)
        metrics = plugin.offline(s.model, settings, s.profile, [x.prompt for x in specs], out_tokens)
        price = s.profile.price_per_hour * settings.tensor_parallel_size
        add_costs(metrics, price)
        metrics.setdefault("error_rate", 0.0)
        m = {
            "profile": s.profile.name,
            "device_kind": s.profile.kind,
            "workload": wl.to_dict(),
            "load": {"arrival": "offline", "requests": requests, "output_tokens": out_tokens},
            "price_per_hour": price,
            "price_source": f"{s.profile.price_source} ({s.profile.price_date})",
            "metrics": metrics,
            "repetitions": [metrics],
        }
        self._describe(m, f"{framework}-offline", plugin.version(), settings)
        return self._judge(m, thresholds)

    def _describe(
        self, m: dict, framework: str, version: str, settings: EngineSettings, variant: str | None = None
    ) -> None:
        """Add what the measurement `m` is of (test, framework, model, engine) and its provenance."""
        model = self.session.model_label
        m.update(
            test_id=self.node.nodeid + (f"@{variant}" if variant else ""),
            framework=framework,
            framework_version=version,
            model=model,
            engine=settings.to_dict(),
            notes=[],
        )
        m["provenance"] = provenance(
            framework=framework,
            framework_version=version,
            model=model,
            workload=m["workload"],
            load=m["load"],
            engine=m["engine"],
            price_per_hour=m["price_per_hour"],
            price_source=m["price_source"],
        )

    def claim(self, claim: str, statement: str, verdict: str, evidence: str) -> None:
        """Record what a claim from the literature came to here: held, not held, or not measurable here."""
        self.session.claims.append(
            {
                "test_id": self.node.nodeid,
                "claim": claim,
                "statement": statement,
                "verdict": verdict,
                "evidence": evidence,
                "profile": self.session.profile.name,
            }
        )

    def _judge(self, m: dict, thresholds: dict[str, str] | None) -> dict:
        s = self.session
        try:
            verdict, rows = s.record(m, thresholds)
        except PerfsuiteError as exc:
            pytest.fail(str(exc), pytrace=False)
        if m["failed"]:
            table = comparison_table([r.as_dict() for r in rows])
            pytest.fail(
                f"perf {verdict}: {self.node.nodeid} on {s.profile.name} vs "
                f"{s.baseline_file(self.node.nodeid)}\n{table}",
                pytrace=False,
            )
        return m


@pytest.fixture
def perf(request: pytest.FixtureRequest, perf_session: PerfSession) -> PerfRecorder:
    """Measure a server and gate the result against the stored baseline: `perf.measure(serving, "chat")`."""
    return PerfRecorder(request.node, perf_session)


def pytest_sessionfinish(session: pytest.Session) -> None:
    s = session.config.stash.get(SESSION, None)
    if s is not None:
        s.pool.close()
        s.write_results()
        if s.options.report_dir:
            from perfsuite.report_html import write_reports

            s.report_paths = write_reports(
                s.results(), s.options.report_dir, prices=s.options.prices, baseline_dir=s.options.baseline_dir
            )
            summary = os.environ.get("GITHUB_STEP_SUMMARY")  # set by GitHub Actions: the job's summary page
            if summary:
                with open(summary, "a") as f:
                    f.write(s.report_paths[0].read_text())


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    s = config.stash.get(SESSION, None)
    if s is None or not (s.measurements or s.claims):
        return
    tr = terminalreporter
    if s.claims:
        tr.write_sep("=", f"perfsuite: claims checked on {s.profile.name}")
        tr.write_line(claims_table(s.claims))
    if not s.measurements:
        return
    tr.write_sep("=", f"perfsuite: verdicts on {s.profile.name}")
    tr.write_line(verdict_table(s.measurements))
    tr.write_sep("=", "perfsuite: selection matrix")
    tr.write_line(matrix_table(s.results()["matrix"]))
    tr.write_line(
        f"price: ${s.profile.price_per_hour}/h per device ({s.profile.price_source}, {s.profile.price_date}); "
        f"model: {s.model_label}"
    )
    for note in dict.fromkeys(n for m in s.measurements for n in m.get("server_notes", [])):
        tr.write_line(f"note: {note}")
    if s.written:
        tr.write_line(f"baselines written: {len(s.written)} under {s.options.baseline_dir / s.profile.name}")
    if s.options.results:
        tr.write_line(f"results: {s.options.results}")
    for path in getattr(s, "report_paths", ()):
        tr.write_line(f"report: {path}")
    tr.write_line(f"server logs: {s.log_dir}")
