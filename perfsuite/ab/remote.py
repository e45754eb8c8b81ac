"""The coordinator's end of a side's worker (perfsuite.ab.worker): commands with deadlines, and the
servers it started as Targets that this process's load generator measures."""

from __future__ import annotations

import contextlib
import importlib
import json
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from perfsuite.errors import ServerError, UsageError
from perfsuite.frameworks import EngineSettings
from perfsuite.loadgen import Endpoint
from perfsuite.runner import Target, TelemetrySources
from perfsuite.server import die_with_parent, resume_tree
from perfsuite.telemetry import MetricNames

__all__ = ["Side", "RemoteServer"]

COMMAND_TIMEOUT_S = 60  # pause, resume, alive, check: a worker that takes longer is stuck
PROTOCOL_MODULES = ("perfsuite.", "perfsuite_plugins.")  # where a protocol class may be imported from


def _protocol(desc: dict):
    """The protocol a worker described, built from this process's own code."""
    module = desc["module"]
    if not module.startswith(PROTOCOL_MODULES):
        raise ServerError(f"protocol class {module}.{desc['name']} is not perfsuite's or a perfsuite plugin's")
    try:  # this process's code (head's load generator) builds it: a side whose protocol differs is named
        cls = getattr(importlib.import_module(module), desc["name"])
        return cls(**desc["kwargs"])
    except (ImportError, AttributeError, TypeError) as exc:
        raise ServerError(
            f"the load generator cannot speak {module}.{desc['name']} as that side describes it: {exc}"
        ) from exc


@dataclass(frozen=True)
class RemoteServer:
    """A server a side's worker started: what a RunningServer tells the runner, from its description."""

    side: Side
    framework: str
    version: str
    settings: EngineSettings
    endpoint: Endpoint
    metrics_url: str | None
    metric_names: MetricNames
    notes: tuple[str, ...]
    client_cpus: frozenset[int] | None
    pid: int
    protocols: dict

    @classmethod
    def from_description(cls, side: Side, d: dict) -> RemoteServer:
        return cls(
            side=side,
            framework=d["framework"],
            version=d["version"],
            settings=EngineSettings.from_kwargs(**d["engine"]),
            endpoint=Endpoint(**d["endpoint"]),
            metrics_url=d["metrics_url"],
            metric_names=MetricNames(**d["metric_names"]),
            notes=tuple(d["notes"]),
            client_cpus=frozenset(d["client_cpus"]) if d["client_cpus"] else None,
            pid=d["pid"],
            protocols=d["protocols"],
        )

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def target(self, api: str) -> Target:
        return Target(
            endpoint=self.endpoint,
            protocol=_protocol(self.protocols[api]),
            telemetry=TelemetrySources(self.tree, self.metrics_url, self.metric_names),
            check_alive=self.side.check_alive,
            client_cpus=self.client_cpus,
        )


class Side:
    """One side's worker process: started on first use, in the side's tree, with the side's interpreter."""

    def __init__(self, tree, log_dir: Path, start_timeout_s: float) -> None:
        self.tree = tree
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.server: RemoteServer | None = None
        self.starts_s: list[float] = []  # how long each server start took (the cost of a switch by restart)

    @property
    def name(self) -> str:
        return self.tree.side

    def _spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{self.name}-worker.log", "ab") as err:
            self.proc = subprocess.Popen(
                [self.tree.python, "-m", "perfsuite.ab.worker"],
                cwd=self.tree.root,
                env=self.tree.env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=die_with_parent,
            )

    def call(self, cmd: dict, timeout_s: float = COMMAND_TIMEOUT_S) -> dict:
        """Send one command; its reply. ServerError when the worker errs, dies or misses the deadline."""
        if self.proc is None:
            self._spawn()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ServerError(f"{self.name}'s worker has exited ({self._worker_log()})") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else b""  # replies are whole lines, flushed at once
        if not line:
            why = "did not answer in time" if not ready else "exited"
            log = self._worker_log()
            self.close()  # a late reply would answer the next command: this worker is not used again
            raise ServerError(f"{self.name}'s worker {why} on {cmd['cmd']!r} ({log})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ServerError(f"{self.name}: {reply.get('error')}")
        return reply

    def _worker_log(self) -> str:
        path = self.log_dir / f"{self.name}-worker.log"
        with contextlib.suppress(OSError):
            tail = path.read_text(errors="replace").strip().splitlines()[-8:]
            if tail:
                return "its log ends: " + " | ".join(tail)
        return f"log: {path}"

    def check(self, framework: str) -> tuple[str | None, str]:
        """(why `framework` cannot run on this side, or None; its version there)."""
        try:
            reply = self.call({"cmd": "check", "framework": framework})
        except ServerError as exc:
            if self.proc is not None and self.proc.poll() is not None:
                raise UsageError(
                    f"--{self.name}-python {self.tree.python}: perfsuite's worker cannot run in that environment "
                    f"({exc}); install perfsuite there (pip install -e '.[dev]')"
                ) from None
            return str(exc), "unknown"
        return reply["unavailable"], reply["version"]

    def start(self, framework: str, settings: EngineSettings, model: str, profile: str) -> RemoteServer:
        """This side's server for `framework` with `settings`, started or reused, and left paused. The
        server this side already runs with these settings is reused without asking the worker again (its
        liveness is checked after every repetition)."""
        if self.server is not None and (self.server.framework, self.server.settings) == (framework, settings):
            return self.server
        t = time.monotonic()
        reply = self.call(
            {
                "cmd": "start",
                "framework": framework,
                "engine": settings.to_dict(),
                "model": model,
                "profile": profile,
                "log_dir": str(self.log_dir / self.name),
                "start_timeout_s": self.start_timeout_s,
            },
            timeout_s=self.start_timeout_s + 120,
        )
        server = RemoteServer.from_description(self, reply["server"])
        if self.server is None or server.pid != self.server.pid:
            self.starts_s.append(time.monotonic() - t)
        self.server = server
        self.pause()
        return server

    def stop_server(self) -> None:
        """Stop this side's server, if it runs (the worker stays for the next start)."""
        if self.server is not None:
            self.call({"cmd": "stop"}, timeout_s=120)
            self.server = None

    def pause(self) -> None:
        self.call({"cmd": "pause"})

    def resume(self) -> None:
        self.call({"cmd": "resume"})

    def check_alive(self, during: str = "the run") -> None:
        self.call({"cmd": "alive", "during": during})

    def close(self) -> None:
        """Stop the worker and, through it, its server: exit, then SIGTERM (the worker stops its servers
        on it), then SIGKILL; then whatever of the server is left (a worker that died while its server
        was paused leaves it stopped for ever: a paused process ignores SIGTERM) is resumed and ended."""
        if self.proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.proc.stdin.write(b'{"cmd": "exit"}\n')
            self.proc.stdin.close()
        for sig, wait_s in ((None, 90), (signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.server is not None:
            left = self.server.tree()
            resume_tree(left)
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(left, timeout=10)
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdout.close()
        self.proc, self.server = None, None
