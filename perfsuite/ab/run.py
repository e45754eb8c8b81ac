"""`perfsuite ab`: base and head measured side by side on this machine, in one run, by one load generator.

1. Trees: base at a git ref (a temporary worktree), head the working tree or another ref (ab.trees).
2. Plans: each tree's own pytest says what its selected perf tests measure, starting nothing (ab.plan).
3. Servers: a worker per side, run by that side's interpreter in that side's tree, starts its servers
   (ab.worker). Switching "pause" (the cpu profile's default): both sides' servers stay up, the one not
   being measured paused (SIGSTOP), since an idle vLLM CPU server otherwise keeps ~19% of a core busy.
   Switching "restart" (GPU profiles' default: one server takes most of the GPU's memory): one side's
   server is stopped before the other's starts. A server is reused while the settings stay.
4. Pairs: for each test both sides get one repetition per pair, with the pair's prompt seed, in ABBA
   order (ab.pairs), measured by this process's load generator (perfsuite.runner). A new server first
   gets one repetition that is discarded: measured, vLLM on the CPU sped up by 20-50% over its first
   repetitions after a start (kernels built for each new batch shape).
5. Verdict: from the paired differences (ab.pairs.judge_pairs); exit 1 when a test regressed or failed.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from perfsuite.ab.pairs import abba, judge_pairs
from perfsuite.ab.plan import Plan, PlannedMeasurement, collect_plan
from perfsuite.ab.remote import RemoteServer, Side
from perfsuite.ab.trees import Tree, Trees
from perfsuite.errors import PerfsuiteError, UsageError
from perfsuite.fingerprint import this_machine
from perfsuite.hardware import HardwareProfile, resolve_profile
from perfsuite.jsonfile import write_atomic
from perfsuite.measurement import Measurement
from perfsuite.report import selection_matrix
from perfsuite.runner import Run, provenance
from perfsuite.runner import run as run_repetitions
from perfsuite.session import resolve_model
from perfsuite.verdict import Judgement, Verdict

__all__ = ["AbOptions", "AbReport", "PairedTest", "run_ab"]

SIDES = ("base", "head")


@dataclass(frozen=True)
class AbOptions:
    base: str
    head: str | None = None
    base_python: str = sys.executable
    head_python: str = sys.executable
    pairs: int = 3
    pytest_args: tuple[str, ...] = ()
    results: Path | None = None
    repo: Path = Path(".")
    model: str | None = None
    log_dir: Path | None = None
    start_timeout_s: float = 600.0
    switch: str | None = None  # "pause" or "restart"; None: pause on the cpu profile, restart on GPUs
    min_repetition_s: float = 0.0  # lengthen every repetition (both sides alike) to about this many seconds


@dataclass(frozen=True)
class PairedTest:
    """One test's outcome: both sides' measurements (their repetitions are the pairs) and the verdict."""

    test_id: str
    verdict: Verdict
    judgement: Judgement | None = None
    base: Measurement | None = None
    head: Measurement | None = None
    why: str = ""  # why it was not compared

    @property
    def fails(self) -> bool:
        return bool(self.judgement and self.judgement.fails)

    def to_dict(self) -> dict:
        return {
            "test_id": self.test_id,
            "verdict": self.verdict.value,
            "fails": self.fails,
            "why": self.why,
            "notes": list(self.judgement.notes) if self.judgement else [],
            "rows": [r.as_dict() for r in self.judgement.rows] if self.judgement else [],
            "base": self.base.to_dict() if self.base else None,
            "head": self.head.to_dict() if self.head else None,
        }


@dataclass
class AbReport:
    trees: dict[str, Tree]
    profile: HardwareProfile
    pairs: int
    tests: list[PairedTest] = field(default_factory=list)
    switch: str = "pause"
    switch_ms: list[float] = field(default_factory=list)  # resume + pause around each repetition
    starts_s: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if any(t.fails for t in self.tests) else 0

    def notes(self) -> list[str]:
        out = [t.describe() for t in self.trees.values()]
        out.append(
            f"order: ABBA over {self.pairs} pairs (base, head, head, base, ...); one load generator; "
            f"sides switched by {self.switch}"
        )
        if self.switch_ms:
            ms = sorted(self.switch_ms)
            out.append(
                f"switching sides: pause/resume {ms[len(ms) // 2]:.1f} ms median, {ms[-1]:.1f} ms max; server starts "
                + ", ".join(f"{s} {sum(v):.0f} s ({len(v)})" for s, v in self.starts_s.items() if v)
            )
        return out

    def to_dict(self) -> dict:
        heads = [t.head.to_dict() for t in self.tests if t.head is not None and t.judgement is not None]
        return {
            "schema": 1,
            "mode": "ab",
            "profile": self.profile.name,
            "hardware": this_machine().to_dict(),
            "ab": {
                **{side: tree.to_dict() for side, tree in self.trees.items()},
                "pairs": self.pairs,
                "order": "ABBA",
                "switch": self.switch,
                "switch_ms": [round(x, 2) for x in self.switch_ms],
                "starts_s": {s: [round(x, 1) for x in v] for s, v in self.starts_s.items()},
                "wall_s": round(self.wall_s, 1),
                "notes": self.notes(),
            },
            "tests": [t.to_dict() for t in self.tests],
            # Head's measurements, judged against base: `perfsuite report` and `approve` read these.
            "measurements": heads,
            "matrix": selection_matrix(heads, {}),
            "unmeasured": {},
            "claims": [],
        }


def _by_test(plan: Plan) -> dict[str, PlannedMeasurement]:
    return {m.test_id: m for m in plan.measurements}


class _Pairing:
    """The run's state: trees, sides, the model and prompts both sides are given."""

    def __init__(self, opts: AbOptions, trees: dict[str, Tree], profile: HardwareProfile, log_dir: Path) -> None:
        self.opts = opts
        self.trees = trees
        self.profile = profile
        self.sides = {s: Side(trees[s], log_dir, opts.start_timeout_s) for s in SIDES}
        self.model = resolve_model(opts.model)
        self.model_label = Path(self.model).name if Path(self.model).exists() else self.model
        self._available: dict[tuple[str, str], tuple[str | None, str]] = {}
        self._prompts = None
        self.switch_ms: list[float] = []
        self.warmed: set[int] = set()  # servers (pids) that had their warm-up repetition
        # The warm-up's prompt seed offset: one no pair uses (seeds are taken as their absolute value).
        self.warmup_pair = opts.pairs
        self.warmup_s: dict[str, float] = {}  # each side's last warm-up repetition's measured seconds
        self.scaled: dict[str, float] = {}  # test id -> the factor --min-repetition-s scaled its load by
        # Both sides' servers up at once (the idle one paused) where both fit: the CPU profile's servers
        # do; a GPU server takes most of the GPU's memory, so there one side's is stopped for the other's.
        self.switch = opts.switch or ("pause" if profile.kind == "cpu" else "restart")

    @property
    def prompts(self):
        if self._prompts is None:
            from transformers import AutoTokenizer

            from perfsuite.model import corpus_text
            from perfsuite.workloads import PromptBuilder

            self._prompts = PromptBuilder(AutoTokenizer.from_pretrained(self.model), corpus_text(), 0)
        return self._prompts

    def unavailable(self, framework: str) -> str | None:
        """Why `framework` cannot run on both sides (None: it can). A framework that runs on one side
        only is an environment mistake (--base-python / --head-python), not a result."""
        found = {}
        for side in SIDES:
            if (side, framework) not in self._available:
                self._available[side, framework] = self.sides[side].check(framework)
            found[side] = self._available[side, framework][0]
        if found["base"] and found["head"]:
            return found["head"]
        for side in SIDES:
            if found[side]:
                raise UsageError(
                    f"--{side}-python {self.trees[side].python}: {framework} cannot run there ({found[side]}); "
                    f"install it in that environment, or leave {framework} out (--frameworks)"
                )
        return None

    def pair(self, planned: dict[str, PlannedMeasurement]) -> PairedTest:
        test_id = planned["head"].test_id
        framework = planned["head"].framework
        if framework != planned["base"].framework:
            return PairedTest(test_id, Verdict.NOT_PAIRED, why="base and head measure different frameworks")
        if reason := self.unavailable(framework):
            return PairedTest(test_id, Verdict.NOT_PAIRED, why=f"{framework} cannot run here: {reason}")
        servers: dict[str, RemoteServer] = {}
        # Pausing: both up and warmed before pair 0. Restarting: base (pair 0 runs it first), so that
        # its warm-up can size the repetitions.
        for side in SIDES if self.switch == "pause" else ("base",):
            servers[side] = self._ready(side, planned[side])
        if self.opts.min_repetition_s:  # sized from this test's own load on both sides, not an earlier test's
            for side in SIDES:
                servers[side] = self._ready(side, planned[side])
                timed = self._repetition(self.sides[side], servers[side], planned[side], self.warmup_pair)
                self.warmup_s[side] = timed.repetitions[0].get("duration_s", 0.0)
        planned = self._lengthened(planned)
        runs: dict[str, list[Run]] = {s: [] for s in SIDES}
        for i, side in abba(self.opts.pairs):
            servers[side] = self._ready(side, planned[side])
            runs[side].append(self._repetition(self.sides[side], servers[side], planned[side], i))
        m = {
            side: self._measurement(planned[side], self.trees[side], servers[side], Run.joined(runs[side], "pairs"))
            for side in SIDES
        }
        judgement = judge_pairs(m["base"], m["head"], planned["head"].thresholds)
        if test_id in self.scaled:
            note = f"repetitions lengthened x{self.scaled[test_id]:.2f} on both sides (--min-repetition-s)"
            judgement = replace(judgement, notes=(*judgement.notes, note))
        return PairedTest(test_id, judgement.verdict, judgement, m["base"], m["head"].judged(judgement))

    def _ready(self, side: str, pm: PlannedMeasurement) -> RemoteServer:
        """`side`'s server for `pm`, up (reused when it runs with these settings), paused and warmed. When
        switching by restart, the other side's server is stopped first: only one is up at a time."""
        if self.switch == "restart":
            self.sides[_other(side)].stop_server()
        server = self.sides[side].start(pm.framework, pm.settings(), self.model, self.profile.name)
        if server.pid not in self.warmed:  # a new server is slow for its first repetitions: one is discarded
            warmup = self._repetition(self.sides[side], server, pm, self.warmup_pair)
            self.warmed.add(server.pid)
            self.warmup_s[side] = warmup.repetitions[0].get("duration_s", 0.0)
        return server

    def _lengthened(self, planned: dict[str, PlannedMeasurement]) -> dict[str, PlannedMeasurement]:
        """With --min-repetition-s, both sides' loads with their request count scaled by one factor, so that
        the slower side's warm-up repetition would have lasted that long: measured on this 2-core machine,
        48-request repetitions of vLLM's throughput test vary by 13% (CV), 192-request ones by 5%."""
        slowest = max((self.warmup_s.get(s, 0.0) for s in SIDES), default=0.0)
        if not self.opts.min_repetition_s or not slowest or slowest >= self.opts.min_repetition_s:
            return planned
        factor = self.opts.min_repetition_s / slowest
        out = {}
        for side, pm in planned.items():
            if not pm.load.get("requests"):  # a duration-bound load: its duration is scaled instead
                load = {**pm.load, "duration_s": pm.load["duration_s"] * factor}
            else:
                load = {**pm.load, "requests": math.ceil(pm.load["requests"] * factor)}
            out[side] = replace(pm, load=load)
        self.scaled[planned["head"].test_id] = factor
        return out

    def _repetition(self, side: Side, server: RemoteServer, pm: PlannedMeasurement, pair: int) -> Run:
        """One repetition of `pm` on `side`'s server with pair `pair`'s prompt seed, the server resumed
        for it and paused after."""
        wl, load = pm.make_workload(), pm.make_load()
        t = time.monotonic()
        side.resume()
        resumed = time.monotonic() - t
        try:
            run = run_repetitions(
                server.target(wl.api),
                wl,
                replace(load, seed=load.seed + pair),
                self.prompts,
                self.profile,
                devices=server.settings.tensor_parallel_size,
                repetitions=1,
                slo=pm.make_slo(),
            )
        except BaseException:
            with contextlib.suppress(PerfsuiteError):  # the error in flight (or Ctrl-C) is the one to report
                side.pause()
            raise
        t = time.monotonic()
        side.pause()
        self.switch_ms.append((resumed + time.monotonic() - t) * 1e3)
        return run

    def _measurement(self, pm: PlannedMeasurement, tree: Tree, server: RemoteServer, run: Run) -> Measurement:
        engine = server.settings.to_dict()
        price = self.profile.price_per_hour * server.settings.tensor_parallel_size
        source = f"{self.profile.price_source} ({self.profile.price_date})"
        identity = dict(
            framework=server.framework,
            framework_version=server.version,
            model=self.model_label,
            workload=pm.workload,
            load=pm.load,
            engine=engine,
            price_per_hour=price,
            price_source=source,
        )
        commit = tree.commit + ("+dirty" if tree.dirty else "")
        return Measurement(
            test_id=pm.test_id,
            profile=self.profile.name,
            device_kind=self.profile.kind,
            provenance=provenance(**identity, git_commit=commit, ab_side=tree.side),
            slo=pm.slo,
            allowed_error_rate=pm.max_error_rate,
            server_notes=server.notes,
            **identity,
            **run.measurement_fields(),
        )

    def close(self) -> None:
        for side in self.sides.values():
            side.close()


