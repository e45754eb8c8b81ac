"""TGI (Hugging Face text-generation-inference): always a container, from its published image.

The load generator speaks TGI's native /generate_stream (one SSE event per token, lengths from
`details`) for completion workloads, and its OpenAI-compatible /v1/chat/completions for chat ones.
TGI has no ignore_eos, so a request may end early at EOS: lengths are taken as TGI reports them.
Where no container engine or no TGI image is present, the plugin says so and its tests skip.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from perfsuite.container import ContainerServer, ContainerSpec, engine_from_env, hub_secrets, why_not_runnable
from perfsuite.errors import UsageError
from perfsuite.frameworks import EngineSettings, RunningServer, child_env, not_honoured
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.protocols import TOKEN, EventKind, OpenAIProtocol, StreamEvent
from perfsuite.server import free_port, http_ok
from perfsuite.telemetry import MetricNames
from perfsuite.workloads import RequestSpec

IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"
METRIC_NAMES = MetricNames(queue_depth=("tgi_queue_size",), running=("tgi_batch_current_size",))
MODEL_MOUNT = "/data/model"
GRACE_S = 90  # TGI's own shutdown grace period; the container's stop timeout must be longer


class TGIProtocol:
    """TGI's native POST /generate_stream: SSE `data:{...}` events with no space and no [DONE], one
    per token; the last carries `details.generated_tokens`; errors arrive in-stream as {error, error_type}.

    TGI has no ignore_eos and reports no prompt length in a stream, so the output length is what
    `details` says (a request may end early at EOS) and the input length is taken as sent."""

    path = "/generate_stream"
    exact_lengths = False

    def __init__(self, api: str = "completions") -> None:
        if api != "completions":
            raise UsageError("TGI's /generate_stream takes a prompt; for chat workloads use its OpenAI route")
        self.api = api

    def payload(self, model: str, spec: RequestSpec) -> dict:
        params = {"max_new_tokens": spec.output_tokens, "details": True, "do_sample": False}
        return {"inputs": spec.prompt, "parameters": params}

    def parse(self, line: bytes) -> StreamEvent | None:
        if not line.startswith(b"data:"):
            return None
        event = json.loads(line[5:])
        if "error" in event:
            return StreamEvent(EventKind.ERROR, message=f"{event['error']} ({event.get('error_type')})")
        details = event.get("details")
        has_token = event.get("token") is not None
        if details:
            kind = EventKind.TOKEN if has_token else EventKind.USAGE
            return StreamEvent(kind, output_tokens=details.get("generated_tokens"))
        return TOKEN if has_token else None


class TGIChatProtocol(OpenAIProtocol):
    """TGI's OpenAI chat route: the same stream as vLLM's, but lengths are not forced (no ignore_eos)."""

    exact_lengths = False


def launcher_args(model_id: str, settings: EngineSettings, port: int) -> tuple[list[str], dict[str, str], list[str]]:
    """TGI launcher arguments, extra environment, and notes, for these settings."""
    s = settings
    args = ["--model-id", model_id, "--hostname", "0.0.0.0", "--port", str(port), "--usage-stats", "off"]  # noqa: S104
    env: dict[str, str] = {}
    if s.max_model_len:
        args += ["--max-total-tokens", str(s.max_model_len), "--max-input-tokens", str(s.max_model_len - 1)]
    if s.max_num_batched_tokens:
        args += ["--max-batch-prefill-tokens", str(s.max_num_batched_tokens)]
    if s.max_num_seqs:
        args += ["--max-concurrent-requests", str(s.max_num_seqs)]
    if s.quantization:
        args += ["--quantize", s.quantization]
    if s.dtype:
        args += ["--dtype", s.dtype]
    if s.tensor_parallel_size > 1:
        args += ["--num-shard", str(s.tensor_parallel_size)]
    if s.gpu_memory_utilization is not None:
        args += ["--cuda-memory-fraction", str(s.gpu_memory_utilization)]
    if s.enable_prefix_caching is not None:
        env["PREFIX_CACHING"] = "1" if s.enable_prefix_caching else "0"
    honoured = {f for f in s.__dataclass_fields__ if f != "extra_args"}
    notes = not_honoured("tgi", s, honoured)
    if s.max_num_seqs:
        notes.append("tgi: max_num_seqs maps to --max-concurrent-requests (TGI sizes its batches by tokens)")
    return args + list(s.extra_args), env, notes


class TGIPlugin:
    name = "tgi"
    metric_names = METRIC_NAMES

    def image(self) -> str:
        return os.environ.get("PERFSUITE_TGI_IMAGE", IMAGE)

    def unavailable(self) -> str | None:
        why = why_not_runnable(self.image(), "PERFSUITE_TGI_IMAGE")
        return f"TGI runs as a container: {why}" if why else None

    def version(self) -> str:
        return self.image().rsplit(":", 1)[-1]

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 600.0,
    ) -> RunningServer:
        engine = engine_from_env()
        port = free_port()
        local = Path(model).exists()
        args, extra_env, notes = launcher_args(MODEL_MOUNT if local else model, settings, port)
        env = {**extra_env}
        env.update(hub_secrets())  # passed by name, never on the command line
        spec = ContainerSpec(
            self.image(),
            args,
            env=env,
            volumes=[(model, MODEL_MOUNT, "ro")] if local else [],
            ports=[port],
            gpus=profile.kind != "cpu",
            shm_size="1g",
            stop_timeout_s=GRACE_S + 10,
        )
        base = f"http://127.0.0.1:{port}"
        proc = ContainerServer(
            "TGI (container)",
            engine,
            spec,
            workdir / f"tgi-{port}.log",
            ready=lambda: http_ok(base + "/health"),  # the port accepts TCP before TGI listens
            env=child_env(),
            start_timeout_s=start_timeout_s,
        )
        proc.start()
        notes.append(f"tgi: {shlex.join(engine.argv)}, image {self.image()}")
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(base, Path(model).name or model),
            process=proc,
            metrics_url=base + "/metrics",
            notes=notes,
            make_protocol=lambda api: TGIChatProtocol("chat") if api == "chat" else TGIProtocol(api),
        )
