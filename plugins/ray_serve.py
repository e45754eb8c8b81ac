"""Ray Serve: a deployment that batches with @serve.batch and streams tokens (ray_serve_app.py), run by
its own driver process on a loopback port. Stopped with serve.shutdown() and ray.shutdown(); any Ray
process left over from this instance (found by its temp folder) is killed after."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import psutil

from perfsuite.frameworks import EngineSettings, RunningServer, child_env, cpu_split, engine_env, not_honoured
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.scratch import owned_tmpdir
from perfsuite.server import ServerProcess, free_port
from perfsuite.telemetry import MetricNames
from perfsuite_plugins.hf_naive import STATIC_ENGINE_WHY

METRIC_NAMES = MetricNames(queue_depth=("ray_serve_deployment_queued_queries",))


def routes_ready(base: str) -> bool:
    """/-/healthz answers 200 and /-/routes lists the app's route (healthz is 503 until routes exist)."""
    try:
        with urllib.request.urlopen(base + "/-/healthz", timeout=2) as resp:  # noqa: S310 (loopback)
            if resp.status != 200:
                return False
        with urllib.request.urlopen(base + "/-/routes", timeout=2) as resp:  # noqa: S310
            return "/v1" in json.loads(resp.read())
    except (OSError, ValueError):
        return False


def kill_ray_processes(temp_dir: str) -> list[int]:
    """Kill every process whose command line names this instance's Ray temp folder; their pids."""
    killed = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(temp_dir in part for part in p.info["cmdline"] or ()):
                p.kill()
                killed.append(p.info["pid"])
    return killed


class RayServePlugin:
    name = "ray-serve"
    metric_names = METRIC_NAMES

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
            return "Ray Serve is not installed (pip install 'ray[serve]')"
        return None

    def version(self) -> str:
        return f"ray {importlib.metadata.version('ray')}"

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 300.0,
    ) -> RunningServer:
        port, metrics_port = free_port(), free_port()
        # Short: Ray puts Unix sockets under it (a path may not exceed 107 bytes).
        temp_dir = str(owned_tmpdir("psray-", "/tmp" if os.path.isdir("/tmp") else None))
        engine_cpus, client_cpus = cpu_split(profile)
        argv = [sys.executable, "-m", "perfsuite_plugins.ray_serve_app", "--model", model]
        argv += ["--served-model-name", Path(model).name or model, "--port", str(port), "--temp-dir", temp_dir]
        argv += ["--num-cpus", str(len(os.sched_getaffinity(0))), "--metrics-port", str(metrics_port)]
        argv += ["--max-batch-size", str(settings.max_num_seqs or 8)]
        if settings.max_model_len:
            argv += ["--max-model-len", str(settings.max_model_len)]
        base = f"http://127.0.0.1:{port}"
        proc = ServerProcess(
            "Ray Serve",
            argv,
            workdir / f"ray-serve-{port}.log",
            ready=lambda: routes_ready(base),
            env=child_env(
                RAY_USAGE_STATS_ENABLED="0",
                # Ray runs its workers (the replica, the HTTP proxy) at nice 15. Here the load generator
                # shares the proxy's core, which a production client never does: run them at 0.
                RAY_worker_niceness="0",
                RAY_DEDUP_LOGS="0",
                HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1",
                **engine_env(engine_cpus),
            ),
            start_timeout_s=start_timeout_s,
            stop_timeout_s=30,
            cpus=client_cpus,  # driver, GCS, raylet and proxy; the replica's compute moves to engine_cpus
        )

        def cleanup() -> None:
            kill_ray_processes(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)

        try:
            proc.start()
        except BaseException:
            cleanup()
            raise
        notes = not_honoured(self.name, settings, {"max_num_seqs", "max_model_len"}, STATIC_ENGINE_WHY)
        notes.append(f"ray-serve: @serve.batch static batches of up to {settings.max_num_seqs or 8}, 10 ms wait")
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(base, Path(model).name or model),
            process=proc,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            notes=notes,
            client_cpus=client_cpus,
            on_stop=cleanup,
        )
