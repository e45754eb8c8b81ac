"""The state of one perf run: settings, the server pool, measurements and verdicts.

The pytest plugin creates one PerfSession per pytest session; everything here works without pytest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from perfsuite.baseline import baseline_path, load_baseline, promote, successor
from perfsuite.errors import PerfsuiteError, ServerError, UsageError
from perfsuite.fingerprint import MACHINE_SLUG, Fingerprint, machine_slug, this_machine
from perfsuite.frameworks import EngineSettings, FrameworkPlugin, RunningServer, load_frameworks
from perfsuite.hardware import HardwareProfile
from perfsuite.jsonfile import write_atomic
from perfsuite.judge import judge
from perfsuite.measurement import Measurement
from perfsuite.report import selection_matrix
from perfsuite.roofline import Bound, Device, check_within_bound, measurement_bound
from perfsuite.scratch import remove_stale
from perfsuite.verdict import Verdict

__all__ = ["PerfOptions", "PerfSession", "ServerPool", "resolve_model"]


@dataclass
class PerfOptions:
    gpu: str = "cpu"
    baseline_dir: Path = Path("baselines")
    update_baselines: bool = False
    results: Path | None = None
    model: str | None = None
    frameworks: list[str] | None = None  # None: every installed one
    strict: bool = False
    repetitions: int = 3
    start_timeout_s: float = 600.0
    log_dir: Path | None = None
    budget_s: float | None = None  # --perf-budget-s: add repetitions until precise, within this time
    report_dir: Path | None = None  # --perf-report: write perf-report.md and perf-report.html there
    prices: Path | None = None  # --perf-prices: the user's prices laid over the catalogs (report and calculator)
    ab_plan: Path | None = None  # --perf-ab-plan: record what perf tests would measure (perfsuite ab), run nothing
    workers: int = 1  # --perf-workers: load-generator processes for loads that do not name their own
    ray_address: str | None = None  # --perf-ray: the workers are Ray actors on this cluster


def resolve_model(model: str | None, cache_dir: str | None = None) -> str:
    """A model folder or id to serve. None builds (or reuses) the local tiny model."""
    if model is None:
        from perfsuite.model import build_model

        return str(build_model(cache_dir=cache_dir))
    if os.path.exists(model):
        if not os.path.exists(os.path.join(model, "config.json")):
            raise UsageError(f"--perf-model={model}: the folder has no config.json; point it at a model folder")
        return os.path.abspath(model)
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        raise UsageError(
            f"--perf-model={model}: no such folder; give an existing model folder, or a model id such as org/name"
        )
    return model  # a model id (org/name): the framework resolves it from a hub or a local cache


class ServerPool:
    """At most one server running at a time (the machine's cores and memory are shared), reused by every
    test that asks for the same framework, model and settings. The session fixture opens it and is the
    only one that closes it (`with pool:`); an offline run or the CPU probe borrows the machine."""

    def __init__(
        self,
        profile: HardwareProfile,
        log_dir: Path,
        start_timeout_s: float,
        before_start: Callable[[], object] | None = None,
    ) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.before_start = before_start  # run with no server up, before a start (the CPU probe)
        self.current: tuple | None = None
        self.server: RunningServer | None = None
        self.failed: dict[tuple, str] = {}

    def get(self, plugin: FrameworkPlugin, model: str, settings: EngineSettings) -> RunningServer:
        key = (plugin.name, model, settings)
        if key in self.failed:
            raise ServerError(
                f"{plugin.name} failed to start earlier in this session with these settings:\n{self.failed[key]}"
            )
        if self.current == key and self.server is not None and self.server.process.alive():
            return self.server
        self._stop()
        if self.before_start is not None:
            self.before_start()
        try:
            self.server = plugin.start(model, settings, self.profile, self.log_dir, self.start_timeout_s)
        except ServerError as exc:
            self.failed[key] = str(exc)
            raise
        self.current = key
        return self.server

    @contextlib.contextmanager
    def borrow(self) -> Iterator[None]:
        """The machine with no server running, for an offline engine or a probe; the next get() starts one."""
        self._stop()
        yield

    def _stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.current = None, None

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()


@dataclass
class PerfSession:
    """One perf run: its options and profile, the frameworks, and every measurement and claim recorded."""

    options: PerfOptions
    profile: HardwareProfile
    frameworks: dict[str, FrameworkPlugin] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    unmeasured: dict[str, str] = field(default_factory=dict)  # framework -> why it could not run here
    device: Device | None = None  # the roofline's device: probed on the cpu profile, else from the catalog
    fingerprint: Fingerprint | None = None  # this machine's (perfsuite.fingerprint); read when not given
    planned: list = field(default_factory=list)  # with --perf-ab-plan: perfsuite.ab.plan.PlannedMeasurement
    not_paired: dict[str, str] = field(default_factory=dict)  # with --perf-ab-plan: test id -> why not

    def __post_init__(self) -> None:
        if self.fingerprint is None:
            self.fingerprint = this_machine()
        self._unavailable: dict[str, str | None] = {}
        if not self.frameworks:
            self.frameworks = load_frameworks()
        if self.options.frameworks:
            unknown = [f for f in self.options.frameworks if f not in self.frameworks]
            if unknown:
                raise UsageError(
                    f"--frameworks: unknown {', '.join(unknown)}; installed: {', '.join(sorted(self.frameworks))}"
                )
            for name in self.options.frameworks:  # asked for by name: must be able to run
                reason = self.why_unavailable(name)
                if reason:
                    raise UsageError(f"--frameworks={name}: {reason}")
        self.keep_logs = self.options.log_dir is not None
        self.log_dir: Path | None = None  # made when the pool opens: a run that starts no server leaves nothing
        self.pool: ServerPool | None = None  # open while the session fixture holds it
        self.leftovers_removed: list[str] = []  # containers of a killed earlier run, removed at the start
        self.stale_tmp_removed: list[Path] = []  # its temporary folders (perfsuite.scratch), likewise
        self.kept_logs: Path | None = None  # where the server logs stayed at the end, if they did
        self.report_paths: list[Path] = []
        self.baseline_problems: dict[str, str] = {}  # test id -> why its baseline cannot be read
        self._device_note: str | None = None
        self._model: str | None = None
        self._prompts = {}

    def open_pool(self) -> ServerPool:
        """The server pool for this run; the caller closes it (`with session.open_pool() as pool:`)."""
        if self.log_dir is None:
            self.stale_tmp_removed = remove_stale()  # temporary folders of a killed earlier run
            self.log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="perfsuite-logs-"))
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.leftovers_removed = self._remove_leftover_containers()
        self.pool = ServerPool(self.profile, self.log_dir, self.options.start_timeout_s, self.roofline_device)
        return self.pool

    @staticmethod
    def _remove_leftover_containers() -> list[str]:
        """The containers a killed earlier run left behind, removed before this run starts any server."""
        from perfsuite.container import engine_from_env, remove_leftovers

        try:
            engine = engine_from_env()
        except UsageError:
            return []  # a bad $PERFSUITE_CONTAINER_ENGINE is reported by the container frameworks themselves
        return remove_leftovers(engine, timeout_s=60) if engine is not None else []

    def why_unavailable(self, name: str) -> str | None:
        """Why framework `name` cannot run here (or None), asked once per session: the checks start a
        JVM or a container engine, which must not happen beside a running measurement."""
        if name not in self._unavailable:
            self._unavailable[name] = self.frameworks[name].unavailable()
        return self._unavailable[name]

    @property
    def selected(self) -> list[str]:
        return self.options.frameworks or sorted(self.frameworks)

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = resolve_model(self.options.model)
        return self._model

    @property
    def model_label(self) -> str:
        """The model as results and baselines name it: a folder's name, or the model id."""
        return Path(self.model).name if Path(self.model).exists() else self.model

    def prompts(self, seed: int = 0):
        """The prompt builder for the session's model (its tokenizer is loaded once)."""
        if seed not in self._prompts:
            from transformers import AutoTokenizer

            from perfsuite.model import corpus_text
            from perfsuite.workloads import PromptBuilder

            self._prompts[seed] = PromptBuilder(AutoTokenizer.from_pretrained(self.model), corpus_text(), seed)
        return self._prompts[seed]

    @property
    def machine(self) -> str:
        """This machine's baseline folder under the profile's (perfsuite.fingerprint.machine_slug)."""
        return machine_slug(self.fingerprint, self.profile.kind)

    def baseline_target(self, test_id: str) -> Path:
        """Where this machine's baseline of `test_id` is (and is written): <profile>/<machine>/<test>.json."""
        return baseline_path(self.options.baseline_dir, self.profile.name, test_id, machine=self.machine)

    def baseline_file(self, test_id: str) -> Path:
        """The baseline `test_id` is judged against: this machine's; else an older one directly under the
        profile's folder; else another machine's (both judged other-hardware unless the fingerprint
        matches: the note says what differs, where "no baseline" would hide that one exists); else where
        this machine's would be."""
        own = self.baseline_target(test_id)
        if own.exists():
            return own
        flat = baseline_path(self.options.baseline_dir, self.profile.name, test_id)
        if flat.exists():
            return flat
        profile_dir = self.options.baseline_dir / self.profile.name
        folders = sorted(p for p in profile_dir.iterdir() if p.is_dir()) if profile_dir.is_dir() else []
        folders = [d for d in folders if MACHINE_SLUG.fullmatch(d.name) and d.name != "history" and not d.is_symlink()]
        others = [d / flat.name for d in folders if (d / flat.name).is_file()]
        return others[0] if others else own  # (no glob: test ids hold [] that glob reads as a pattern)

    def check_baselines(self, test_ids: Iterable[str]) -> dict[str, str]:
        """Read the baselines of `test_ids`; {test id: the problem} for each that cannot be used."""
        for test_id in test_ids:
            try:
                load_baseline(self.baseline_file(test_id))
            except PerfsuiteError as exc:
                self.baseline_problems[test_id] = str(exc)
        return self.baseline_problems

    @property
    def without_baseline(self) -> list[Measurement]:
        """The measurements that had no baseline to be compared with."""
        return [m for m in self.measurements if m.verdict is Verdict.NO_BASELINE]

    @property
    def on_other_hardware(self) -> list[Measurement]:
        """The measurements whose baseline was taken on other hardware (not compared)."""
        return [m for m in self.measurements if m.verdict is Verdict.OTHER_HARDWARE]

    def record(self, m: Measurement, thresholds: dict[str, str] | None = None) -> Measurement:
        """Judge a measurement against its baseline and thresholds, write the baseline if asked to, and
        keep it: the one place a measurement joins the run's results."""
        path = self.baseline_file(m.test_id)
        baseline = None if m.ungated else load_baseline(path)
        m, baseline_problem = self.check_bounds(m, baseline, path)
        updating = self.options.update_baselines
        strict = self.options.strict and not m.ungated
        m = m.judged(
            judge(m, baseline, thresholds, strict=strict, updating=updating, baseline_problem=baseline_problem)
        )
        if updating and not m.ungated:
            why_not = m.why_not_a_baseline() or (f"the test failed ({m.verdict.value})" if m.failed else None)
            if why_not:
                m = m.with_notes(f"baseline not written: {why_not}")
            else:
                # Written to this machine's folder; an older flat baseline read instead stays where it is.
                target = self.baseline_target(m.test_id)
                old = baseline if target == path else load_baseline(target)
                self.written.append(promote(target, successor(m, baseline, self.profile.min_tolerance), old))
                m = replace(m, baseline_written=str(target))
        self.measurements.append(m)
        return m

    def roofline_device(self, devices: int = 1) -> Device | None:
        """The device bounds are computed for: the catalog's figures for a GPU profile; on the cpu profile
        this machine's peaks, probed once, with no server up (it borrows the machine from the pool)."""
        if self.device is not None or self._device_note is not None:
            return self.device
        if self.profile.kind != "cpu":
            try:
                return Device.from_profile(self.profile, devices)
            except ValueError as exc:
                self._device_note = f"no roofline bound: {exc}"
                return None
        # A server's engine busy-polls a core: a probe beside it would read low.
        with self.pool.borrow() if self.pool is not None else contextlib.nullcontext():
            try:
                self.device = Device.from_profile(self.profile)
            except (ImportError, RuntimeError, OSError) as exc:
                self._device_note = f"no roofline bound: the CPU probe failed ({exc})"
        return self.device

    def bound(self, workload: dict, load: dict, engine: dict, metrics: dict) -> Bound | str:
        """The physical bound for a measurement of this shape, or why there is none."""
        if not (Path(self.model) / "config.json").exists():
            return f"no roofline bound: {self.model} has no local config.json"
        device = self.roofline_device((engine or {}).get("tensor_parallel_size") or 1)
        if device is None:
            return self._device_note or "no roofline bound"
        try:
            return measurement_bound(Path(self.model), device, workload, load, engine or {}, metrics)
        except (ValueError, KeyError, TypeError) as exc:
            return f"no roofline bound: {exc}"

    def check_bounds(self, m: Measurement, baseline: dict | None, path: Path) -> tuple[Measurement, str | None]:
        """`m` with its efficiency (measured req/s / bound) and bound, or with `above_bound` set when its
        numbers beat the bound; and the problem, naming `path`, when the baseline's numbers do."""
        bound = self.bound(m.workload, m.load, m.engine, m.metrics)
        if isinstance(bound, str):
            return m.with_notes(bound), None
        m = m.against_bound(bound, self.roofline_device(m.engine.get("tensor_parallel_size") or 1).name)
        prov = (baseline or {}).get("provenance", {})
        if m.above_bound or prov.get("model") != self.model_label or "workload" not in prov or "load" not in prov:
            return m, None
        old = self.bound(prov["workload"], prov["load"], prov.get("engine") or {}, {})
        if isinstance(old, str):
            return m, None
        problem = check_within_bound(baseline["metrics"], old, what=f"{path}: refused: the baseline's")
        if problem:
            problem += " Fix the file, or delete it and rerun with --perf-update-baselines."
        return m, problem

    def results(self) -> dict:
        """The results file's content: every measurement, the selection matrix, the claims."""
        measurements = [m.to_dict() for m in self.measurements]
        return {
            "schema": 1,
            "profile": self.profile.name,
            "hardware": self.fingerprint.to_dict(),
            "measurements": measurements,
            "matrix": selection_matrix(measurements, self.unmeasured),
            "unmeasured": self.unmeasured,
            "claims": self.claims,
        }

    def write_results(self) -> Path | None:
        if not self.options.results:
            return None
        return write_atomic(Path(self.options.results), self.results())

    def finish(self, tests_failed: bool) -> Path | None:
        """End the run's files: the server logs are kept when --perf-log-dir named their folder or a test
        failed and some server wrote one (returns where), else removed."""
        if self.log_dir is None:
            return None
        if self.keep_logs or (tests_failed and any(self.log_dir.iterdir())):  # an empty folder shows nothing
            return self.log_dir
        shutil.rmtree(self.log_dir, ignore_errors=True)
        return None
