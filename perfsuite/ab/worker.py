"""One side's server owner in an A/B run: `python -m perfsuite.ab.worker`, run by the side's interpreter
in the side's tree, so that its framework plugins and installed framework versions start its servers.

It speaks JSON lines: one command a line on stdin, one reply a line on stdout (anything else the
plugins print goes to stderr). Commands:

  {"cmd": "check", "framework": F}                    -> {"ok": true, "unavailable": reason|null, "version": V}
  {"cmd": "start", "framework": F, "engine": {...}, "model": M, "profile": P, "log_dir": D, "start_timeout_s": S}
                                                      -> {"ok": true, "server": {...}}  (reused when the same)
  {"cmd": "pause"} / {"cmd": "resume"}                -> {"ok": true}   the server's process tree SIGSTOP/SIGCONT
  {"cmd": "stop"}                                     -> {"ok": true}   the server stopped (switching by restart)
  {"cmd": "alive"}                                    -> {"ok": true} or {"ok": false, "error": (with the log's tail)}
  {"cmd": "exit"}                                     -> stops the server and exits

End of input (the coordinator died or closed it) stops the server too: nothing outlives the run.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path

from perfsuite.errors import PerfsuiteError
from perfsuite.frameworks import ENTRY_POINT_GROUP, EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.server import die_with_parent, pause_tree, resume_tree
from perfsuite.session import ServerPool

APIS = ("completions", "chat")


def describe_protocol(protocol) -> dict:
    """A protocol object as its class and constructor arguments (read back from its attributes), so
    that the coordinator builds the same one from its own code."""
    cls = type(protocol)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return {"module": cls.__module__, "name": cls.__qualname__, "kwargs": {p: getattr(protocol, p) for p in params}}


def describe(server) -> dict:
    """What the coordinator needs of a running server to measure it."""
    return {
        "framework": server.framework,
        "version": server.version,
        "engine": server.settings.to_dict(),
        "endpoint": asdict(server.endpoint),
        "metrics_url": server.metrics_url,
        "metric_names": asdict(server.metric_names),
        "notes": list(server.notes),
        "client_cpus": sorted(server.client_cpus) if server.client_cpus else None,
        "pid": server.process.pid,
        "protocols": {api: describe_protocol(server.protocol(api)) for api in APIS},
    }


class Worker:
    def __init__(self) -> None:
        self.frameworks: dict = {}  # loaded on first use, one by one: another plugin's import error is not ours
        self.pool: ServerPool | None = None
        self.paused: list = []

    def handle(self, cmd: dict) -> dict:
        what = cmd.get("cmd")
        if what == "check":
            try:
                plugin = self._plugin(cmd["framework"])
            except PerfsuiteError as exc:
                return {"ok": True, "unavailable": str(exc), "version": "unknown"}
            return {"ok": True, "unavailable": plugin.unavailable(), "version": plugin.version()}
        if what == "start":
            plugin = self._plugin(cmd["framework"])
            if self.pool is None or self.pool.log_dir != Path(cmd["log_dir"]):
                self._stop()
                self.pool = ServerPool(resolve_profile(cmd["profile"]), Path(cmd["log_dir"]), cmd["start_timeout_s"])
            self._resume()
            server = self.pool.get(plugin, cmd["model"], EngineSettings.from_kwargs(**cmd["engine"]))
            return {"ok": True, "server": describe(server)}
        if what == "stop":
            self._resume()
            if self.pool is not None:
                self.pool.__exit__(None, None, None)  # the pool stays, empty: the next start makes a server
            return {"ok": True}
        if what == "pause":
            self.paused = pause_tree(self._server().process.tree())
            return {"ok": True}
        if what == "resume":
            self._resume()
            return {"ok": True}
        if what == "alive":
            self._server().process.check_alive(cmd.get("during", "the run"))  # ServerError with the log's tail
            return {"ok": True}
        raise PerfsuiteError(f"unknown command {what!r}")

    def _plugin(self, name: str):
        """The plugin `name` from this environment's entry points, loaded alone: another plugin that does
        not import here (one added on the other side) is not this side's problem."""
        if name not in self.frameworks:
            found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
            if not found:
                raise PerfsuiteError(f"framework {name!r} has no plugin installed in this environment")
            try:
                plugin = found[0].load()
            except Exception as exc:  # any import failure means: not available here
                raise PerfsuiteError(
                    f"framework {name!r}: its plugin {found[0].value} cannot be loaded: {exc}"
                ) from exc
            self.frameworks[name] = plugin() if isinstance(plugin, type) else plugin
        return self.frameworks[name]

    def _server(self):
        if self.pool is None or self.pool.server is None:
            raise PerfsuiteError("no server is running")
        return self.pool.server

    def _resume(self) -> None:
        resume_tree(self.paused)
        self.paused = []

    def _stop(self) -> None:
        self._resume()
        if self.pool is not None:
            self.pool.__exit__(None, None, None)
            self.pool = None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    die_with_parent()  # the coordinator's death ends this worker, and so (PR_SET_PDEATHSIG) its servers
    # SIGTERM (the coordinator's death, a CI cancel) must run the cleanup below: a paused server ignores
    # the SIGTERM its own parent's death sends it until it is resumed.
    signal.signal(signal.SIGTERM, _interrupt)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # plugins' prints must not mix into the replies
    worker = Worker()
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("cmd") == "exit":
                break
            try:
                reply = worker.handle(cmd)
            except PerfsuiteError as exc:
                reply = {"ok": False, "error": str(exc)}
            replies.write(json.dumps(reply) + "\n")
    except KeyboardInterrupt:
        pass
    finally:
        worker._stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
