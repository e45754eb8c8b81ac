"""TorchServe: perfsuite's streaming transformers handler (torchserve_handler.py), archived with
torch-model-archiver, served by `torchserve --foreground` with a generated config bound to loopback.

TorchServe batches statically: up to batchSize requests that arrive within maxBatchDelay ms form a
batch, and the handler runs it to the end. Needs Java 11+ (TorchServe's front end is Java).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from perfsuite.errors import ServerError
from perfsuite.frameworks import EngineSettings, RunningServer, child_env, cpu_split, engine_env, not_honoured
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.protocols import TOKEN, EventKind, StreamEvent, prompt_field
from perfsuite.server import ServerProcess, free_port
from perfsuite.telemetry import MetricNames
from perfsuite.workloads import RequestSpec
from perfsuite_plugins.hf_naive import STATIC_ENGINE_WHY

MODEL_NAME = "perfsuite"
# TorchServe has no queue-depth or KV-cache gauge; its counters are kept in the results as they are.
METRIC_NAMES = MetricNames()
BATCH_DELAY_MS = 10
HANDLER = Path(__file__).with_name("torchserve_handler.py")


class JSONLinesProtocol:
    """perfsuite's TorchServe handler: POST /predictions/NAME, a chunked response of JSON lines,
    {"text"} per token, then {"usage": {...}}; {"error"} on failure (torchserve_handler.py)."""

    exact_lengths = True

    def __init__(self, path: str, api: str = "completions") -> None:
        self.api = api
        self.path = path

    def payload(self, model: str, spec: RequestSpec) -> dict:
        return {"max_tokens": spec.output_tokens} | prompt_field(self.api, spec)

    def parse(self, line: bytes) -> StreamEvent | None:
        if not line.strip():
            return None
        event = json.loads(line)
        if "error" in event:
            return StreamEvent(EventKind.ERROR, message=str(event["error"]))
        usage = event.get("usage")
        if usage:
            kind = EventKind.TOKEN if "text" in event else EventKind.USAGE
            return StreamEvent(kind, usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return TOKEN if "text" in event else None

    def answer_text(self, line: bytes) -> str:
        """The text of a token line (multi-turn sessions send it back as the history)."""
        return json.loads(line).get("text") or ""

    def cached_tokens(self, line: bytes) -> int | None:
        return None  # the handler has no prefix cache


def java_version() -> int | None:
    """The major version of `java` on PATH, or None."""
    java = shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8" is Java 8


def _tool(name: str) -> str:
    """A console script installed beside this Python (torchserve, torch-model-archiver)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


