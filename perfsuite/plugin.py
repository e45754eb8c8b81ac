"""The pytest plugin: options, fixtures and hooks. All logic lives in the library (perfsuite.recorder,
perfsuite.session); this module only translates pytest's world into calls to it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from perfsuite.ab.plan import Plan, PlannedServer, PlanningPool, PlanRecorder
from perfsuite.calculator import load_catalogs
from perfsuite.errors import PerfsuiteError, Unavailable, UsageError
from perfsuite.frameworks import EngineSettings, RunningServer
from perfsuite.hardware import check_profile, resolve_profile
from perfsuite.loads import load_sizes
from perfsuite.recorder import Recorder
from perfsuite.report import claims_table, matrix_table, verdict_table
from perfsuite.session import PerfOptions, PerfSession
from perfsuite.signals import SigtermAsInterrupt

SESSION = pytest.StashKey[PerfSession]()
SIGTERM = pytest.StashKey[SigtermAsInterrupt]()
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
    (
        "--perf-strict",
        "perf_strict",
        "fail a perf test that has no comparable baseline (none, a stale one, or one from other hardware)",
        "bool",
    ),
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
    (
        "--perf-workers",
        "perf_workers",
        "load-generator processes for every measurement whose load does not name its own (default 1): "
        "add them when the client's self-check says it could not keep up",
        "string",
    ),
    (
        "--perf-ray",
        "perf_ray",
        "run the load-generator workers as Ray actors on this cluster: auto, host:port or ray://host:port",
        "string",
    ),
    (
        "--perf-ab-plan",
        "perf_ab_plan",
        "used by `perfsuite ab`: write what each selected perf test would measure to this JSON file, "
        "starting no server and sending no load",
        "string",
    ),
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


def _baseline_dir(config: pytest.Config) -> Path:
    """The baselines folder; one named by --perf-baseline-dir (or the ini key) must be a folder that exists,
    unless this run writes the baselines. The default `baselines/` may be absent (no baselines yet)."""
    named = _get(config, "perf_baseline_dir")
    path = Path(config.rootpath, named or "baselines")
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"--perf-baseline-dir={named or 'baselines'}: {path} is a file; name a folder")
    if named and not path.exists() and not _get(config, "perf_update_baselines", False):
        raise pytest.UsageError(
            f"--perf-baseline-dir={named}: no such folder ({path}); create it, fix the path, "
            "or add --perf-update-baselines to write the first baselines there"
        )
    return path


def _refuse_xdist(config: pytest.Config) -> None:
    """pytest-xdist would run perf tests side by side: their servers would share the cores, and each
    worker would overwrite the results file."""
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    if workers not in (None, 0, "0") or hasattr(config, "workerinput"):
        raise pytest.UsageError(
            f"-n {workers}: perfsuite measures one server at a time on the whole machine, and pytest-xdist would "
            "run perf tests side by side (sharing the cores, each worker overwriting the results file); run "
            "without -n, or run the other tests with -p no:perfsuite"
        )


def options_from_config(config: pytest.Config) -> PerfOptions:
    frameworks = _get(config, "perf_frameworks")
    results = _get(config, "perf_results")
    return PerfOptions(
        gpu=_get(config, "perf_gpu", "cpu"),
        baseline_dir=_baseline_dir(config),
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
        ab_plan=Path(plan) if (plan := _get(config, "perf_ab_plan")) else None,
        workers=_int(config, "perf_workers", 1, "--perf-workers"),
        ray_address=_get(config, "perf_ray"),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perf: a performance test that drives real load through a serving framework")
    config.addinivalue_line(
        "markers",
        "engine(**settings): engine settings for the `serving` fixture's server "
        "(max_model_len, max_num_seqs, enable_prefix_caching, ...)",
    )
    _refuse_xdist(config)
    try:
        options = options_from_config(config)
        profile = resolve_profile(options.gpu)
        check_profile(profile)
        if options.prices:
            load_catalogs(options.prices)  # a bad prices file is a usage error now, not after the run
        config.stash[SESSION] = PerfSession(options, profile)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SIGTERM] = SigtermAsInterrupt()  # SIGTERM (a CI cancel) ends the run as Ctrl-C does
    config.stash[SIGTERM].install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if (sigterm := config.stash.get(SIGTERM, None)) is not None:
        sigterm.uninstall()


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash.get(SESSION, None)
    if s is None:
        return []
    p = s.profile
    return [
        f"perfsuite: gpu={p.name} ({p.description}; ${p.price_per_hour}/h, {p.price_source}, {p.price_date}); "
        f"frameworks={','.join(s.selected)}; baselines={s.options.baseline_dir / p.name / s.machine}"
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses `serving` runs once per selected framework."""
    if "serving" in metafunc.fixturenames and not any(
        "serving" in m.args[0] for m in metafunc.definition.iter_markers("parametrize") if m.args
    ):
        session = metafunc.config.stash[SESSION]
        metafunc.parametrize("serving", session.selected, indirect=True, scope="function")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run each framework's tests together across the modules: one server start per framework (and
    settings) for the whole run instead of one per framework and module (the pool runs one server at a
    time). Tests that ask for no framework form a group of their own. Groups come in the order their
    first test was collected, a group's tests in module order; order is otherwise kept."""

    def framework(item: pytest.Item) -> str:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("serving", "") if callspec else ""

    order: dict[str, int] = {}
    module_rank: dict[str, int] = {}
    for item in items:
        order.setdefault(framework(item), len(order))
        module_rank.setdefault(item.nodeid.split("::")[0], len(module_rank))
    items.sort(key=lambda it: (order[framework(it)], module_rank[it.nodeid.split("::")[0]]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Read every selected perf test's baseline now, before any server starts: a broken file (bad JSON,
    schema, NaN or infinity) fails its test at once, naming the file and field."""
    s = session.config.stash.get(SESSION, None)
    if s is not None and not s.options.ab_plan:  # planning compares nothing with a baseline
        s.check_baselines(item.nodeid for item in session.items if "perf" in getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    s = item.config.stash.get(SESSION, None)
    if s is not None and (problem := s.baseline_problems.get(item.nodeid)):
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
    """The session's server pool: one server at a time, reused across tests with the same settings. This
    fixture is the pool's one owner: it closes it, stopping the last server, also on failure or interrupt."""
    if perf_session.options.ab_plan:  # planning starts nothing: a test that asks the pool gets a plan
        yield PlanningPool()
        return
    with perf_session.open_pool() as pool:
        yield pool


@pytest.fixture
def serving(request: pytest.FixtureRequest, perf_session: PerfSession, perf_servers) -> RunningServer:
    """A ready server of the framework this test is parametrized with, with the test's `engine` settings."""
    name = getattr(request, "param", None) or perf_session.selected[0]
    if perf_session.options.ab_plan:
        return PlannedServer(name, _engine_settings(request.node, perf_session))
    perf_model = request.getfixturevalue("perf_model")
    plugin = perf_session.frameworks[name]
    reason = perf_session.why_unavailable(name)
    if reason:
        perf_session.unmeasured[name] = reason
        pytest.skip(f"{name}: {reason}")
    try:
        return perf_servers.get(plugin, perf_model, _engine_settings(request.node, perf_session))
    except PerfsuiteError as exc:
        pytest.fail(f"{name}: {exc}", pytrace=False)


def _engine_settings(node: pytest.Item, perf_session: PerfSession) -> EngineSettings:
    """The settings of the test's `engine` marker, over the profile's (data/loads.json: a GPU profile's
    batch is sized for its loads), over EngineSettings' defaults."""
    marker = node.get_closest_marker("engine")
    kwargs = {**load_sizes(perf_session.profile.name).engine, **(marker.kwargs if marker else {})}
    try:
        return EngineSettings.from_kwargs(**kwargs)
    except UsageError as exc:
        pytest.fail(f"@pytest.mark.engine: {exc}", pytrace=False)


class PerfFixture:
    """The `perf` fixture: perfsuite.recorder.Recorder's methods, with perfsuite's errors turned into
    pytest outcomes here and only here (Unavailable skips; any other PerfsuiteError fails the test)."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def __getattr__(self, name: str):
        attr = getattr(self._recorder, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Unavailable as exc:
                pytest.skip(str(exc))
            except PerfsuiteError as exc:
                pytest.fail(str(exc), pytrace=False)

        return call


@pytest.fixture
def perf(request: pytest.FixtureRequest, perf_session: PerfSession, perf_servers) -> PerfFixture:
    """Measure a server and gate the result against the stored baseline: `perf.measure(serving, "chat")`."""
    if perf_session.options.ab_plan:
        return PerfFixture(PlanRecorder.of(perf_session, request.node.nodeid))
    return PerfFixture(Recorder(perf_session, request.node.nodeid, _engine_settings(request.node, perf_session)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    s = session.config.stash.get(SESSION, None)
    if s is None:
        return
    if s.options.ab_plan:
        Plan(tuple(s.planned), dict(s.not_paired), s.profile.name).write(s.options.ab_plan)
        return
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
    s.kept_logs = s.finish(tests_failed=bool(session.testsfailed))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    s = config.stash.get(SESSION, None)
    if s is None:
        return
    tr = terminalreporter
    if s.leftovers_removed:
        tr.write_line(f"perfsuite: removed containers a killed earlier run left: {', '.join(s.leftovers_removed)}")
    if s.kept_logs:
        why = "" if s.keep_logs else " (kept because a test failed)"
        tr.write_line(f"perfsuite: server logs: {s.kept_logs}{why}")
    if not (s.measurements or s.claims):
        return
    if s.claims:
        tr.write_sep("=", f"perfsuite: claims checked on {s.profile.name}")
        tr.write_line(claims_table(s.claims))
    if not s.measurements:
        return
    results = s.results()
    tr.write_sep("=", f"perfsuite: verdicts on {s.profile.name}")
    tr.write_line(verdict_table(results["measurements"]))
    tr.write_sep("=", "perfsuite: selection matrix")
    tr.write_line(matrix_table(results["matrix"]))
    tr.write_line(
        f"price: ${s.profile.price_per_hour}/h per device ({s.profile.price_source}, {s.profile.price_date}); "
        f"model: {s.model_label}"
    )
    for note in dict.fromkeys(n for m in s.measurements for n in m.server_notes):
        tr.write_line(f"note: {note}")
    if missing := s.without_baseline:
        tr.write_line(
            f"no baseline: {len(missing)} measurement(s) had none to be compared with "
            "(--perf-update-baselines writes them; --perf-strict fails them)"
        )
    if other := s.on_other_hardware:
        tr.write_line(
            f"other-hardware: {len(other)} measurement(s) had a baseline taken on other hardware, not compared "
            f"(this machine's folder: {s.machine}; --perf-update-baselines writes it; --perf-strict fails them)"
        )
    if s.written:
        tr.write_line(
            f"baselines written: {len(s.written)} under {s.options.baseline_dir / s.profile.name / s.machine}"
        )
    if s.options.results:
        tr.write_line(f"results: {s.options.results}")
    for path in s.report_paths:
        tr.write_line(f"report: {path}")
