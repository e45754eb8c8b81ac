"""The state of one perf run: settings, the server pool, measurements and verdicts.

The pytest plugin creates one PerfSession per pytest session; everything here works without pytest.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
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
from perfsuite.errors import ServerError, UsageError
from perfsuite.frameworks import EngineSettings, FrameworkPlugin, RunningServer, load_frameworks
from perfsuite.hardware import HardwareProfile
from perfsuite.report import selection_matrix

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
    report_dir: Path | None = None  # --perf-report: write perf-report.md and perf-report.html there
    prices: Path | None = None  # --perf-prices: the user's prices laid over the catalogs (report and calculator)
    budget_s: float | None = None  # --perf-budget-s: add repetitions until precise, within this time


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

    def get(self, plugin: FrameworkPlugin, model: str, settings: EngineSettings) -> RunningServer:
        key = (plugin.name, model, settings)
        if key in self.failed:
            raise ServerError(
                f"{plugin.name} failed to start earlier in this session with these settings:\n{self.failed[key]}"
            )
        if self.current == key and self.server is not None and self.server.process.alive():
            return self.server
        self.close()
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

    def __post_init__(self) -> None:
        if not self.frameworks:
            self.frameworks = load_frameworks()
        if self.options.frameworks:
            unknown = [f for f in self.options.frameworks if f not in self.frameworks]
            if unknown:
                raise UsageError(
                    f"--frameworks: unknown {', '.join(unknown)}; installed: {', '.join(sorted(self.frameworks))}"
                )
            for name in self.options.frameworks:  # asked for by name: must be able to run
                reason = self.frameworks[name].unavailable()
                if reason:
                    raise UsageError(f"--frameworks={name}: {reason}")
        log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="perfsuite-logs-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.pool = ServerPool(self.profile, log_dir, self.options.start_timeout_s)
        self._model: str | None = None
        self._prompts = {}

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
        baseline = load_baseline(path)
        verdict, rows = judge(measurement, baseline, thresholds or {}, self.options.strict)
        self.measurements.append(measurement)
        if self.options.update_baselines:
            if measurement["metrics"].get("error_rate", 0) > 0:
                measurement.setdefault("notes", []).append("baseline not written: some requests failed")
            else:
                doc = successor(measurement, baseline, self.profile.min_tolerance)
                self.written.append(promote(path, doc, baseline))
                measurement["failed"] = False
                measurement["verdict"] += " -> baseline written"
        return measurement["verdict"], rows

    def results(self) -> dict:
        return {
            "schema": 1,
            "profile": self.profile.name,
            "measurements": self.measurements,
            "matrix": selection_matrix(self.measurements),
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