# TorchServe's default logging writes two INFO lines per streamed token per request from its single
# front-end thread; on a small machine that logging alone slows serving down. Warnings and errors only.
LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="ts_log" fileName="${env:LOG_LOCATION}/ts_log.log">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def config_properties(ports: dict[str, int], store: Path, log_config: Path) -> str:
    """config.properties: every address on loopback, Prometheus metrics, one worker, no token auth
    (loopback only), no system-metrics subprocess, quiet logging."""
    lines = {
        "vmargs": f"-Dlog4j.configurationFile=file://{log_config}",
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address": "127.0.0.1",  # gRPC listens on every interface by default
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": str(ports["grpc_inference"]),
        "grpc_management_port": str(ports["grpc_management"]),
        "metrics_mode": "prometheus",
        "model_store": str(store),
        "load_models": MODEL_NAME,
        "default_workers_per_model": "1",
        "job_queue_size": "1000",
        "disable_token_authorization": "true",
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
        "enable_envvars_config": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def model_config(model: str, settings: EngineSettings) -> dict:
    """model-config.yaml, written as JSON (a subset of YAML: nothing needs a YAML writer)."""
    return {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": settings.max_num_seqs or 8,
        "maxBatchDelay": BATCH_DELAY_MS,
        "responseTimeout": 600,  # the default 120 s restarts a worker in the middle of a long batch
        "handler": {"model_dir": model, "max_model_len": settings.max_model_len},
    }


def archive(model: str, settings: EngineSettings, store: Path, timeout_s: float = 120) -> None:
    """torch-model-archiver --archive-format no-archive: the handler and model-config.yaml in store/NAME."""
    cfg = store / "model-config.yaml"
    cfg.write_text(json.dumps(model_config(model, settings), indent=2))
    argv = [_tool("torch-model-archiver"), "--model-name", MODEL_NAME, "--version", "1.0"]
    argv += ["--handler", str(HANDLER), "--config-file", str(cfg), "--export-path", str(store)]
    argv += ["--archive-format", "no-archive", "--force"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"torch-model-archiver could not run: {exc}") from None
    if done.returncode != 0:
        raise ServerError(f"torch-model-archiver failed (exit {done.returncode})", done.stderr[-2000:])


def workers_ready(management: str) -> bool:
    """True when every worker of the model is READY (/ping says Healthy before they are)."""
    try:
        with urllib.request.urlopen(f"{management}/models/{MODEL_NAME}", timeout=2) as resp:  # noqa: S310
            info = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    workers = [w for m in info for w in m.get("workers", [])]
    return bool(workers) and all(w.get("status") == "READY" for w in workers)


class TorchServePlugin:
    name = "torchserve"
    metric_names = METRIC_NAMES

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("ts") is None or importlib.util.find_spec("model_archiver") is None:
            return "TorchServe is not installed (pip install torchserve torch-model-archiver)"
        v = java_version()
        if v is None:
            return "TorchServe needs Java 11+ and no `java` was found on PATH"
        if v < 11:
            return f"TorchServe needs Java 11+, found Java {v}"
        return None

    def version(self) -> str:
        return f"torchserve {importlib.metadata.version('torchserve')}"

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 300.0,
    ) -> RunningServer:
        ports = {k: free_port() for k in ("inference", "management", "metrics", "grpc_inference", "grpc_management")}
        home = workdir / f"torchserve-{ports['inference']}"
        store, tmp, logs = home / "store", home / "tmp", home / "logs"
        for d in (store, tmp, logs):
            d.mkdir(parents=True, exist_ok=True)
        archive(model, settings, store)
        config = home / "config.properties"
        log_config = home / "log4j2.xml"
        log_config.write_text(LOG4J2)
        config.write_text(config_properties(ports, store, log_config))
        engine_cpus, client_cpus = cpu_split(profile)
        env = child_env(
            LOG_LOCATION=str(logs),
            METRICS_LOCATION=str(logs),
            TS_DISABLE_TOKEN_AUTHORIZATION="true",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            **engine_env(engine_cpus),
        )
        argv = [sys.executable, "-m", "perfsuite_plugins.torchserve_launch", "--start", "--foreground", "--ncs"]
        argv += ["--model-store", str(store)]
        argv += ["--ts-config", str(config), "--disable-token-auth"]
        management = f"http://127.0.0.1:{ports['management']}"
        proc = ServerProcess(
            "TorchServe",
            argv,
            workdir / f"torchserve-{ports['inference']}.log",
            ready=lambda: workers_ready(management),
            env=env,
            start_timeout_s=start_timeout_s,
            stop_timeout_s=20,
            cwd=home,
            tmp_dir=tmp,  # its TMPDIR: pid file and worker sockets, one set per instance
            cpus=client_cpus,  # the Java front end; the handler moves its worker to engine_cpus
        )
        proc.start()
        notes = not_honoured(self.name, settings, {"max_num_seqs", "max_model_len"}, STATIC_ENGINE_WHY)
        notes.append(f"torchserve: static batches of up to batchSize={settings.max_num_seqs or 8}, {BATCH_DELAY_MS} ms")
        path = f"/predictions/{MODEL_NAME}"
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(f"http://127.0.0.1:{ports['inference']}", MODEL_NAME),
            process=proc,
            metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
            notes=notes,
            client_cpus=client_cpus,
            make_protocol=lambda api: JSONLinesProtocol(path, api),
        )