def _other(side: str) -> str:
    return "head" if side == "base" else "base"


def _test_order(plans: dict[str, Plan]) -> list[str]:
    order = [m.test_id for m in plans["head"].measurements]
    order += [m.test_id for m in plans["base"].measurements if m.test_id not in order]
    return order


def run_ab(opts: AbOptions, say=print) -> AbReport:
    """Measure base against head; the report (its exit_code is the command's)."""
    if opts.pairs < 2:
        raise UsageError(f"--pairs {opts.pairs}: at least 2 pairs are needed for an interval (3 is the default)")
    started = time.monotonic()
    with Trees(opts.repo, opts.base, opts.head, opts.base_python, opts.head_python) as (base, head):
        trees = {"base": base, "head": head}
        for tree in trees.values():
            say(f"perfsuite ab: {tree.describe()}")
        work = Path(tempfile.mkdtemp(prefix="perfsuite-ab-plans-"))
        try:
            plans = {s: collect_plan(trees[s], list(opts.pytest_args), work / f"{s}-plan.json") for s in SIDES}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not any(p.measurements or p.not_compared for p in plans.values()):
            raise UsageError(
                f"pytest arguments {' '.join(opts.pytest_args) or '(none)'} select no perf test on either side; "
                "select tests that use the perf fixture, e.g. tests/perf -k throughput"
            )
        if plans["base"].profile != plans["head"].profile:
            raise UsageError(f"base plans profile {plans['base'].profile}, head {plans['head'].profile}")
        profile = resolve_profile(plans["head"].profile)
        report = AbReport(trees, profile, opts.pairs)
        log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="perfsuite-ab-logs-"))
        try:
            pairing = _Pairing(opts, trees, profile, log_dir)
        except BaseException:
            if opts.log_dir is None:
                shutil.rmtree(log_dir, ignore_errors=True)
            raise
        by_side = {s: _by_test(plans[s]) for s in SIDES}
        try:
            # Every framework either side will measure: one that runs on one side only is refused now,
            # before any server starts, not when its first test comes.
            for framework in sorted({m.framework for p in plans.values() for m in p.measurements}):
                pairing.unavailable(framework)
            for test_id in _test_order(plans):
                if test_id not in by_side["base"]:
                    report.tests.append(PairedTest(test_id, Verdict.ONLY_IN_HEAD, why="new in head: nothing to pair"))
                    continue
                if test_id not in by_side["head"]:
                    report.tests.append(
                        PairedTest(test_id, Verdict.ONLY_IN_BASE, why="not in head (removed or deselected)")
                    )
                    continue
                say(f"perfsuite ab: {test_id}: {opts.pairs} pairs")
                try:
                    report.tests.append(pairing.pair({s: by_side[s][test_id] for s in SIDES}))
                except UsageError:
                    raise
                except PerfsuiteError as exc:
                    report.tests.append(
                        PairedTest(test_id, Verdict.ERRORS, Judgement(Verdict.ERRORS, True, notes=(str(exc),)))
                    )
            for test_id, why in {**plans["base"].not_compared, **plans["head"].not_compared}.items():
                report.tests.append(PairedTest(test_id, Verdict.NOT_PAIRED, why=why))
        finally:
            pairing.close()
            report.switch, report.switch_ms = pairing.switch, pairing.switch_ms
            report.starts_s = {s: pairing.sides[s].starts_s for s in SIDES}
            # Logs are kept where they explain something: a server or measurement error (not a regression).
            if opts.log_dir is None and any(t.verdict is Verdict.ERRORS for t in report.tests):
                say(f"perfsuite ab: server logs kept in {log_dir} (a measurement failed)")
            elif opts.log_dir is None:
                shutil.rmtree(log_dir, ignore_errors=True)
        report.wall_s = time.monotonic() - started
        if opts.results:
            write_atomic(opts.results, report.to_dict())
        return report
