"""The state of one perf run: settings, the server pool, measurements and verdicts.

The pytest plugin creates one PerfSession per pytest session; everything here works without pytest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfsuite.baseline import (
    Row,
    baseline_path,
    check_thresholds,
    compare,
    load_baseline,
    promote,
    successor,
)
from perfsuite.errors import BaselineError, MeasurementError, ServerError, UsageError
from perfsuite.frameworks import EngineSettings, FrameworkPlugin, RunningServer, load_frameworks
from perfsuite.hardware import HardwareProfile
from perfsuite.report import selection_matrix
from perfsuite.roofline import Bound, Device, check_within_bound, measurement_bound

__all__ = ["PerfOptions", "PerfSession", "ServerPool", "resolve_model", "judge"]


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
    """At most one server running at a time (the machine's cores and memory are shared), reused by
    every test that asks for the same framework, model and settings; all stopped at close()."""

    def __init__(self, profile: HardwareProfile, log_dir: Path, start_timeout_s: float) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.current: tuple | None = None
        self.server: RunningServer | None = None
        self.failed: dict[tuple, str] = {}
        self.before_start: Callable[[], object] | None = None  # run with no server up (the CPU probe)

    def get(self, plugin: FrameworkPlugin, model: str, settings: EngineSettings) -> RunningServer:
        key = (plugin.name, model, settings)
        if key in self.failed:
            raise ServerError(
                f"{plugin.name} failed to start earlier in this session with these settings:\n{self.failed[key]}"
            )
        if self.current == key and self.server is not None and self.server.process.alive():
            return self.server
        self.close()
        if self.before_start is not None:
            self.before_start()
        try:
            self.server = plugin.start(model, settings, self.profile, self.log_dir, self.start_timeout_s)
        except ServerError as exc:
            self.failed[key] = str(exc)
            raise
        self.server.settings, self.server.version = settings, plugin.version()
        self.current = key
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.current = None, None


def judge(measurement: dict, baseline: dict | None, thresholds: dict[str, str], strict: bool) -> tuple[str, list[Row]]:
    """The verdict of one measurement and the rows that explain it."""
    rows = check_thresholds(thresholds, measurement["metrics"]) if thresholds else []
    if baseline is None:
        verdict = "no baseline"
        failing = strict
    else:
        mismatch = _config_mismatch(baseline, measurement)
        if mismatch:
            measurement.setdefault("notes", []).append(f"baseline not comparable: {mismatch}")
            verdict, failing = "stale baseline", strict
        else:
            rows = compare(baseline, measurement["metrics"], repetitions=measurement.get("repetitions")) + rows
            failing = False
            verdict = "pass"
            if any(r.verdict == "improvement" for r in rows):
                verdict = "improved"
                measurement.setdefault("notes", []).append(
                    "better beyond tolerance: `perfsuite approve <results file>` makes it the baseline"
                )
            if any(r.verdict == "inconclusive" for r in rows):  # reported, not failed
                verdict = "inconclusive"
                measurement.setdefault("notes", []).extend(
                    f"{r.metric} inconclusive: {r.note}" for r in rows if r.verdict == "inconclusive"
                )
    if any(r.fails for r in rows):
        failing, verdict = True, "regression" if any(r.verdict in ("regression", "missing") for r in rows) else "breach"
    elif failing:
        verdict = f"{verdict} (strict)"
    measurement["verdict"] = verdict
    measurement["failed"] = failing
    measurement["comparison"] = [r.as_dict() for r in rows]
    return verdict, rows


def _config_mismatch(baseline: dict, measurement: dict) -> str:
    """What makes a baseline measure something else: another model, workload or load."""
    prov, now = baseline.get("provenance", {}), measurement.get("provenance", {})
    diffs = [
        f"{k} was {prov[k]!r}, now {now.get(k)!r}"
        for k in ("model", "workload", "load")
        if k in prov and prov[k] != now.get(k)
    ]
    return "; ".join(diffs)


@dataclass
class PerfSession:
    options: PerfOptions
    profile: HardwareProfile
    frameworks: dict[str, FrameworkPlugin] = field(default_factory=dict)
    measurements: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    unmeasured: dict[str, str] = field(default_factory=dict)  # framework -> why it could not run here
    device: Device | None = None  # the roofline's device: probed on the cpu profile, else from the catalog

    def __post_init__(self) -> None:
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
        log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="perfsuite-logs-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.pool = ServerPool(self.profile, log_dir, self.options.start_timeout_s)
        self.pool.before_start = self.roofline_device
        self._device_note: str | None = None
        self._model: str | None = None
        self._prompts = {}

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

    def baseline_file(self, test_id: str) -> Path:
        return baseline_path(self.options.baseline_dir, self.profile.name, test_id)

    def record(self, measurement: dict, thresholds: dict[str, str] | None = None) -> tuple[str, list[Row]]:
        """Judge a measurement against its baseline, keep it, and write the baseline if asked to."""
        path = self.baseline_file(measurement["test_id"])
        ungated = measurement.get("ungated")  # why this kind of measurement is reported, never gated
        baseline = None if ungated else load_baseline(path)
        self.check_bounds(measurement, baseline, path)
        verdict, rows = judge(measurement, baseline, thresholds or {}, self.options.strict and not ungated)
        self.measurements.append(measurement)
        if ungated:
            if not measurement["failed"]:
                measurement["verdict"] = "reported, not gated"
            measurement.setdefault("notes", []).append(f"not gated: {ungated}")
        elif self.options.update_baselines:
            if measurement["metrics"].get("error_rate", 0) > 0:
                measurement.setdefault("notes", []).append("baseline not written: some requests failed")
            else:
                doc = successor(measurement, baseline, self.profile.min_tolerance)
                self.written.append(promote(path, doc, baseline))
                measurement["failed"] = False
                measurement["verdict"] += " -> baseline written"
        return measurement["verdict"], rows

    def roofline_device(self, devices: int = 1) -> Device | None:
        """The device bounds are computed for: the catalog's figures for a GPU profile; on the cpu profile
        this machine's peaks, probed once, with no server up (the pool calls this before starting one)."""
        if self.device is not None or self._device_note is not None:
            return self.device
        if self.profile.kind != "cpu":
            try:
                return Device.from_profile(self.profile, devices)
            except ValueError as exc:
                self._device_note = f"no roofline bound: {exc}"
                return None
        if self.pool.server is not None:
            self.pool.close()  # its engine busy-polls a core: a probe now would read low
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

    def check_bounds(self, measurement: dict, baseline: dict | None, path: Path) -> None:
        """Store efficiency = measured req/s / bound in the measurement. Numbers above the bound are a
        measurement error: MeasurementError for the measurement, BaselineError (naming `path`) for its
        baseline; either way the measurement is kept, marked failed."""
        m = measurement["metrics"]
        bound = self.bound(measurement["workload"], measurement["load"], measurement.get("engine") or {}, m)
        problem = None
        if isinstance(bound, str):
            measurement.setdefault("notes", []).append(bound)
        else:
            if m.get("request_throughput") is not None and bound.requests_per_s > 0:
                m["efficiency"] = m["request_throughput"] / bound.requests_per_s
            devices = (measurement.get("engine") or {}).get("tensor_parallel_size") or 1
            measurement["roofline"] = {**asdict(bound), "device": self.roofline_device(devices).name}
            problem = check_within_bound(m, bound)
            if problem:
                measurement["verdict"] = "above bound"
        prov = (baseline or {}).get("provenance", {})
        if not problem and prov.get("model") == self.model_label and "workload" in prov and "load" in prov:
            old = self.bound(prov["workload"], prov["load"], prov.get("engine") or {}, {})
            if not isinstance(old, str):
                problem = check_within_bound(baseline["metrics"], old, what=f"{path}: refused: the baseline's")
                if problem:
                    problem += " Fix the file, or delete it and rerun with --perf-update-baselines."
                    measurement["verdict"] = "baseline refused"
        if problem:
            measurement["failed"] = True
            self.measurements.append(measurement)
            raise (BaselineError if measurement["verdict"] == "baseline refused" else MeasurementError)(problem)

    def results(self) -> dict:
        return {
            "schema": 1,
            "profile": self.profile.name,
            "measurements": self.measurements,
            "matrix": selection_matrix(self.measurements, self.unmeasured),
            "unmeasured": self.unmeasured,
            "claims": self.claims,
        }

    def write_results(self) -> Path | None:
        if not self.options.results:
            return None
        path = Path(self.options.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.results(), indent=2, default=str))
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        self.pool.close()
