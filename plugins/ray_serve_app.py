"""The Ray Serve driver perfsuite starts: Ray and Serve in this process, one deployment that batches
with @serve.batch and streams tokens in the OpenAI format, the HTTP proxy on a loopback port.

    python -m perfsuite_plugins.ray_serve_app --model DIR --port P --temp-dir D [--max-batch-size 8]

It runs until SIGTERM or SIGINT, then calls serve.shutdown() and ray.shutdown(). Running the driver as
its own process keeps Ray's global state and threads out of the process that measures, and lets
perfsuite stop every Ray process it started by process tree and by temp folder, even after a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from perfsuite_plugins.hf_engine import Generator, Job, pin_engine_thread
from perfsuite_plugins.openai_sse import DONE, error_event, new_id, token_event, usage_event

APP_NAME = "perfsuite"


@serve.deployment(max_ongoing_requests=1024, ray_actor_options={"num_cpus": 1})
class StaticBatchGenerate:
    """transformers generation; Serve's @serve.batch forms the batches (static: one batch runs at a time)."""

    def __init__(self, model_dir: str, model_name: str, max_model_len: int | None, batch: int, wait_s: float) -> None:
        self.gen = Generator(model_dir, max_model_len=max_model_len)
        self.model_name = model_name
        self.generate_batch.set_max_batch_size(batch)
        self.generate_batch.set_batch_wait_timeout_s(wait_s)

        # One thread runs every decoding step: one batch at a time, one OpenMP team, pinned once.
        self.compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    def _step(self, it):
        pin_engine_thread()
        return next(it, None)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def generate_batch(self, jobs: list[Job]):
        """Yield, per step, one token id per request, or StopIteration for a request that is done."""
        it = self.gen.generate(jobs)
        loop = asyncio.get_running_loop()
        while (step := await loop.run_in_executor(self.compute, self._step, it)) is not None:
            yield [StopIteration if tok is None else tok for tok in step]

    async def __call__(self, request: Request):
        chat = request.url.path.endswith("/chat/completions")
        if request.method != "POST" or not request.url.path.endswith("/completions"):
            return JSONResponse({"error": {"message": "POST /v1/completions or /v1/chat/completions"}}, 404)
        try:
            body = await request.json()
            job = self.gen.job(body, chat, require_stream=True)
        except (ValueError, json.JSONDecodeError) as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request"}}, 400)
        return StreamingResponse(self._stream(job, chat), media_type="text/event-stream")

    async def _stream(self, job: Job, chat: bool):
        rid, produced = new_id(), 0
        try:
            async for tok in self.generate_batch(job):
                produced += 1
                finish = "length" if produced == job.max_tokens else None
                yield token_event(chat, self.model_name, rid, self.gen.text(tok), finish)
        except Exception as exc:  # reported in the stream, as the OpenAI servers do
            yield error_event(f"{type(exc).__name__}: {exc}")
            return
        yield usage_event(chat, self.model_name, rid, len(job.prompt_ids), produced)
        yield DONE


def main(argv: list[str] | None = None) -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--served-model-name")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--temp-dir", required=True)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--metrics-port", type=int)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    ap.add_argument("--max-model-len", type=int)
    args = ap.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    init = {
        "num_cpus": args.num_cpus,
        "include_dashboard": False,
        "_temp_dir": args.temp_dir,
        "_node_ip_address": "127.0.0.1",  # GCS, raylet and workers: loopback, not the machine's address
    }
    if args.metrics_port:
        init["_metrics_export_port"] = args.metrics_port
    ray.init(**init)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        app = StaticBatchGenerate.bind(
            args.model,
            args.served_model_name or args.model,
            args.max_model_len,
            args.max_batch_size,
            args.batch_wait_ms / 1000,
        )
        serve.run(app, name=APP_NAME, route_prefix="/v1")
        print("perfsuite: Ray Serve app running", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
