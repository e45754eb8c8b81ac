"""What one side's perf tests would measure, found by running its pytest with nothing started.

`perfsuite ab` runs each tree's own pytest with `--perf-ab-plan=FILE`: every selected perf test runs
up to its `perf.measure(...)` call, which records the framework, engine settings, workload, load,
repetitions, thresholds and SLO it was given (PlanRecorder) and skips the test. No server starts and
no load is sent; the coordinator then measures both sides' plans side by side. A sweep, an offline run
or a claim cannot be paired by repetition: they are listed as not compared, with the reason.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfsuite import jsonfile
from perfsuite.errors import Unavailable, UsageError
from perfsuite.frameworks import EngineSettings
from perfsuite.loadgen import Load
from perfsuite.loads import sized_load
from perfsuite.slo import SLO
from perfsuite.workloads import Workload, get_workload

__all__ = ["PlannedMeasurement", "Plan", "PlanRecorder", "Planned", "PlannedServer", "PlanningPool", "collect_plan"]

PLAN_TIMEOUT_S = 600  # collecting is quick; a side that hangs here is broken


class Planned(Unavailable):
    """Raised by PlanRecorder after it recorded a measurement: the test stops (skipped) there."""


@dataclass(frozen=True)
class PlannedServer:
    """The `serving` fixture's value while planning: which server the test asked for, not started."""

    framework: str
    settings: EngineSettings


class PlanningPool:
    """The `perf_servers` fixture's value while planning: a test that gets its servers from the pool
    itself (tests/perf/test_claims.py) gets planned servers, and its measure call is recorded."""

    def get(self, plugin, model: str, settings: EngineSettings) -> PlannedServer:
        return PlannedServer(plugin.name, settings)


@dataclass(frozen=True)
class PlannedMeasurement:
    """One `perf.measure(...)` call as a test made it."""

    test_id: str
    framework: str
    engine: dict
    workload: dict
    load: dict
    repetitions: int
    thresholds: dict[str, str] = field(default_factory=dict)
    slo: dict = field(default_factory=dict)
    max_error_rate: float = 0.0

    def settings(self) -> EngineSettings:
        return EngineSettings.from_kwargs(**self.engine)

    def make_workload(self) -> Workload:
        return Workload.from_dict(self.workload)

    def make_load(self) -> Load:
        return Load.from_dict(self.load)

    def make_slo(self) -> SLO:
        return SLO(**self.slo)

    @classmethod
    def from_dict(cls, d: dict) -> PlannedMeasurement:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Plan:
    """A side's planned measurements, and the selected tests that cannot be paired (test id -> why)."""

    measurements: tuple[PlannedMeasurement, ...] = ()
    not_compared: dict[str, str] = field(default_factory=dict)
    profile: str = "cpu"

    def to_dict(self) -> dict:
        return {
            "profile": self.profile,
            "measurements": [asdict(m) for m in self.measurements],
            "not_compared": self.not_compared,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(
            tuple(PlannedMeasurement.from_dict(m) for m in d.get("measurements", [])),
            dict(d.get("not_compared", {})),
            d.get("profile", "cpu"),
        )

    def write(self, path: Path) -> Path:
        return jsonfile.write_atomic(path, self.to_dict())


class PlanRecorder:
    """The `perf` fixture's recorder while planning: the Recorder's methods, recording instead of measuring."""

    def __init__(self, plan: list, not_compared: dict, test_id: str, default_repetitions: int, profile: str) -> None:
        self._plan, self._not_compared = plan, not_compared
        self.test_id = test_id
        self._repetitions = default_repetitions
        self.profile = profile

    @classmethod
    def of(cls, session, test_id: str) -> PlanRecorder:
        """The planner for `test_id` in a PerfSession that plans (--perf-ab-plan)."""
        return cls(session.planned, session.not_paired, test_id, session.options.repetitions, session.profile.name)

    def sized_load(self, arrival: str = "closed") -> Load:
        return sized_load(self.profile, arrival)

    def measure(
        self,
        server: PlannedServer,
        workload: str | Workload = "chat",
        load: Load | None = None,
        *,
        thresholds: dict[str, str] | None = None,
        slo: SLO | None = None,
        repetitions: int | None = None,
        max_error_rate: float = 0.0,
        variant: str | None = None,
    ):
        wl = get_workload(workload) if isinstance(workload, str) else workload
        if wl.source is not None:
            self._cannot_pair(f"a workload read from {wl.source.kind} file {Path(wl.source.path).name}")
        self._plan.append(
            PlannedMeasurement(
                test_id=self.test_id + (f"@{variant}" if variant else ""),
                framework=server.framework,
                engine=server.settings.to_dict(),
                workload=wl.to_dict(),
                load=(load or Load.closed(8, requests=48)).to_dict(),
                repetitions=repetitions or self._repetitions,
                thresholds=dict(thresholds or {}),
                slo=asdict(slo or SLO()),
                max_error_rate=max_error_rate,
            )
        )
        raise Planned("recorded for perfsuite ab")

    def _cannot_pair(self, what: str):
        self._not_compared[self.test_id] = f"{what}: not paired by perfsuite ab (run it against stored baselines)"
        raise Planned(f"{what}: not paired by perfsuite ab")

    def sweep(self, *args, **kwargs):
        self._cannot_pair("a load sweep (one run per rate, ungated)")

    def measure_offline(self, *args, **kwargs):
        self._cannot_pair("an offline engine run (no server to pair)")

    def claim(self, *args, **kwargs):
        self._cannot_pair("a claim (it reads other tests' measurements)")


def collect_plan(tree, pytest_args: list[str], out: Path) -> Plan:
    """Run `tree`'s pytest in plan mode with `pytest_args`; its Plan. UsageError naming the side when
    its pytest cannot run or the arguments are not understood."""
    argv = [tree.python, "-m", "pytest", *pytest_args, f"--perf-ab-plan={out}", "-q", "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(
            argv, cwd=tree.root, env=tree.env(), capture_output=True, text=True, timeout=PLAN_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise UsageError(f"--{tree.side}-python {tree.python}: no such interpreter") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"{tree.side}: collecting its perf tests took more than {PLAN_TIMEOUT_S} s") from None
    # 0: tests ran (skipped once planned); 5: none selected, reported below from the empty plan.
    if done.returncode not in (0, 5) or not out.exists():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        if "No module named pytest" in tail or "No module named 'perfsuite" in tail:
            raise UsageError(
                f"--{tree.side}-python {tree.python}: its environment lacks pytest or perfsuite's dependencies "
                f"(install perfsuite there: pip install -e '.[dev]'):\n{tail}"
            )
        raise UsageError(
            f"{tree.describe()}: its pytest could not plan the perf tests (exit {done.returncode}):\n{tail}"
        )
    return Plan.from_dict(jsonfile.load(out, "plan file", UsageError))
