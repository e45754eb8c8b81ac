"""hf-naive: plain transformers behind perfsuite's own small server, static batches (the reference the
article's "2-4x over a naive implementation" needs). See hf_naive_server.py for the server itself."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from perfsuite.frameworks import EngineSettings, RunningServer, child_env, cpu_split, engine_env, not_honoured
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.server import ServerProcess, free_port, http_ok
from perfsuite.telemetry import MetricNames

METRIC_NAMES = MetricNames(queue_depth=("hf_naive_num_requests_waiting",), running=("hf_naive_num_requests_running",))
# Why perfsuite's static-batch transformers engine (hf_engine.py: hf-naive, TorchServe's handler, the
# Ray Serve deployment) cannot honour a common setting.
STATIC_ENGINE_WHY = {
    "max_num_batched_tokens": "static batches have no token budget",
    "enable_prefix_caching": "no prefix cache",
    "gpu_memory_utilization": "no KV-cache pool to size",
    "quantization": "plain transformers weights",
    "tensor_parallel_size": "one device",
    "dtype": "the model's own dtype",
}


def server_args(model: str, settings: EngineSettings, port: int, threads: int | None) -> list[str]:
    args = [sys.executable, "-m", "perfsuite_plugins.hf_naive_server", "--model", model]
    args += ["--served-model-name", Path(model).name or model, "--host", "127.0.0.1", "--port", str(port)]
    if settings.max_num_seqs:
        args += ["--max-batch-size", str(settings.max_num_seqs)]
    if settings.max_model_len:
        args += ["--max-model-len", str(settings.max_model_len)]
    if threads:
        args += ["--threads", str(threads)]
    return args + list(settings.extra_args)


class HFNaivePlugin:
    name = "hf-naive"
    metric_names = METRIC_NAMES

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            return "transformers and torch are not installed"
        return None

    def version(self) -> str:
        return f"transformers {importlib.metadata.version('transformers')}"

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 300.0,
    ) -> RunningServer:
        port = free_port()
        engine_cpus, client_cpus = cpu_split(profile)
        base = f"http://127.0.0.1:{port}"
        proc = ServerProcess(
            "hf-naive server",
            server_args(model, settings, port, len(engine_cpus) if engine_cpus else None),
            workdir / f"hf-naive-{port}.log",
            ready=lambda: http_ok(base + "/health"),
            env=child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **engine_env(engine_cpus)),
            start_timeout_s=start_timeout_s,
            stop_timeout_s=10,
            cpus=client_cpus,  # the HTTP front end; the generation thread moves to engine_cpus
        )
        proc.start()
        notes = not_honoured(self.name, settings, {"max_num_seqs", "max_model_len"}, STATIC_ENGINE_WHY)
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(base, Path(model).name or model),
            process=proc,
            metrics_url=base + "/metrics",
            notes=notes,
            client_cpus=client_cpus,
        )
