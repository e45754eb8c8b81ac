"""The framework plugin interface and its registry (entry-point group "perfsuite.frameworks").

A framework plugin says how its server starts and stops, how readiness is known, which protocol
the load generator speaks to it, where its metrics are and what they are called, and how the common
engine settings map onto its own options. Settings it cannot honour are reported, not dropped.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from perfsuite.errors import UsageError
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.server import ServerProcess
from perfsuite.telemetry import MetricNames

__all__ = ["EngineSettings", "RunningServer", "FrameworkPlugin", "load_frameworks", "ENTRY_POINT_GROUP"]

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


@dataclass
class RunningServer:
    """A framework's server, ready for load."""

    framework: str
    endpoint: Endpoint
    process: ServerProcess
    metrics_url: str | None
    metric_names: MetricNames
    notes: list[str] = field(default_factory=list)  # settings not honoured, and why
    settings: EngineSettings = field(default_factory=lambda: EngineSettings())
    version: str = ""
    client_cpus: set[int] | None = None  # cores the load generator should run on, where it matters

    def protocol(self, api: str):
        from perfsuite.loadgen import OpenAIProtocol

        return OpenAIProtocol(api)

    def stop(self) -> None:
        self.process.stop()


class FrameworkPlugin(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why this framework cannot run here (not installed, no Java...), or None."""

    def version(self) -> str: ...

    def start(
        self, model: str, settings: EngineSettings, profile: HardwareProfile, workdir: Path, start_timeout_s: float
    ) -> RunningServer: ...


def load_frameworks() -> dict[str, FrameworkPlugin]:
    """Every framework plugin installed, by name."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        found[ep.name] = plugin() if isinstance(plugin, type) else plugin
    return found


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a server: ours, minus nothing secret is added here, plus `extra`."""
    env = dict(os.environ)
    env.update(extra)
    return env
