"""Load-generator workers as Ray actors, spread over the nodes of a Ray cluster.

Ray is the control plane only: it places the actors (SPREAD: one per node while nodes last), carries
each one's share and the start instant (perfsuite.workers' coordinator), and brings the records back.
It never carries a call per request: each actor sends its requests from its own event loop
(perfsuite.worker.LoadWorker, as in a local worker process). A few calls per repetition cross Ray,
whatever the load (llmperf's one call per request breaks at a few hundred users).

The actors are the coordinator's (not detached): close() kills them, and Ray ends them too when this
process ends. An address that does not answer is an error within CONNECT_TIMEOUT_S.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from urllib.parse import urlsplit

from perfsuite.errors import UsageError
from perfsuite.worker import LoadWorker
from perfsuite.workers import _STEP, START_TIMEOUT_S, STOP_TIMEOUT_S, WorkerLost, _Coordinator

__all__ = ["RayWorkers", "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 10.0
NAMESPACE = "perfsuite-load"


class RayLoadWorker(LoadWorker):
    """LoadWorker in a Ray actor, which can also say where it runs."""

    def where(self) -> dict:
        import ray

        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "host": socket.gethostname(), "node_id": ctx.get_node_id()}

    async def prepare(self, job: dict) -> dict:
        return await super().prepare(job) | {"node_id": self.where()["node_id"]}


def _check_reachable(address: str, timeout_s: float) -> None:
    """A host:port or ray://host:port address must accept a TCP connection within `timeout_s`
    ('auto' is found by Ray itself, from this machine's running cluster)."""
    if address == "auto":
        return
    target = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = target.hostname, target.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise UsageError(f"--ray {address!r}: give 'auto', 'host:port' (the head's GCS, 6379) or 'ray://host:10001'")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: nothing answers at {host}:{port} within {timeout_s:g} s ({exc}); start the cluster "
            "(`ray start --head` on the head node) or fix the address"
        ) from None


class RayWorkers(_Coordinator):
    """`n` LoadWorker actors on the Ray cluster at `address`, each taking `num_cpus` of a node's CPUs."""

    kind = "ray"

    def __init__(self, n: int, address: str, *, num_cpus: float = 1.0, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        try:
            import ray
        except ImportError:
            raise UsageError("--ray: Ray is not installed here; pip install 'perfsuite[ray]'") from None
        self._ray = ray
        self.workers = n
        self._actors: list = []
        self._where: list[dict] = [{}] * n
        _check_reachable(address, connect_timeout_s)
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            try:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
            except ConnectionError as exc:
                raise UsageError(f"--ray {address}: no Ray cluster there ({exc})") from None
        try:
            free = ray.available_resources().get("CPU", 0.0)
            if free < n * num_cpus:
                raise UsageError(
                    f"--ray {address} with {n} workers: each takes {num_cpus:g} CPU and the cluster has {free:g} free; "
                    "use fewer workers or add nodes"
                )
            actor = ray.remote(num_cpus=num_cpus, max_restarts=0)(RayLoadWorker)
            tag = f"{NAMESPACE}-{os.getpid()}-{time.monotonic_ns()}"  # named: a leftover can be found by name
            self._actors = [actor.options(scheduling_strategy="SPREAD", name=f"{tag}-{i}").remote() for i in range(n)]
            self._where = self._call_all("where", [[] for _ in range(n)], START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def _who(self, i: int) -> str:
        w = self._where[i]
        at = f" (pid {w['pid']} on node {w['node_id'][:12]}, {w['host']})" if w else ""
        return f"Ray load worker {i + 1} of {self.workers}{at}"

    def _call_all(self, op: str, args: list[list], deadline_s: float) -> list:
        ray = self._ray
        refs = [getattr(a, op).remote(*args[i]) for i, a in enumerate(self._actors)]
        index = {ref: i for i, ref in enumerate(refs)}
        replies: list = [None] * len(refs)
        pending, end = list(refs), time.monotonic() + deadline_s
        while pending:
            left = end - time.monotonic()
            done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, left))
            if not done:
                names = ", ".join(self._who(index[r]) for r in pending)
                raise WorkerLost(f"{names}: no answer to {op!r} within {deadline_s:.0f} s; the measurement is not used")
            i = index[done[0]]
            try:
                replies[i] = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                why = str(exc).splitlines()[0]
                raise WorkerLost(
                    f"{self._who(i)} was lost during {_STEP.get(op, op)} (its process or node died: {why}); "
                    "the measurement is not used"
                ) from None
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                raise WorkerLost(f"{self._who(i)} failed in {op!r}: {cause}; the measurement is not used") from None
        return replies

    def close(self) -> None:
        """Close and kill every actor, then disconnect (if this object connected): none is left."""
        ray = self._ray
        if self._actors:
            with contextlib.suppress(Exception):
                ray.wait(
                    [a.close.remote() for a in self._actors], num_returns=len(self._actors), timeout=STOP_TIMEOUT_S
                )
            for a in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            self._actors = []
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
            self._connected_here = False
