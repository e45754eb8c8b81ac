"""One load-generator worker: a share of a load (perfsuite.partition) sent from its own event loop.

LoadWorker is the worker itself, the same in a local process (`python -m perfsuite.worker`, driven by
perfsuite.workers over JSON lines on stdin/stdout) and in a Ray actor (perfsuite.ray_workers). The
coordinator calls, in order: `prepare(job)` (build the share's requests and protocol, open the HTTP
client, send the warm-up), `clock()` a few times (its offset is measured from the round trips),
`run(start_at)` (wait for the shared start instant, on this worker's own clock, then send the measured
share; the records come back whole, their times relative to the start), `close()`.

Nothing crosses a process but JSON: the job names the protocol's class and its plain fields, and the
records are plain numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, fields

from perfsuite import eventloop
from perfsuite.errors import UsageError
from perfsuite.loadgen import Endpoint, Load, RequestRecord, client_session, measured_phase, warm_up
from perfsuite.partition import Share
from perfsuite.protocols import StreamProtocol

__all__ = ["LoadWorker", "protocol_to_dict", "protocol_from_dict", "record_to_dict", "record_from_dict"]

_PLAIN = (str, int, float, bool, type(None))
_TIMES = ("send", "scheduled", "first_token", "end", "first_answer")


def protocol_to_dict(protocol: StreamProtocol) -> dict:
    """The protocol as its class's import path and its plain fields (every protocol perfsuite ships)."""
    state = vars(protocol)
    odd = [k for k, v in state.items() if not isinstance(v, _PLAIN)]
    if odd:
        raise UsageError(
            f"{type(protocol).__qualname__} cannot be sent to a load-generator worker: its fields {odd} are not "
            "plain values (str, int, float, bool); use workers=1 for it"
        )
    return {"module": type(protocol).__module__, "class": type(protocol).__qualname__, "state": dict(state)}


def protocol_from_dict(d: dict) -> StreamProtocol:
    cls = getattr(importlib.import_module(d["module"]), d["class"])
    protocol = cls.__new__(cls)
    protocol.__dict__.update(d["state"])
    if not isinstance(protocol, StreamProtocol):
        raise UsageError(f"{d['module']}.{d['class']} is not a stream protocol (perfsuite.protocols.StreamProtocol)")
    return protocol


def record_to_dict(rec: RequestRecord, start: float) -> dict:
    """A record with its times relative to the phase's start (each worker's clock is its own)."""
    d = asdict(rec)
    for key in _TIMES:
        if d[key] is not None:
            d[key] -= start
    d["chunk_times"] = [t - start for t in rec.chunk_times]
    return d


def record_from_dict(d: dict, start: float) -> RequestRecord:
    """The record on the coordinator's clock, whose phase started at `start`."""
    d = {f.name: d[f.name] for f in fields(RequestRecord) if f.name in d}
    for key in _TIMES:
        if d.get(key) is not None:
            d[key] += start
    d["chunk_times"] = [t + start for t in d.get("chunk_times", ())]
    return RequestRecord(**d)


class LoadWorker:
    """A share of a load, from this process's event loop (see the module's docstring for the calls)."""

    def __init__(self) -> None:
        self._session = None
        self._job: tuple | None = None

    def clock(self) -> float:
        return time.time()

    async def prepare(self, job: dict) -> dict:
        """Build the job's share and send its warm-up. `job`: endpoint, protocol, load, share, headers."""
        endpoint = Endpoint(**job["endpoint"])
        protocol = protocol_from_dict(job["protocol"])
        load = Load.from_dict(job["load"])
        share = Share.from_dict(job["share"])
        if self._session is None:
            self._session = client_session(endpoint, job.get("headers"))
        self._job = (endpoint, protocol, load, share)
        await warm_up(self._session, endpoint, protocol, share, load)
        return {"pid": os.getpid(), "host": socket.gethostname(), "cores": len(os.sched_getaffinity(0))}

    async def run(self, start_at: float) -> dict:
        """The measured share, from `start_at` (time.time() on this worker's clock)."""
        if self._job is None:
            raise RuntimeError("run() before prepare(): the coordinator must send the job first")
        endpoint, protocol, load, share = self._job
        result = await measured_phase(self._session, endpoint, protocol, share, load, start_at=start_at)
        return {
            "records": [record_to_dict(r, result.started) for r in result.records],
            "wall_s": result.wall_s,
            "client": result.client.to_dict(),
            "start_late_ms": round((result.started_wall - start_at) * 1e3, 3),
        }

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _serve(commands, replies) -> None:
    """Answer the coordinator's JSON-line commands ({"op": ..., "args": [...]}) until "close"."""
    worker = LoadWorker()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, commands.readline)
        if not line:
            return
        msg = json.loads(line)
        try:
            method = getattr(worker, msg["op"])
            result = method(*msg.get("args", ()))
            if asyncio.iscoroutine(result):
                result = await result
            reply = {"ok": True, "result": result}
        except Exception as exc:  # the coordinator names the worker and fails the measurement
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()
        if msg["op"] == "close":
            return


def main() -> None:
    """`python -m perfsuite.worker`: commands on stdin, replies on the original stdout; anything else
    this process prints goes to stderr, so it cannot corrupt a reply."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    commands = sys.stdin.buffer
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_serve(commands, replies))


if __name__ == "__main__":
    main()
