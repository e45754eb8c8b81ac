"""hf-naive: the reference "vanilla" server. transformers generation behind a small aiohttp server,
static batches, no continuous batching, no paged KV cache, so the matrix shows what the others gain.

    python -m perfsuite_plugins.hf_naive_server --model DIR --port P [--max-batch-size 8] [--batch-wait-ms 10]

Routes: GET /health, GET /metrics (Prometheus), POST /v1/completions and /v1/chat/completions
(streaming only, with the usage event). One thread generates; a batch is whatever waited in the queue
when it started (up to --max-batch-size, waiting up to --batch-wait-ms for more), and requests that
arrive while it runs wait for the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import threading
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from perfsuite_plugins.hf_engine import Generator, Job, pin_engine_thread
from perfsuite_plugins.openai_sse import DONE, error_event, new_id, token_event, usage_event

PREFIX = "hf_naive"


class _Request:
    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.loop = loop
        self.out: asyncio.Queue = asyncio.Queue()

    def put(self, item) -> None:  # called from the generation thread
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is shutting down
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class StaticBatcher:
    """One generation thread serving static batches from a queue."""

    def __init__(self, gen: Generator, max_batch_size: int, batch_wait_s: float, registry: CollectorRegistry) -> None:
        self.gen = gen
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.stopping = threading.Event()
        self.waiting = Gauge(f"{PREFIX}_num_requests_waiting", "requests queued for a batch", registry=registry)
        self.running = Gauge(f"{PREFIX}_num_requests_running", "requests in the running batch", registry=registry)
        self.batches = Histogram(
            f"{PREFIX}_batch_size", "requests per batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry
        )
        self.thread = threading.Thread(target=self._loop, name="generate", daemon=True)

    def submit(self, req: _Request) -> None:
        self.queue.put(req)
        self.waiting.set(self.queue.qsize())

    def _take_batch(self) -> list[_Request]:
        try:
            batch = [self.queue.get(timeout=0.5)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        pin_engine_thread()
        while not self.stopping.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            self.waiting.set(self.queue.qsize())
            self.running.set(len(batch))
            self.batches.observe(len(batch))
            try:
                for step in self.gen.generate([r.job for r in batch]):
                    for req, tok in zip(batch, step):
                        if tok is not None:
                            req.put(tok)
                for req in batch:
                    req.put(None)
            except Exception as exc:  # a failed batch fails its requests, not the server
                for req in batch:
                    req.put(exc)
            self.running.set(0)


def make_app(gen: Generator, batcher: StaticBatcher, model_name: str, registry: CollectorRegistry) -> web.Application:
    requests_total = Counter(f"{PREFIX}_requests", "requests received", registry=registry)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model_name, "object": "model"}]})

    async def complete(request: web.Request, chat: bool) -> web.StreamResponse:
        requests_total.inc()
        try:
            body = await request.json()
            job = gen.job(body, chat, require_stream=True)
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": {"message": str(exc), "type": "invalid_request"}}, status=400)
        req = _Request(job, asyncio.get_running_loop())
        batcher.submit(req)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        rid, produced = new_id(), 0
        while True:
            item = await req.out.get()
            if item is None:
                break
            if isinstance(item, Exception):
                await resp.write(error_event(f"{type(item).__name__}: {item}"))
                return resp
            produced += 1
            finish = "length" if produced == job.max_tokens else None
            await resp.write(token_event(chat, model_name, rid, gen.text(item), finish))
        await resp.write(usage_event(chat, model_name, rid, len(job.prompt_ids), produced))
        await resp.write(DONE)
        return resp

    app = web.Application(client_max_size=8 << 20)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", lambda r: complete(r, chat=False))
    app.router.add_post("/v1/chat/completions", lambda r: complete(r, chat=True))
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--served-model-name")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    ap.add_argument("--max-model-len", type=int)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    gen = Generator(args.model, threads=args.threads, max_model_len=args.max_model_len)
    registry = CollectorRegistry()
    batcher = StaticBatcher(gen, args.max_batch_size, args.batch_wait_ms / 1000, registry)
    batcher.thread.start()
    name = args.served_model_name or args.model
    try:
        web.run_app(make_app(gen, batcher, name, registry), host=args.host, port=args.port, print=None)
    finally:
        batcher.stopping.set()
        with contextlib.suppress(RuntimeError):
            batcher.thread.join(timeout=5)


if __name__ == "__main__":
    main()
